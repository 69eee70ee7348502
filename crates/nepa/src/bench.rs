//! The benchmark run that the native CLI (`nepa bench`) and the browser's Compare page both
//! execute, and the `nepa-run-report/1` JSON they both write (docs/run-report.md): one
//! serde type, [`RunReport`], that both sides write and read, so the page and the CLI cannot
//! drift apart on a field.
//!
//! Everything random comes from the seed on the host (`SplitMix64`): the initial weights, the
//! synthetic batch. Backends draw random numbers differently, so a device-side init would
//! make a browser run and a native run start from different models; with a host-side init
//! the same seed gives the same weights and data everywhere, and the two loss curves can be
//! compared step by step.
//!
//! Reads are asynchronous (`into_data_async`), so the same code runs in the browser, where
//! sync reads panic; native callers block on the futures.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::checkpoint::{ParamVisitor, Walkable, transpose_host};
use crate::config::NepaConfig;
use crate::error::NepaError;
use crate::flops::FlopsPerImage;
use crate::image::Augment;
use crate::loss::{LossOptions, prediction_loss};
use crate::model::{ForwardOptions, NepaModel, takes_fused_attention};
use crate::precision::Precision;
use crate::pretrain::{PretrainOptions, PretrainSchedule, Pretrainer};
use crate::rng::SplitMix64;
use crate::step_profile::{StepPart, profile_step};
use crate::train::{AdamW, AdamWConfig, read_f32};

pub use nepa_types::report::{
    Comparison, HostDetails, InferenceReport, OptimizerReport, OutputDigest, REPORT_SCHEMA,
    ReportError, RunReport, TrainReport, Weights, compare, max_abs_diff,
};

/// How many ẑ values (evenly strided) a digest keeps for comparing two runs.
pub const DIGEST_SAMPLE: usize = 256;

/// What to run: batch size, step counts, seed and the (constant) learning rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchSettings {
    pub batch: usize,
    /// Timed training steps, after the warm-up.
    pub steps: usize,
    /// Untimed training steps and inference runs first (shader compilation, autotune).
    pub warmup: usize,
    /// Timed inference runs.
    pub runs: usize,
    pub seed: u64,
    pub lr: f64,
    pub weight_decay: f64,
    /// The type of the matrix products (docs/performance.md §3).
    #[serde(default)]
    pub precision: Precision,
}

impl Default for BenchSettings {
    fn default() -> Self {
        Self {
            batch: 16,
            steps: 10,
            warmup: 2,
            runs: 10,
            seed: 0,
            lr: 1e-3,
            weight_decay: 0.05,
            precision: Precision::F32,
        }
    }
}

/// The run the Compare page makes in the browser and `scripts/test.sh` makes natively to
/// check that both give the same loss curve: small enough for a software WebGPU adapter.
pub fn compare_run() -> (NepaConfig, BenchSettings) {
    let config = NepaConfig::new(64, 2, 2)
        .with_image_size(32, 32)
        .with_patch_size(8)
        .with_pos_embed_rescale(None);
    let settings = BenchSettings {
        batch: 8,
        steps: 20,
        warmup: 2,
        runs: 5,
        ..BenchSettings::default()
    };
    (config, settings)
}

/// The host-side initial value of one backbone tensor, by its official key: LayerScale at
/// `layerscale_value`, norm weights 1, biases 0, everything else (matrices, conv weight, CLS)
/// N(0, initializer_range²), as the model's own init.
fn init_value(key: &str, config: &NepaConfig, rng: &mut SplitMix64) -> f32 {
    let module = key.rsplit('.').nth(1).unwrap_or("");
    if key.ends_with("lambda1") {
        config.layerscale_value as f32
    } else if key.ends_with(".bias") {
        0.0
    } else if module.contains("norm") {
        1.0
    } else {
        (rng.normal() * config.initializer_range) as f32
    }
}

/// Replaces every parameter, in walk order, by its host-seeded value (`init_value`).
///
/// The draws follow the file layout (`[out, in]` for a Linear weight, as `backbone_tensors`
/// lists them) and are transposed back into the model's `[in, out]`: the Compare page's
/// native and browser runs, and reports made before this visitor existed, depend on this
/// exact order of draws.
struct SeededInit<'a> {
    config: &'a NepaConfig,
    rng: SplitMix64,
    device: Device,
}

impl ParamVisitor for SeededInit<'_> {
    fn visit<const D: usize>(
        &mut self,
        key: String,
        param: Param<Tensor<D>>,
        transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError> {
        let model_shape = param.dims().to_vec();
        let n: usize = model_shape.iter().product();
        let mut values: Vec<f32> = (0..n)
            .map(|_| init_value(&key, self.config, &mut self.rng))
            .collect();
        if transposed {
            values = transpose_host(&values, model_shape[1], model_shape[0]);
        }
        let tensor = Tensor::<D>::from_data(TensorData::new(values, model_shape), &self.device);
        let id = param.id;
        Ok(param.transform_for_load(tensor, id))
    }
}

/// A backbone whose weights depend only on `config` and `seed` (not on the backend's random
/// generator), built on `device`.
pub fn seeded_backbone(
    config: &NepaConfig,
    seed: u64,
    device: &Device,
) -> Result<NepaModel, NepaError> {
    // The model built here only supplies the parameters' keys and shapes; every value is
    // replaced.
    let mut init = SeededInit {
        config,
        rng: SplitMix64::new(seed ^ 0x4E45_5041_494E_4954), // "NEPAINIT"
        device: device.clone(),
    };
    NepaModel::new(config, device)?.walk_params(&mut init)
}

/// The synthetic batch of the benchmark: pixels U(−1, 1) from the seed, `[batch, C, H, W]`.
pub fn synthetic_batch(config: &NepaConfig, batch: usize, seed: u64) -> TensorData {
    let [h, w] = config.image_size;
    let c = config.num_channels;
    let mut rng = SplitMix64::new(seed ^ 0x4E45_5041_4441_5441); // "NEPADATA"
    let values: Vec<f32> = (0..batch * c * h * w)
        .map(|_| rng.uniform(-1.0, 1.0) as f32)
        .collect();
    TensorData::new(values, [batch, c, h, w])
}

/// The closed-form probe image of the report schema: pixel `i` (CHW, row-major) is
/// `((37·i) mod 101) / 50 − 1`.
pub fn probe_image(config: &NepaConfig) -> TensorData {
    let [h, w] = config.image_size;
    let c = config.num_channels;
    let values: Vec<f32> = (0..c * h * w)
        .map(|i| (((37 * i) % 101) as f64 / 50.0 - 1.0) as f32)
        .collect();
    TensorData::new(values, [1, c, h, w])
}

/// ẑ on the probe image (eval mode): a few statistics and an evenly strided sample, so two
/// reports made from the same weights can be compared value by value.
pub async fn output_digest(
    model: &NepaModel,
    config: &NepaConfig,
    device: &Device,
) -> Result<OutputDigest, NepaError> {
    let out = model.forward(
        Tensor::from_data(probe_image(config), device),
        &ForwardOptions::eval(),
    );
    let loss = prediction_loss(
        out.last_hidden_state.clone(),
        out.input_embedding,
        LossOptions::default(),
    );
    let [_, t, d] = out.last_hidden_state.dims();
    let z_hat: Vec<f64> = read_f32(out.last_hidden_state)
        .await?
        .into_iter()
        .map(f64::from)
        .collect();
    let loss = read_f32(loss).await?[0];
    let stride = z_hat.len().div_ceil(DIGEST_SAMPLE).max(1);
    Ok(OutputDigest {
        probe: PROBE_DESCRIPTION.into(),
        z_hat_sum: z_hat.iter().sum(),
        z_hat_abs_mean: z_hat.iter().map(|v| v.abs()).sum::<f64>() / z_hat.len() as f64,
        z_hat_first: z_hat[..8.min(d)].to_vec(),
        z_hat_last: z_hat[(t - 1) * d..(t - 1) * d + 8.min(d)].to_vec(),
        z_hat_sample_stride: Some(stride),
        z_hat_sample: z_hat.iter().step_by(stride).copied().collect(),
        loss: Some(f64::from(loss)),
    })
}

/// One measured training step.
#[derive(Clone, Debug)]
pub struct TrainRecord {
    pub step: usize,
    pub warmup: bool,
    pub loss: f32,
    pub grad_norm: f32,
    pub ms: f64,
}

/// A benchmark in progress. The caller drives it step by step (so a page can repaint and
/// show progress between steps): `train_step` until `train_done`, then `inference_run`
/// until `inference_done`, then `report`.
pub struct BenchRun {
    pub config: NepaConfig,
    pub settings: BenchSettings,
    device: Device,
    /// The shared pretraining loop (`nepa pretrain` and the page's adaptation run it too).
    trainer: Pretrainer,
    pixels: Tensor<4>,
    pub records: Vec<TrainRecord>,
    pub inference_ms: Vec<f64>,
    pub digest: OutputDigest,
    weights: Weights,
}

impl BenchRun {
    /// Starts a run on `device` (an autodiff device) from the seeded init, or from `weights`.
    pub async fn new(
        config: NepaConfig,
        settings: BenchSettings,
        device: &Device,
        weights: Option<(NepaModel, String)>,
    ) -> Result<Self, NepaError> {
        config.validate()?;
        settings.precision.check(device)?;
        let (model, weights) = match weights {
            Some((model, path)) => (model, Weights::File { path, sha256: None }),
            None => (
                seeded_backbone(&config, settings.seed, device)?,
                Weights::Init {
                    init: format!("nepa host-seeded init (SplitMix64), seed {}", settings.seed),
                },
            ),
        };
        let model = model.with_precision(settings.precision);
        let digest = output_digest(&model, &config, device).await?;
        let pixels = Tensor::from_data(
            synthetic_batch(&config, settings.batch, settings.seed),
            device,
        );
        let options = PretrainOptions {
            schedule: PretrainSchedule::constant(settings.lr, settings.weight_decay),
            loss: LossOptions::default(),
            augment: Augment::default(),
            seed: settings.seed,
            // A benchmark reports what happened; it never stops on its own.
            max_bad_steps: usize::MAX,
            accumulate: 1,
        };
        let optim = AdamW::new(AdamWConfig::default());
        let trainer = Pretrainer::new(model, &config, optim, options, 0, device);
        Ok(Self {
            config,
            settings,
            device: device.clone(),
            trainer,
            pixels,
            records: vec![],
            inference_ms: vec![],
            digest,
            weights,
        })
    }

    pub fn total_train_steps(&self) -> usize {
        self.settings.warmup + self.settings.steps
    }

    pub fn train_done(&self) -> bool {
        self.records.len() >= self.total_train_steps()
    }

    pub fn total_inference_runs(&self) -> usize {
        self.settings.warmup + self.settings.runs
    }

    pub fn inference_done(&self) -> bool {
        self.inference_ms.len() >= self.total_inference_runs()
    }

    /// One pretraining step (train mode without RoPE rescale or drop-path, so it is
    /// deterministic), timed until its loss is read back.
    pub async fn train_step(&mut self) -> Result<TrainRecord, NepaError> {
        let start = Instant::now();
        // The record is read back inside: the loss read waits for the whole step,
        // including the optimizer update.
        let out = self
            .trainer
            .step_pixels(self.pixels.clone(), &ForwardOptions::eval())
            .await?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let (loss, grad_norm) = (out.loss, out.grad_norm.unwrap_or(f32::NAN));
        let step = self.records.len();
        let record = TrainRecord {
            step,
            warmup: step < self.settings.warmup,
            loss,
            grad_norm,
            ms,
        };
        self.records.push(record.clone());
        Ok(record)
    }

    /// One timed inference forward pass on the batch (without autodiff), in ms.
    pub async fn inference_run(&mut self) -> Result<f64, NepaError> {
        let model = self.trainer.model().valid();
        let pixels = self.pixels.clone().inner();
        let start = Instant::now();
        let out = model.forward(pixels, &ForwardOptions::eval());
        read_f32(out.last_hidden_state.sum()).await?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        self.inference_ms.push(ms);
        Ok(ms)
    }

    /// The parts of one more training step on the benchmark's batch, timed apart
    /// (docs/performance.md §2); the run itself does not advance. Two profiled steps run and
    /// the second is returned: the syncs between parts cut a fusion backend's operation
    /// stream where an unprofiled step has none, so the first profiled step compiles kernels
    /// of its own, seconds on a GPU that would land in whichever part compiled them.
    pub async fn profile_step(&self) -> Result<Vec<StepPart>, NepaError> {
        let pixels = synthetic_batch(&self.config, self.settings.batch, self.settings.seed);
        let mut parts = Vec::new();
        for _ in 0..2 {
            parts = profile_step(
                self.trainer.model(),
                self.trainer.optimizer(),
                &pixels,
                self.settings.lr,
                self.settings.weight_decay,
            )
            .await?;
        }
        Ok(parts)
    }

    /// The trained model.
    pub fn model(&self) -> &NepaModel {
        self.trainer.model()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The run report, with what only the caller knows about where it ran in `host`.
    pub fn report(&self, host: &HostInfo) -> RunReport {
        let warm = self.settings.warmup;
        let timed: Vec<&TrainRecord> = self.records.iter().filter(|r| !r.warmup).collect();
        let step_ms: Vec<f64> = timed.iter().map(|r| r.ms).collect();
        let step_median = median(&step_ms);
        let run_ms: Vec<f64> = self.inference_ms.iter().skip(warm).copied().collect();
        let run_median = median(&run_ms);
        let batch = self.settings.batch as f64;
        let flops = FlopsPerImage::of(&self.config);
        let train_ips = finite(batch / (step_median / 1e3));
        let inference_ips = finite(batch / (run_median / 1e3));
        let losses = |warmup: bool| -> Vec<f64> {
            self.records
                .iter()
                .filter(|r| r.warmup == warmup)
                .map(|r| f64::from(r.loss))
                .collect()
        };
        RunReport {
            schema: REPORT_SCHEMA.into(),
            tool: host.tool.clone(),
            created_unix: host.created_unix,
            backend: host.backend.clone(),
            adapter: host.adapter.clone(),
            threads: host.threads,
            model: self.config.clone(),
            params: self.config.num_params() as u64,
            seed: self.settings.seed,
            batch: self.settings.batch,
            dtype: Some(self.settings.precision.report_dtype().into()),
            attention: Some(attention_label(self.settings.precision, &self.device)),
            flops_per_image: Some(flops),
            train: Some(TrainReport {
                warmup_steps: warm,
                steps: timed.len(),
                step_ms,
                step_ms_median: finite(step_median),
                images_per_sec: train_ips,
                tflops: FlopsPerImage::tflops(flops.train, train_ips),
                loss: losses(false),
                warmup_loss: losses(true),
                grad_norm: timed.iter().map(|r| f64::from(r.grad_norm)).collect(),
                first_step_ms: self.records.first().map(|r| r.ms),
                optimizer: Some(OptimizerReport {
                    name: "adamw".into(),
                    lr: self.settings.lr,
                    betas: [0.9, 0.95],
                    eps: 1e-8,
                    weight_decay: self.settings.weight_decay,
                    no_decay: Some("biases, norms, LayerScale".into()),
                    max_grad_norm: Some(1.0),
                    schedule: Some("constant".into()),
                }),
            }),
            inference: Some(InferenceReport {
                warmup_runs: warm.min(self.inference_ms.len()),
                runs: run_ms.len(),
                ms: run_ms,
                ms_median: finite(run_median),
                images_per_sec: inference_ips,
                tflops: FlopsPerImage::tflops(flops.forward, inference_ips),
                first_run_ms: self.inference_ms.first().copied(),
            }),
            peak_memory_bytes: host.peak_memory_bytes,
            peak_memory_kind: host.peak_memory_kind.clone(),
            output_digest: Some(self.digest.clone()),
            weights: Some(self.weights.clone()),
            versions: Some(BTreeMap::from([
                ("nepa".into(), Some(env!("CARGO_PKG_VERSION").into())),
                ("burn".into(), Some("0.22.1".into())),
            ])),
            host: Some(host.host.clone()),
            command: Some(host.command.clone()),
            notes: vec![
                "synthetic data: one fixed batch, pixels U(-1, 1) from the seed (SplitMix64), reused every step".into(),
                "train mode without RoPE rescale or drop-path, so steps are deterministic".into(),
            ],
        }
    }
}

/// What the report says about where it ran; only the caller knows it.
#[derive(Clone, Debug, Default)]
pub struct HostInfo {
    /// `"nepa bench"` or `"browser"`.
    pub tool: String,
    pub created_unix: u64,
    pub backend: String,
    pub adapter: String,
    pub threads: Option<usize>,
    pub peak_memory_bytes: Option<u64>,
    pub peak_memory_kind: Option<String>,
    pub host: HostDetails,
    pub command: String,
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `None` for NaN or ±∞: JSON has no such numbers, and the schema writes null for a value
/// that could not be measured (e.g. the median of no steps).
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The probe of §2 of docs/run-report.md, as the `probe` string of a digest.
pub const PROBE_DESCRIPTION: &str = "closed-form probe: pixel i (CHW) = ((37 i) mod 101) / 50 - 1";

/// The report's `attention` field: which attention form the timed training steps and
/// inference runs take: nepa's fused kernels (`kernels::takes_fused_kernels`), else
/// `takes_fused_attention`.
fn attention_label(precision: Precision, device: &Device) -> String {
    if crate::kernels::takes_fused_kernels(device) {
        return "fused kernels".into();
    }
    let form = |autodiff| match takes_fused_attention(precision, autodiff, false) {
        true => "fused op",
        false => "explicit",
    };
    match (form(true), form(false)) {
        (train, inference) if train == inference => train.into(),
        (train, inference) => format!("{train} (train), {inference} (inference)"),
    }
}
