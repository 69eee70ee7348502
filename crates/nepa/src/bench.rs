//! The benchmark run that the native CLI (`nepa bench`) and the browser's Compare page both
//! execute, and the `nepa-run-report/1` JSON they both write (docs/run-report.md).
//!
//! Everything random comes from the seed on the host (`SplitMix64`): the initial weights, the
//! synthetic batch. Backends draw random numbers differently, so a device-side init would
//! make a browser run and a native run start from different models; with a host-side init
//! the same seed gives the same weights and data everywhere, and the two loss curves can be
//! compared step by step.
//!
//! Reads are asynchronous (`into_data_async`), so the same code runs in the browser, where
//! sync reads panic; native callers block on the futures.

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use web_time::Instant;

use crate::checkpoint::{LoadOptions, backbone_tensors, load_backbone};
use crate::config::NepaConfig;
use crate::error::NepaError;
use crate::loss::{LossOptions, prediction_loss};
use crate::model::{ForwardOptions, NepaModel};
use crate::rng::SplitMix64;
use crate::train::{AdamW, AdamWConfig, pretrain_step};

pub const REPORT_SCHEMA: &str = "nepa-run-report/1";

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

/// A backbone whose weights depend only on `config` and `seed` (not on the backend's random
/// generator), built on `device`.
pub fn seeded_backbone(
    config: &NepaConfig,
    seed: u64,
    device: &Device,
) -> Result<NepaModel, NepaError> {
    // The model built here only supplies the keys and shapes; its values are replaced.
    let layout = backbone_tensors(&NepaModel::new(config, device)?, false);
    let mut rng = SplitMix64::new(seed ^ 0x4E45_5041_494E_4954); // "NEPAINIT"
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = layout
        .into_iter()
        .map(|t| {
            let n: usize = t.shape.iter().product();
            let data: Vec<u8> = (0..n)
                .flat_map(|_| init_value(&t.key, config, &mut rng).to_le_bytes())
                .collect();
            (t.key, t.shape, data)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(key, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (key.clone(), v))
                .map_err(|e| NepaError::Parse(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let file = safetensors::tensor::serialize(views, None::<HashMap<String, String>>)
        .map_err(|e| NepaError::Parse(e.to_string()))?;
    let (model, _) = load_backbone(&file, config, device, LoadOptions::default())?;
    Ok(model)
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

async fn read_vec<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, NepaError> {
    tensor
        .into_data_async()
        .await
        .map_err(|e| NepaError::Readback(format!("{e:?}")))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| NepaError::Readback(format!("{e:?}")))
}

/// ẑ on the probe image (eval mode): a few statistics and an evenly strided sample, so two
/// reports made from the same weights can be compared value by value.
pub async fn output_digest(
    model: &NepaModel,
    config: &NepaConfig,
    device: &Device,
) -> Result<Value, NepaError> {
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
    let z_hat = read_vec(out.last_hidden_state).await?;
    let loss = read_vec(loss).await?[0];
    let sum: f64 = z_hat.iter().map(|&v| v as f64).sum();
    let abs_mean = z_hat.iter().map(|v| v.abs() as f64).sum::<f64>() / z_hat.len() as f64;
    let stride = z_hat.len().div_ceil(DIGEST_SAMPLE).max(1);
    let sample: Vec<f32> = z_hat.iter().step_by(stride).copied().collect();
    Ok(json!({
        "probe": "closed-form probe: pixel i (CHW) = ((37 i) mod 101) / 50 - 1",
        "z_hat_sum": sum,
        "z_hat_abs_mean": abs_mean,
        "z_hat_first": &z_hat[..8.min(d)],
        "z_hat_last": &z_hat[(t - 1) * d..(t - 1) * d + 8.min(d)],
        "z_hat_sample_stride": stride,
        "z_hat_sample": sample,
        "loss": loss,
    }))
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
    model: Option<NepaModel>,
    optim: AdamW,
    pixels: Tensor<4>,
    pub records: Vec<TrainRecord>,
    pub inference_ms: Vec<f64>,
    pub digest: Value,
    weights: Value,
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
        let (model, weights) = match weights {
            Some((model, source)) => (model, json!({ "source": "file", "path": source })),
            None => (
                seeded_backbone(&config, settings.seed, device)?,
                json!({ "source": "init",
                        "init": format!("nepa host-seeded init (SplitMix64), seed {}", settings.seed) }),
            ),
        };
        let digest = output_digest(&model, &config, device).await?;
        let pixels = Tensor::from_data(
            synthetic_batch(&config, settings.batch, settings.seed),
            device,
        );
        Ok(Self {
            config,
            settings,
            device: device.clone(),
            model: Some(model),
            optim: AdamW::new(AdamWConfig::default()),
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
        let model = self.model.take().expect("the model is always put back");
        let start = Instant::now();
        let out = pretrain_step(
            model,
            &mut self.optim,
            self.pixels.clone(),
            self.settings.lr,
            self.settings.weight_decay,
            &ForwardOptions::eval(),
            LossOptions::default(),
        );
        self.model = Some(out.model);
        // Reading the loss waits for the whole step, including the optimizer update.
        let loss = read_vec(out.loss).await?[0];
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let grad_norm = match out.grad_norm {
            Some(norm) => read_vec(norm).await?[0],
            None => f32::NAN,
        };
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
        let model = self
            .model
            .as_ref()
            .expect("the model is always put back")
            .valid();
        let pixels = self.pixels.clone().inner();
        let start = Instant::now();
        let out = model.forward(pixels, &ForwardOptions::eval());
        read_vec(out.last_hidden_state.sum()).await?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        self.inference_ms.push(ms);
        Ok(ms)
    }

    /// The trained model.
    pub fn model(&self) -> &NepaModel {
        self.model.as_ref().expect("the model is always put back")
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The run report, with what only the caller knows about where it ran in `host`.
    pub fn report(&self, host: &HostInfo) -> Value {
        let warm = self.settings.warmup;
        let timed: Vec<&TrainRecord> = self.records.iter().filter(|r| !r.warmup).collect();
        let step_ms: Vec<f64> = timed.iter().map(|r| r.ms).collect();
        let step_median = median(&step_ms);
        let run_ms: Vec<f64> = self.inference_ms.iter().skip(warm).copied().collect();
        let run_median = median(&run_ms);
        let batch = self.settings.batch as f64;
        json!({
            "schema": REPORT_SCHEMA,
            "tool": host.tool,
            "created_unix": host.created_unix,
            "backend": host.backend,
            "adapter": host.adapter,
            "threads": host.threads,
            "model": self.config,
            "params": self.config.num_params(),
            "seed": self.settings.seed,
            "batch": self.settings.batch,
            "dtype": "float32",
            "train": {
                "warmup_steps": warm,
                "steps": timed.len(),
                "step_ms": step_ms,
                "step_ms_median": step_median,
                "images_per_sec": batch / (step_median / 1e3),
                "loss": timed.iter().map(|r| r.loss).collect::<Vec<_>>(),
                "warmup_loss": self.records.iter().filter(|r| r.warmup).map(|r| r.loss).collect::<Vec<_>>(),
                "grad_norm": timed.iter().map(|r| r.grad_norm).collect::<Vec<_>>(),
                "first_step_ms": self.records.first().map(|r| r.ms),
                "optimizer": { "name": "adamw", "lr": self.settings.lr, "betas": [0.9, 0.95], "eps": 1e-8,
                    "weight_decay": self.settings.weight_decay, "no_decay": "biases, norms, LayerScale",
                    "max_grad_norm": 1.0, "schedule": "constant" },
            },
            "inference": {
                "warmup_runs": warm.min(self.inference_ms.len()),
                "runs": run_ms.len(),
                "ms": run_ms,
                "ms_median": run_median,
                "images_per_sec": batch / (run_median / 1e3),
                "first_run_ms": self.inference_ms.first(),
            },
            "peak_memory_bytes": host.peak_memory_bytes,
            "peak_memory_kind": host.peak_memory_kind,
            "output_digest": self.digest,
            "weights": self.weights,
            "versions": { "nepa": env!("CARGO_PKG_VERSION"), "burn": "0.22.1" },
            "host": host.host,
            "command": host.command,
            "notes": ["synthetic data: one fixed batch, pixels U(-1, 1) from the seed (SplitMix64), reused every step",
                      "train mode without RoPE rescale or drop-path, so steps are deterministic"],
        })
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
    pub host: Value,
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

/// The parts of a run report the Compare page puts side by side.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportSummary {
    pub tool: String,
    pub backend: String,
    pub adapter: String,
    pub model: Value,
    pub seed: u64,
    pub batch: usize,
    pub step_ms_median: Option<f64>,
    pub train_images_per_sec: Option<f64>,
    pub inference_ms_median: Option<f64>,
    /// Loss of every step from step 0: the warm-up steps, then the timed ones.
    pub loss_curve: Vec<f64>,
    /// ẑ values of the digest (the strided sample, else the first and last tokens' values).
    pub digest: Vec<f64>,
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

impl ReportSummary {
    /// Reads a report, rejecting anything that is not `nepa-run-report/1`.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("not a JSON run report: {e}"))?;
        let schema = v["schema"].as_str().unwrap_or("(none)");
        if schema != REPORT_SCHEMA {
            return Err(format!(
                "schema is {schema:?}, expected {REPORT_SCHEMA:?} (docs/run-report.md)"
            ));
        }
        let train = &v["train"];
        let mut loss_curve = numbers(&train["warmup_loss"]);
        loss_curve.extend(numbers(&train["loss"]));
        let digest = &v["output_digest"];
        let mut sample = numbers(&digest["z_hat_sample"]);
        if sample.is_empty() {
            sample = numbers(&digest["z_hat_first"]);
            sample.extend(numbers(&digest["z_hat_last"]));
        }
        Ok(Self {
            tool: v["tool"].as_str().unwrap_or("?").into(),
            backend: v["backend"].as_str().unwrap_or("?").into(),
            adapter: v["adapter"].as_str().unwrap_or("?").into(),
            model: v["model"].clone(),
            seed: v["seed"].as_u64().unwrap_or(0),
            batch: v["batch"].as_u64().unwrap_or(0) as usize,
            step_ms_median: train["step_ms_median"].as_f64(),
            train_images_per_sec: train["images_per_sec"].as_f64(),
            inference_ms_median: v["inference"]["ms_median"].as_f64(),
            loss_curve,
            digest: sample,
        })
    }
}

/// Two reports side by side.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Same model config, seed and batch: the loss curves and digests should agree.
    pub same_run: bool,
    /// Why not, when `same_run` is false.
    pub mismatch: Vec<String>,
    /// `a / b` of the median step time (above 1: `a` is slower).
    pub step_time_ratio: Option<f64>,
    pub inference_time_ratio: Option<f64>,
    /// Steps both curves have, and the largest |Δloss| over them.
    pub common_steps: usize,
    pub max_loss_diff: Option<f64>,
    pub digest_max_abs_diff: Option<f64>,
    pub digest_cosine: Option<f64>,
}

/// Compares report `a` (e.g. the browser) with report `b` (e.g. native).
pub fn compare(a: &ReportSummary, b: &ReportSummary) -> Comparison {
    let mut mismatch = vec![];
    if a.model != b.model {
        mismatch.push("different model configs".to_string());
    }
    if a.seed != b.seed {
        mismatch.push(format!("seeds {} and {}", a.seed, b.seed));
    }
    if a.batch != b.batch {
        mismatch.push(format!("batch sizes {} and {}", a.batch, b.batch));
    }
    let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    };
    let common_steps = a.loss_curve.len().min(b.loss_curve.len());
    let max_loss_diff = (common_steps > 0).then(|| {
        a.loss_curve
            .iter()
            .zip(&b.loss_curve)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    });
    let (digest_max_abs_diff, digest_cosine) =
        if a.digest.len() == b.digest.len() && !a.digest.is_empty() {
            let max = a
                .digest
                .iter()
                .zip(&b.digest)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            let dot: f64 = a.digest.iter().zip(&b.digest).map(|(x, y)| x * y).sum();
            let na = a.digest.iter().map(|x| x * x).sum::<f64>().sqrt();
            let nb = b.digest.iter().map(|x| x * x).sum::<f64>().sqrt();
            (Some(max), Some(dot / (na * nb).max(1e-30)))
        } else {
            (None, None)
        };
    Comparison {
        same_run: mismatch.is_empty(),
        mismatch,
        step_time_ratio: ratio(a.step_ms_median, b.step_ms_median),
        inference_time_ratio: ratio(a.inference_ms_median, b.inference_ms_median),
        common_steps,
        max_loss_diff,
        digest_max_abs_diff,
        digest_cosine,
    }
}
