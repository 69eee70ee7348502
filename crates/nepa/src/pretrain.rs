//! The NEPA pretraining loop body (docs/nepa.md §4), shared by `nepa pretrain`, the page's
//! "adapt to my images" and the benchmark: a seeded batch, the step, the read-back, and the
//! divergence guard with its undo.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::NepaConfig;
use crate::data::{ImageSet, Sampler, build_batch, step_device_seed, step_rng};
use crate::error::NepaError;
use crate::guard::{DivergenceGuard, StepOutcome, StepVerdict};
use crate::image::{Augment, RgbImage, augment_train};
use crate::loss::LossOptions;
use crate::model::{ForwardOptions, NepaModel};
use crate::precision::Precision;
use crate::train::{
    AdamW, LossScaler, UpdatePlan, pretrain_step, read_scalars, step_verdict, warmup_cosine,
};

/// Learning rate over the run and the weight decay (none on biases, norms, LayerScale).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PretrainSchedule {
    pub total_steps: usize,
    pub warmup_steps: usize,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub weight_decay: f64,
}

impl PretrainSchedule {
    /// The same rate at every step (the benchmark, short adaptation runs).
    pub fn constant(lr: f64, weight_decay: f64) -> Self {
        Self {
            total_steps: 1,
            warmup_steps: 0,
            peak_lr: lr,
            min_lr: lr,
            weight_decay,
        }
    }

    pub fn lr(&self, step: usize) -> f64 {
        warmup_cosine(
            step,
            self.total_steps,
            self.warmup_steps,
            self.peak_lr,
            self.min_lr,
        )
    }
}

/// One step's figures, read back from the device.
#[derive(Clone, Debug)]
pub struct PretrainRecord {
    /// 0-based index of the step.
    pub step: usize,
    pub loss: f32,
    pub grad_norm: Option<f32>,
    /// Mean pairwise cosine of the batch's patch embeddings (1: collapse).
    pub embedding_similarity: Option<f32>,
    pub lr: f64,
    pub outcome: StepOutcome,
}

/// What a pretraining run needs besides the model and the optimizer.
#[derive(Clone, Debug)]
pub struct PretrainOptions {
    pub schedule: PretrainSchedule,
    pub loss: LossOptions,
    pub augment: Augment,
    pub seed: u64,
    /// Non-finite steps in a row before the run stops.
    pub max_bad_steps: usize,
    /// Forward/backward passes each step's batch is split into (gradient accumulation:
    /// the same update with the memory of one slice; docs/performance.md §3).
    pub accumulate: usize,
}

/// One step's batch prepared on the host: the augmented pixels and the forward pass's
/// training noise (the RoPE rescale draw). It depends only on the data, the run's options and
/// the step, so a loader thread can prepare it ahead while the device computes the step
/// before (the CLI's prefetch, docs/performance.md §6).
pub struct PreparedBatch {
    pub step: usize,
    pub pixels: TensorData,
    pub forward: ForwardOptions,
}

/// Prepares the batch of `step`: the images `sampler` gives for it, augmented for training.
pub fn prepare_batch(
    data: &ImageSet,
    sampler: &Sampler,
    config: &NepaConfig,
    options: &PretrainOptions,
    step: usize,
) -> Result<PreparedBatch, NepaError> {
    let indices = sampler.batch_indices(step);
    let images: Vec<&RgbImage> = indices.iter().map(|&i| &data.images[i]).collect();
    prepare_images(&images, config, options, step)
}

fn prepare_images(
    images: &[&RgbImage],
    config: &NepaConfig,
    options: &PretrainOptions,
    step: usize,
) -> Result<PreparedBatch, NepaError> {
    let mut rng = step_rng(options.seed, step);
    let pixels = build_batch(images, config.image_size, |image, h, w| {
        Ok(augment_train(image, h, w, &options.augment, &mut rng))
    })?;
    let forward = ForwardOptions::train(config, &mut rng);
    Ok(PreparedBatch {
        step,
        pixels,
        forward,
    })
}

/// A pretraining run in progress.
pub struct Pretrainer {
    model: Option<NepaModel>,
    optim: AdamW,
    options: PretrainOptions,
    config: NepaConfig,
    device: Device,
    guard: DivergenceGuard,
    /// Dynamic loss scaling, for a model whose products run in f16.
    scaler: Option<LossScaler>,
    pub step: usize,
}

impl Pretrainer {
    /// Continues `model` (on the autodiff `device`) with `optim` from step `start`.
    pub fn new(
        model: NepaModel,
        config: &NepaConfig,
        optim: AdamW,
        options: PretrainOptions,
        start: usize,
        device: &Device,
    ) -> Self {
        let scaler = (model.precision == Precision::F16).then(LossScaler::default);
        Self {
            scaler,
            model: Some(model.train()),
            optim,
            guard: DivergenceGuard::new(options.max_bad_steps),
            options,
            config: config.clone(),
            device: device.clone(),
            step: start,
        }
    }

    /// "Adapt to my images" (the page): NEPA pretraining continued on `n` unlabelled images
    /// from `model`, at the demo model's peak rate 1e-3 held constant (a few steps visibly
    /// move the maps), weight decay 0.05, crops of 35–100 % of the image (a few user images
    /// carry little redundancy), batches of up to 8. Returns the trainer and its sampler.
    pub fn adaptation(
        model: &NepaModel,
        config: &NepaConfig,
        n: usize,
        device: &Device,
    ) -> Result<(Self, Sampler), NepaError> {
        const BATCH: usize = 8;
        let seed = 0x0041_4441_5054; // "ADAPT"
        let sampler = Sampler::new(n, BATCH.min(n), seed)?;
        let options = PretrainOptions {
            schedule: PretrainSchedule::constant(1e-3, 0.05),
            loss: LossOptions::default(),
            augment: Augment {
                scale: (0.35, 1.0),
                ..Augment::default()
            },
            seed,
            max_bad_steps: 1,
            accumulate: 1,
        };
        let optim = AdamW::new(crate::train::AdamWConfig::default());
        let trainer = Self::new(model.clone(), config, optim, options, 0, device);
        Ok((trainer, sampler))
    }

    pub fn lr(&self) -> f64 {
        self.options.schedule.lr(self.step)
    }

    pub fn skipped_steps(&self) -> usize {
        self.guard.skipped() + self.scaler.as_ref().map_or(0, LossScaler::overflows)
    }

    /// The f16 loss scaler, if the model's products run in f16.
    pub fn loss_scaler(&self) -> Option<&LossScaler> {
        self.scaler.as_ref()
    }

    /// Replaces the f16 loss scaler (a resumed run's scale, or a test's).
    pub fn set_loss_scaler(&mut self, scaler: Option<LossScaler>) {
        self.scaler = scaler;
    }

    /// The model as it trains.
    pub fn model(&self) -> &NepaModel {
        self.model.as_ref().expect("the model is always put back")
    }

    pub fn optimizer(&self) -> &AdamW {
        &self.optim
    }

    pub fn options(&self) -> &PretrainOptions {
        &self.options
    }

    /// The next step on the batch `sampler` gives for it, with the training augmentation
    /// and the training forward pass (RoPE rescale, drop-path).
    pub async fn step(
        &mut self,
        data: &ImageSet,
        sampler: &Sampler,
    ) -> Result<PretrainRecord, NepaError> {
        let batch = prepare_batch(data, sampler, &self.config, &self.options, self.step)?;
        self.step_prepared(batch).await
    }

    /// The next step on augmented crops of `images`.
    pub async fn step_images(&mut self, images: &[&RgbImage]) -> Result<PretrainRecord, NepaError> {
        let batch = prepare_images(images, &self.config, &self.options, self.step)?;
        self.step_prepared(batch).await
    }

    /// The next step on a batch prepared by [`prepare_batch`] (possibly on another thread).
    pub async fn step_prepared(
        &mut self,
        batch: PreparedBatch,
    ) -> Result<PretrainRecord, NepaError> {
        if batch.step != self.step {
            return Err(NepaError::Input(format!(
                "the batch was prepared for step {}, but the run is at step {}",
                batch.step, self.step
            )));
        }
        let pixels = Tensor::from_data(batch.pixels, &self.device);
        self.step_pixels(pixels, &batch.forward).await
    }

    /// The next step on a ready batch of normalised pixels on the device (the benchmark's
    /// synthetic one).
    pub async fn step_pixels(
        &mut self,
        pixels: Tensor<4>,
        forward: &ForwardOptions,
    ) -> Result<PretrainRecord, NepaError> {
        let step = self.step;
        let lr = self.lr();
        // Drop-path masks come from the device generator: seed it per step so that a
        // resumed run draws what an uninterrupted one would.
        self.device.seed(step_device_seed(self.options.seed, step));
        let model = self.model.take().expect("the model is always put back");
        // The state before the step: shared tensors, no copy.
        let before = (model.clone(), self.optim.clone());
        let out = pretrain_step(
            model,
            &mut self.optim,
            pixels,
            lr,
            self.options.schedule.weight_decay,
            forward,
            self.options.loss,
            UpdatePlan {
                micro_batches: self.options.accumulate,
                loss_scale: self.scaler.as_ref().map_or(1.0, LossScaler::scale),
            },
        );
        self.model = Some(out.model);
        self.step += 1;
        // One read for the three values: each read waits for the device.
        let (has_norm, has_similarity) =
            (out.grad_norm.is_some(), out.embedding_similarity.is_some());
        let tensors = std::iter::once(out.loss)
            .chain(out.grad_norm)
            .chain(out.embedding_similarity)
            .collect();
        let mut values = read_scalars(tensors).await?.into_iter();
        let loss = values.next().unwrap_or(f32::NAN);
        let grad_norm = has_norm.then(|| values.next().unwrap_or(f32::NAN));
        let embedding_similarity = has_similarity.then(|| values.next().unwrap_or(f32::NAN));
        // An f16 overflow is the scaler's, not a divergence (docs/performance.md §3).
        let verdict = step_verdict(self.scaler.as_mut(), &mut self.guard, step, loss, grad_norm);
        let outcome = match verdict {
            StepVerdict::Apply => StepOutcome::Applied,
            verdict => {
                (self.model, self.optim) = (Some(before.0), before.1);
                match verdict {
                    StepVerdict::Stop(message) => StepOutcome::Diverged(message),
                    _ => StepOutcome::Skipped,
                }
            }
        };
        Ok(PretrainRecord {
            step,
            loss,
            grad_norm,
            embedding_similarity,
            lr,
            outcome,
        })
    }
}
