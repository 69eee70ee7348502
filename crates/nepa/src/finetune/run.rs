//! The fine-tuning loop body that `nepa finetune` and the page's Fine-tune tab both call,
//! one step at a time (the page yields to the browser between steps; the CLI runs the
//! futures with `block_on`). Everything random is drawn from the run's seed and the step
//! number, so the same data and settings give the same loss curve in both shells.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use super::{FinetuneMode, FinetuneSettings, Finetuner};
use crate::classifier::NepaClassifier;
use crate::config::NepaConfig;
use crate::data::{ImageSet, Sampler, build_batch, step_device_seed, step_rng};
use crate::error::NepaError;
use crate::guard::{DivergenceGuard, StepOutcome, StepVerdict};
use crate::image::RgbImage;
use crate::model::{ForwardOptions, NepaModel};
use crate::precision::Precision;
use crate::recipe::{
    EvalTransform, MixupConfig, ModelEma, RandAugment, RandomErasing, TrainTransform,
};
use crate::rng::SplitMix64;
use crate::train::{LossScaler, UpdatePlan, argmax_rows, read_f32, read_scalar, step_verdict};

/// One step's figures, read back from the device.
#[derive(Clone, Debug)]
pub struct FinetuneRecord {
    /// 0-based index of the step.
    pub step: usize,
    pub loss: f32,
    pub grad_norm: Option<f32>,
    /// The body's top learning rate at this step.
    pub lr: f64,
    /// Top-1 accuracy of the batch against its (unmixed) labels.
    pub batch_accuracy: f64,
    pub outcome: StepOutcome,
}

/// A fine-tuning run over a labelled training set.
pub struct FinetuneRun {
    tuner: Finetuner,
    train: ImageSet,
    labels: Vec<usize>,
    sampler: Sampler,
    settings: FinetuneSettings,
    /// The classifier's config: bidirectional unless `causal`, QK-norm affine if asked.
    config: NepaConfig,
    total_steps: usize,
    device: Device,
    guard: DivergenceGuard,
    transform: TrainTransform,
    mixup: MixupConfig,
    /// The EMA of the weights (full and head-only modes).
    ema: Option<ModelEma<NepaClassifier>>,
    /// Dynamic loss scaling, for products in f16 (full and head-only modes).
    scaler: Option<LossScaler>,
}

impl FinetuneRun {
    /// Wraps `backbone` (pretrained or random, described by `config`) with a zero head for
    /// the classes of `train`, set up as `settings` say. `device` must be an autodiff device.
    pub fn new(
        backbone: NepaModel,
        config: &NepaConfig,
        train: ImageSet,
        settings: FinetuneSettings,
        device: &Device,
    ) -> Result<Self, NepaError> {
        settings.validate()?;
        let labels = train.require_labels("fine-tuning")?.to_vec();
        let classes = train.classes.len();
        let config = config
            .clone()
            .with_causal(settings.causal)
            .with_qk_norm_affine(config.qk_norm_affine || settings.qk_norm_affine)
            .with_drop_path(settings.drop_path);
        config.validate_classifier(classes)?;
        let sampler = Sampler::new(
            train.len(),
            settings.batch_size.min(train.len()),
            settings.seed,
        )?;
        if settings.mixes() && !sampler.batch_size().is_multiple_of(2) {
            return Err(NepaError::Input(format!(
                "Mixup/CutMix pair each image with another of its batch: the batch size must be \
                 even, got {}",
                sampler.batch_size()
            )));
        }
        let total_steps = settings
            .steps
            .unwrap_or(settings.epochs * sampler.steps_per_epoch());
        // LoRA's adapters and the head are initialised from the device's generator.
        device.seed(settings.seed);
        let mut backbone = backbone.with_drop_path(settings.drop_path);
        if settings.qk_norm_affine {
            backbone = backbone.with_affine_qk_norm();
        }
        let mut model = NepaClassifier::from_backbone(backbone, classes, device);
        // `from_backbone` makes attention bidirectional, as the official fine-tuning.
        model.vit_nepa = model.vit_nepa.set_causal(settings.causal);
        let precision = model.vit_nepa.precision;
        let tuner = Finetuner::new(model, &settings, total_steps);
        let scaler = (precision == Precision::F16 && tuner.supports_loss_scaling())
            .then(LossScaler::default);
        // LoRA keeps its adapters apart from the weights they adapt: there is no plain
        // weight set to average until the end.
        let ema = match (settings.ema_decay, settings.mode) {
            (Some(decay), FinetuneMode::Full | FinetuneMode::HeadOnly) => {
                Some(ModelEma::new(tuner.model(), decay)?)
            }
            _ => None,
        };
        Ok(Self {
            transform: train_transform(&settings),
            mixup: mixup_config(&settings),
            ema,
            scaler,
            tuner,
            train,
            labels,
            sampler,
            guard: DivergenceGuard::new(settings.max_bad_steps),
            settings,
            config,
            total_steps,
            device: device.clone(),
        })
    }

    pub fn settings(&self) -> &FinetuneSettings {
        &self.settings
    }

    pub fn config(&self) -> &NepaConfig {
        &self.config
    }

    pub fn classes(&self) -> &[String] {
        &self.train.classes
    }

    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.sampler.steps_per_epoch()
    }

    /// Steps taken so far (skipped ones included).
    pub fn steps_done(&self) -> usize {
        self.tuner.step
    }

    pub fn is_done(&self) -> bool {
        self.tuner.step >= self.total_steps
    }

    /// Non-finite steps undone so far (f16 overflows included).
    pub fn skipped_steps(&self) -> usize {
        self.guard.skipped() + self.scaler.as_ref().map_or(0, LossScaler::overflows)
    }

    /// The f16 loss scaler, if the products run in f16.
    pub fn loss_scaler(&self) -> Option<&LossScaler> {
        self.scaler.as_ref()
    }

    /// The training batch of `step`: pixels after the recipe's augmentation and mixing,
    /// soft targets, the hard labels, and the step's generator (for the forward pass's own
    /// draws).
    fn batch(
        &self,
        step: usize,
    ) -> Result<(TensorData, TensorData, Vec<usize>, SplitMix64), NepaError> {
        let mut rng = step_rng(self.settings.seed, step);
        let indices = self.sampler.batch_indices(step);
        let labels: Vec<usize> = indices.iter().map(|&i| self.labels[i]).collect();
        let images: Vec<&RgbImage> = indices.iter().map(|&i| &self.train.images[i]).collect();
        let batch = build_batch(&images, self.config.image_size, |image, h, w| {
            self.transform.apply(image, h, w, &mut rng)
        })?;
        let [h, w] = self.config.image_size;
        let shape = [images.len(), 3, h, w];
        let mut values: Vec<f32> = batch
            .try_into_vec()
            .map_err(|e| NepaError::Input(format!("{e:?}")))?;
        let classes = self.train.classes.len();
        // Mixup/CutMix pair whole images of the batch, so they act on the built batch.
        let mixed = self
            .mixup
            .apply(&mut values, shape, &labels, classes, &mut rng)?;
        Ok((
            TensorData::new(values, shape),
            TensorData::new(mixed.targets, [labels.len(), classes]),
            labels,
            rng,
        ))
    }

    /// Takes the next step and reads its loss, gradient norm and logits back.
    pub async fn step(&mut self) -> Result<FinetuneRecord, NepaError> {
        let step = self.tuner.step;
        let (pixels, targets, labels, mut rng) = self.batch(step)?;
        let forward = ForwardOptions::train(&self.config, &mut rng);
        // Drop-path masks come from the device generator: seed it per step so a run repeats.
        self.device.seed(step_device_seed(self.settings.seed, step));
        let lr = self.tuner.lr();
        let out = self.tuner.step(
            Tensor::from_data(pixels, &self.device),
            Tensor::from_data(targets, &self.device),
            &forward,
            UpdatePlan {
                micro_batches: self.settings.accumulate,
                loss_scale: self.scaler.as_ref().map_or(1.0, LossScaler::scale),
            },
        );
        let loss = read_scalar(out.loss).await?;
        let grad_norm = match out.grad_norm {
            Some(norm) => Some(read_scalar(norm).await?),
            None => None,
        };
        let logits = match out.logits {
            Some(logits) => read_f32(logits).await?,
            None => vec![],
        };
        let correct = argmax_rows(&logits, self.train.classes.len())
            .iter()
            .zip(&labels)
            .filter(|(p, l)| p == l)
            .count();
        // An f16 overflow is the scaler's, not a divergence (docs/performance.md §3).
        let verdict = step_verdict(self.scaler.as_mut(), &mut self.guard, step, loss, grad_norm);
        let outcome = match verdict {
            StepVerdict::Apply => {
                if let Some(ema) = &mut self.ema {
                    ema.update(self.tuner.model())?;
                }
                StepOutcome::Applied
            }
            StepVerdict::Skip if self.tuner.undo_last_step() => StepOutcome::Skipped,
            StepVerdict::Skip => {
                // LoRA's optimizer moments cannot be rolled back: going on would not be
                // the same run.
                StepOutcome::Diverged(format!(
                    "training diverged at step {}: loss {loss}; the weights from before it \
                     are kept. Try a lower learning rate.",
                    step + 1
                ))
            }
            StepVerdict::Stop(message) => {
                self.tuner.undo_last_step();
                StepOutcome::Diverged(message)
            }
        };
        Ok(FinetuneRecord {
            step,
            loss,
            grad_norm,
            lr,
            batch_accuracy: correct as f64 / labels.len().max(1) as f64,
            outcome,
        })
    }

    /// The classifier for inference and saving (LoRA folded in, no autodiff).
    pub fn model(&self) -> NepaClassifier {
        self.tuner.export()
    }

    /// The EMA of the weights, when the run keeps one, for inference and saving.
    pub fn ema_model(&self) -> Option<NepaClassifier> {
        self.ema.as_ref().map(|ema| ema.model().clone().valid())
    }
}

/// The recipe's per-image training augmentation (docs/nepa.md §5): RandomResizedCrop
/// (bicubic) + flip, then RandAugment and RandomErasing where the settings turn them on.
pub fn train_transform(settings: &FinetuneSettings) -> TrainTransform {
    TrainTransform {
        scale: (settings.crop_min_scale, 1.0),
        randaug: settings.randaug.then(RandAugment::official),
        erasing: (settings.erasing > 0.0).then(|| RandomErasing {
            probability: settings.erasing,
            ..RandomErasing::official()
        }),
        ..TrainTransform::official()
    }
}

/// Mixup/CutMix and label smoothing as the settings say (α 0 turns each off).
pub fn mixup_config(settings: &FinetuneSettings) -> MixupConfig {
    let mixes = settings.mixes();
    MixupConfig {
        mixup_alpha: settings.mixup,
        cutmix_alpha: settings.cutmix,
        prob: if mixes { 1.0 } else { 0.0 },
        switch_prob: settings.mix_switch_prob,
        label_smoothing: settings.label_smoothing,
        ..MixupConfig::official()
    }
}

/// A classifier's input for one image: the evaluation transform of the recipe (resize the
/// shorter side to size / 0.875, bicubic, centre crop), as the official evaluation. Used by
/// [`evaluate`], `nepa eval` and the page's classification.
pub fn eval_pixels(config: &NepaConfig, image: &RgbImage) -> Result<Vec<f32>, NepaError> {
    let [h, w] = config.image_size;
    EvalTransform::new(h, w).apply(image)
}

/// Top-1 accuracy of `model` on the labelled `data`, in batches of `batch`, with the
/// evaluation transform.
pub async fn evaluate(
    model: &NepaClassifier,
    config: &NepaConfig,
    data: &ImageSet,
    batch: usize,
    device: &Device,
) -> Result<f64, NepaError> {
    let labels = data.require_labels("evaluation")?;
    if data.is_empty() {
        return Ok(f64::NAN);
    }
    let classes = model.num_labels();
    let mut correct = 0usize;
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let images: Vec<&RgbImage> = chunk.iter().map(|&i| &data.images[i]).collect();
        let pixels = build_batch(&images, config.image_size, |image, _, _| {
            eval_pixels(config, image)
        })?;
        let logits = model.forward(Tensor::from_data(pixels, device), &ForwardOptions::eval());
        let values = read_f32(logits).await?;
        correct += argmax_rows(&values, classes)
            .into_iter()
            .zip(chunk)
            .filter(|(p, i)| *p == labels[**i])
            .count();
    }
    Ok(correct as f64 / data.len() as f64)
}

/// Class probabilities of one image under a plain (eval-mode) classifier, with the
/// evaluation transform: what the page shows for a new image.
pub async fn class_probabilities(
    model: &NepaClassifier,
    config: &NepaConfig,
    image: &RgbImage,
    device: &Device,
) -> Result<Vec<f32>, NepaError> {
    class_probabilities_with(
        model,
        config,
        image,
        |image| eval_pixels(config, image),
        device,
    )
    .await
}

/// As [`class_probabilities`], with the model's own preprocessing: `pixels` turns the image
/// into CHW values of the model's size (e.g. a hub model's `preprocessor_config.json`,
/// `crate::checkpoint::HubPreprocessor`).
pub async fn class_probabilities_with(
    model: &NepaClassifier,
    config: &NepaConfig,
    image: &RgbImage,
    pixels: impl Fn(&RgbImage) -> Result<Vec<f32>, NepaError>,
    device: &Device,
) -> Result<Vec<f32>, NepaError> {
    let pixels = build_batch(&[image], config.image_size, |image, _, _| pixels(image))?;
    let logits = model.forward(Tensor::from_data(pixels, device), &ForwardOptions::eval());
    read_f32(burn::tensor::activation::softmax(logits, 1)).await
}
