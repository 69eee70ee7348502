//! The NEPA pretraining loop body (docs/nepa.md §4), shared by `nepa pretrain`, the page's
//! "adapt to my images" and the benchmark: a seeded batch, the step, the read-back, and the
//! divergence guard with its undo.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::config::NepaConfig;
use crate::data::{ImageSet, Sampler, build_batch, step_device_seed, step_rng};
use crate::error::NepaError;
use crate::guard::{DivergenceGuard, StepOutcome, StepVerdict};
use crate::image::{Augment, RgbImage, augment_train};
use crate::loss::LossOptions;
use crate::model::{ForwardOptions, NepaModel};
use crate::train::{AdamW, pretrain_step, read_scalar, warmup_cosine};

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
}

/// A pretraining run in progress.
pub struct Pretrainer {
    model: Option<NepaModel>,
    optim: AdamW,
    options: PretrainOptions,
    config: NepaConfig,
    device: Device,
    guard: DivergenceGuard,
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
        Self {
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
        };
        let optim = AdamW::new(crate::train::AdamWConfig::default());
        let trainer = Self::new(model.clone(), config, optim, options, 0, device);
        Ok((trainer, sampler))
    }

    pub fn lr(&self) -> f64 {
        self.options.schedule.lr(self.step)
    }

    pub fn skipped_steps(&self) -> usize {
        self.guard.skipped()
    }

    /// The model as it trains.
    pub fn model(&self) -> &NepaModel {
        self.model.as_ref().expect("the model is always put back")
    }

    pub fn optimizer(&self) -> &AdamW {
        &self.optim
    }

    /// The next step on the batch `sampler` gives for it, with the training augmentation
    /// and the training forward pass (RoPE rescale, drop-path).
    pub async fn step(
        &mut self,
        data: &ImageSet,
        sampler: &Sampler,
    ) -> Result<PretrainRecord, NepaError> {
        let indices = sampler.batch_indices(self.step);
        let images: Vec<&RgbImage> = indices.iter().map(|&i| &data.images[i]).collect();
        self.step_images(&images).await
    }

    /// The next step on augmented crops of `images`.
    pub async fn step_images(&mut self, images: &[&RgbImage]) -> Result<PretrainRecord, NepaError> {
        let mut rng = step_rng(self.options.seed, self.step);
        let augment = self.options.augment.clone();
        let pixels = build_batch(images, self.config.image_size, |image, h, w| {
            Ok(augment_train(image, h, w, &augment, &mut rng))
        })?;
        let forward = ForwardOptions::train(&self.config, &mut rng);
        let pixels = Tensor::from_data(pixels, &self.device);
        self.step_pixels(pixels, &forward).await
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
        );
        self.model = Some(out.model);
        self.step += 1;
        let loss = read_scalar(out.loss).await?;
        let grad_norm = match out.grad_norm {
            Some(norm) => Some(read_scalar(norm).await?),
            None => None,
        };
        let embedding_similarity = match out.embedding_similarity {
            Some(s) => Some(read_scalar(s).await?),
            None => None,
        };
        let outcome = match self.guard.check(step, loss, grad_norm) {
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
