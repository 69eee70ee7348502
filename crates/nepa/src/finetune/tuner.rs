//! The model being fine-tuned and its optimizer, one update per call, in one of three modes:
//!
//! - **Full** — every parameter but the patch embedding (frozen, as the official recipe),
//!   with layer-wise learning-rate decay and the official per-group warmup (docs/nepa.md §5),
//!   through this crate's AdamW (β2 0.999 as the official fine-tuning).
//! - **Head only** — the backbone frozen; only `fc_norm` and `classifier` learn. Cheapest, but
//!   NEPA's features are weak under a linear probe (docs/nepa.md §5), so this is mostly a
//!   quick baseline.
//! - **LoRA** — Burn's `apply_lora` puts rank-r adapters on every 2-D weight of the backbone
//!   (its base weights frozen), trained with the head by Burn's AdamW. The optimizer holds
//!   state only for the adapters and the head, and the pretrained weights stay intact.

use burn::module::{Lora, Module};
use burn::optim::{
    AdamWConfig as BurnAdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer,
};
use burn::tensor::Tensor;

use super::{FinetuneMode, FinetuneSettings};
use crate::classifier::NepaClassifier;
use crate::model::ForwardOptions;
use crate::recipe::soft_target_cross_entropy;
use crate::train::{
    AdamW, AdamWConfig, FinetuneSchedule, StepOutput, UpdatePlan, finetune_step, flush,
    micro_batch, micro_batches, warmup_cosine,
};

enum Optimizer {
    /// Full and head-only: this crate's AdamW with per-parameter groups. Cloning it is
    /// cheap (shared tensors), so a non-finite step can be undone entirely.
    Grouped(AdamW, FinetuneSchedule),
    /// LoRA: Burn's optimizer, which sees the adapter factors that `apply_lora` created.
    Lora(ModuleOptimizer),
}

/// A classifier being fine-tuned.
pub struct Finetuner {
    model: Option<NepaClassifier>,
    /// The state from before the last step, so a non-finite step can be undone.
    previous: Option<(NepaClassifier, Option<AdamW>)>,
    optimizer: Optimizer,
    mode: FinetuneMode,
    peak_lr: f64,
    total_steps: usize,
    warmup_steps: usize,
    pub step: usize,
}

impl Finetuner {
    /// Prepares `model` (a classifier with its head) for `settings.mode` over `total_steps`
    /// steps. Seed the device first: LoRA's adapters are initialised from its generator.
    pub fn new(model: NepaClassifier, settings: &FinetuneSettings, total_steps: usize) -> Self {
        let num_layers = model.vit_nepa.layers.len();
        // `train()` puts every parameter on the autodiff graph, whichever device the
        // backbone was loaded for.
        let mut model = model.train();
        let warmup_steps = ((total_steps as f64) * settings.warmup_ratio).round() as usize;
        let optimizer = match settings.mode {
            FinetuneMode::Lora => {
                model.vit_nepa = model
                    .vit_nepa
                    .apply_lora(Lora::new(settings.lora_rank, settings.lora_alpha));
                // No clipping: Burn clips each tensor's norm on its own, not the global norm
                // of the official recipe, and the adapters start at zero update anyway.
                Optimizer::Lora(
                    BurnAdamWConfig::new()
                        .with_beta_1(0.9)
                        .with_beta_2(0.999)
                        .with_epsilon(1e-8)
                        .with_weight_decay(0.0)
                        .init(),
                )
            }
            FinetuneMode::Full | FinetuneMode::HeadOnly => {
                if settings.mode == FinetuneMode::HeadOnly {
                    // No gradient is computed through the backbone at all.
                    model.vit_nepa = model.vit_nepa.freeze();
                }
                Optimizer::Grouped(
                    AdamW::new(AdamWConfig {
                        beta2: 0.999,
                        max_grad_norm: (settings.clip_grad > 0.0).then_some(settings.clip_grad),
                        ..AdamWConfig::default()
                    }),
                    FinetuneSchedule {
                        base_lr: settings.peak_lr(),
                        head_lr: settings.head_lr,
                        layer_decay: settings.layer_decay,
                        weight_decay: settings.weight_decay,
                        num_layers,
                        total_steps,
                        warmup_steps,
                        freeze_patch_embed: !settings.train_patch_embed,
                    },
                )
            }
        };
        Self {
            model: Some(model),
            previous: None,
            optimizer,
            mode: settings.mode,
            peak_lr: settings.peak_lr(),
            total_steps,
            warmup_steps,
            step: 0,
        }
    }

    /// The learning rate of the body's top group at the current step (what a progress
    /// line shows; LoRA: the adapters' rate).
    pub fn lr(&self) -> f64 {
        let warmup = match self.mode {
            // The top block's factor is 1: its group warms up in one step.
            FinetuneMode::Full | FinetuneMode::HeadOnly => 1,
            FinetuneMode::Lora => self.warmup_steps,
        };
        warmup_cosine(self.step, self.total_steps, warmup, self.peak_lr, 0.0)
    }

    /// Whether the optimizer divides a loss scale back out of the gradients (LoRA's, Burn's
    /// own, does not: its runs keep the scale at 1).
    pub fn supports_loss_scaling(&self) -> bool {
        matches!(self.optimizer, Optimizer::Grouped(..))
    }

    /// One step on a batch of normalised pixels and their (soft) targets `[B, classes]`,
    /// in `plan.micro_batches` passes. Loss, gradient norm and logits stay on the device;
    /// read them asynchronously.
    pub fn step(
        &mut self,
        pixels: Tensor<4>,
        targets: Tensor<2>,
        forward: &ForwardOptions,
        plan: UpdatePlan,
    ) -> StepOutput<()> {
        let model = self.model.take().expect("the model is always put back");
        let step = self.step;
        let mode = self.mode;
        let lr = self.lr();
        let out = match &mut self.optimizer {
            Optimizer::Grouped(optim, schedule) => {
                // The state before the step: shared tensors, no copy.
                self.previous = Some((model.clone(), Some(optim.clone())));
                let policy = |key: &str| {
                    let is_head = key.starts_with("classifier.") || key.starts_with("fc_norm.");
                    if mode == FinetuneMode::HeadOnly && !is_head {
                        return None;
                    }
                    schedule.group(key, step)
                };
                finetune_step(model, optim, pixels, targets, forward, policy, plan)
            }
            Optimizer::Lora(optim) => {
                self.previous = Some((model.clone(), None));
                lora_step(
                    model,
                    optim,
                    lr,
                    pixels,
                    targets,
                    forward,
                    plan.micro_batches,
                )
            }
        };
        self.model = Some(out.model);
        self.step += 1;
        StepOutput {
            model: (),
            loss: out.loss,
            grad_norm: out.grad_norm,
            embedding_similarity: None,
            logits: out.logits,
        }
    }

    /// Undoes the last step's update (its loss or gradient norm was not finite: see
    /// [`crate::guard`]); the step still counts, so the schedule moves on. Returns whether
    /// the optimizer's state was restored too: it is in full and head-only mode; LoRA's
    /// optimizer moments cannot be rolled back, so a LoRA run stops after an undone step.
    pub fn undo_last_step(&mut self) -> bool {
        let Some((model, optim)) = self.previous.take() else {
            return false;
        };
        self.model = Some(model);
        match (optim, &mut self.optimizer) {
            (Some(before), Optimizer::Grouped(optim, _)) => {
                *optim = before;
                true
            }
            _ => false,
        }
    }

    /// The classifier as it trains (LoRA adapters still separate).
    pub fn model(&self) -> &NepaClassifier {
        self.model.as_ref().expect("the model is always put back")
    }

    /// A plain classifier for inference and saving: LoRA adapters folded into the weights,
    /// no autodiff. Its tensors have the official names (`checkpoint::classifier_tensors`).
    pub fn export(&self) -> NepaClassifier {
        self.model().clone().valid().materialize()
    }
}

/// LoRA's step through Burn's optimizer: the micro-batches' gradients, each from a loss
/// weighted by the micro-batch's share, summed by Burn's accumulator.
fn lora_step(
    model: NepaClassifier,
    optim: &mut ModuleOptimizer,
    lr: f64,
    pixels: Tensor<4>,
    targets: Tensor<2>,
    forward: &ForwardOptions,
    micro: usize,
) -> StepOutput<NepaClassifier> {
    let device = pixels.device();
    let batch = pixels.dims()[0];
    let mut accumulator = GradientsAccumulator::new();
    let (mut losses, mut logits) = (Vec::new(), Vec::new());
    for (start, len) in micro_batches(batch, micro) {
        let (x, y) = (
            micro_batch(&pixels, (start, len)),
            micro_batch(&targets, (start, len)),
        );
        let out = model.forward(x, forward);
        let mut loss = soft_target_cross_entropy(out.clone(), y);
        if len != batch {
            loss = loss.mul_scalar(len as f64 / batch as f64);
        }
        // Part by part, as the grouped step does (docs/performance.md §2).
        flush(&device);
        accumulator.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
        flush(&device);
        losses.push(loss.detach());
        logits.push(out.detach());
    }
    let model = optim.step(lr, model, accumulator.grads());
    flush(&device);
    let single = losses.len() == 1;
    StepOutput {
        model,
        loss: if single {
            losses.pop().expect("one micro-batch")
        } else {
            Tensor::cat(losses, 0).sum()
        },
        grad_norm: None,
        embedding_similarity: None,
        logits: Some(if single {
            logits.pop().expect("one micro-batch")
        } else {
            Tensor::cat(logits, 0)
        }),
    }
}
