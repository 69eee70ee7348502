//! Supervised fine-tuning in one of three modes, stepped by the caller (the browser between
//! repaints, or a native loop):
//!
//! - **Full** — every parameter but the patch embedding (frozen, as the official recipe), with
//!   layer-wise learning-rate decay and the official per-group warmup (docs/nepa.md §5),
//!   through this crate's AdamW.
//! - **Head only** — the backbone frozen; only `fc_norm` and `classifier` learn. Cheapest, but
//!   NEPA's features are weak under a linear probe (docs/nepa.md §5: linear probing is poor),
//!   so this is mostly a quick baseline.
//! - **LoRA** — Burn's `apply_lora` puts rank-r adapters on every 2-D weight of the backbone
//!   (its base weights frozen), trained with the head by Burn's AdamW. The default for the
//!   browser: the backbone adapts, yet the optimizer holds state only for the adapters and
//!   the head, and the pretrained weights stay intact.

use burn::module::{Lora, Module};
use burn::optim::{AdamWConfig as BurnAdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::classifier::NepaClassifier;
use crate::model::{ForwardOptions, NepaModel};
use crate::train::{
    AdamW, AdamWConfig, FinetuneSchedule, StepOutput, cross_entropy, finetune_step, warmup_cosine,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinetuneMode {
    Full,
    HeadOnly,
    Lora,
}

impl FinetuneMode {
    pub const ALL: [FinetuneMode; 3] = [
        FinetuneMode::Lora,
        FinetuneMode::Full,
        FinetuneMode::HeadOnly,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FinetuneMode::Full => "full model, layer-wise lr decay (patch embedding frozen)",
            FinetuneMode::HeadOnly => "head only (backbone frozen)",
            FinetuneMode::Lora => "LoRA adapters + head",
        }
    }
}

/// Fine-tuning hyper-parameters; the defaults suit a few hundred images in a browser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneSettings {
    pub mode: FinetuneMode,
    pub total_steps: usize,
    pub warmup_steps: usize,
    /// Peak learning rate of the backbone (full: before layer decay) or of the LoRA adapters.
    pub base_lr: f64,
    /// Peak learning rate of `classifier.*` (and the final `layernorm.*` in full mode).
    pub head_lr: f64,
    pub layer_decay: f64,
    pub weight_decay: f64,
    pub label_smoothing: f64,
    pub lora_rank: usize,
    pub lora_alpha: f64,
}

impl Default for FinetuneSettings {
    fn default() -> Self {
        Self {
            mode: FinetuneMode::Lora,
            total_steps: 60,
            warmup_steps: 5,
            base_lr: 1e-3,
            head_lr: 1e-3,
            layer_decay: 0.65,
            weight_decay: 0.05,
            label_smoothing: 0.1,
            lora_rank: 8,
            lora_alpha: 16.0,
        }
    }
}

enum Optimizer {
    /// Full and head-only: this crate's AdamW with per-parameter groups.
    Grouped(AdamW, FinetuneSchedule),
    /// LoRA: Burn's optimizer, which sees the adapter factors that `apply_lora` created.
    Lora(ModuleOptimizer),
}

/// A classifier being fine-tuned.
pub struct Finetuner {
    model: Option<NepaClassifier>,
    /// The model from before the last step, so a non-finite step can be undone.
    previous: Option<NepaClassifier>,
    optimizer: Optimizer,
    pub settings: FinetuneSettings,
    pub step: usize,
}

impl Finetuner {
    /// Wraps `backbone` (pretrained, on any device) with a fresh zero head for `num_labels`
    /// classes and prepares it for `settings.mode`.
    pub fn new(
        backbone: NepaModel,
        num_labels: usize,
        settings: FinetuneSettings,
        device: &Device,
    ) -> Self {
        let num_layers = backbone.layers.len();
        // `train()` puts every parameter on the autodiff graph, whichever device the
        // backbone was loaded for.
        let mut model = NepaClassifier::from_backbone(backbone, num_labels, device).train();
        let optimizer = match settings.mode {
            FinetuneMode::Lora => {
                model.vit_nepa = model
                    .vit_nepa
                    .apply_lora(Lora::new(settings.lora_rank, settings.lora_alpha));
                Optimizer::Lora(
                    BurnAdamWConfig::new()
                        .with_beta_1(0.9)
                        .with_beta_2(0.95)
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
                    AdamW::new(AdamWConfig::default()),
                    FinetuneSchedule {
                        base_lr: settings.base_lr,
                        head_lr: settings.head_lr,
                        layer_decay: settings.layer_decay,
                        weight_decay: settings.weight_decay,
                        num_layers,
                        total_steps: settings.total_steps,
                        warmup_steps: settings.warmup_steps,
                        // The official recipe keeps the patch embedding frozen (docs/nepa.md §5).
                        freeze_patch_embed: true,
                    },
                )
            }
        };
        Self {
            model: Some(model),
            previous: None,
            optimizer,
            settings,
            step: 0,
        }
    }

    /// The head's learning rate at the current step (what a progress line shows).
    pub fn head_lr(&self) -> f64 {
        warmup_cosine(
            self.step,
            self.settings.total_steps,
            self.settings.warmup_steps.max(1),
            self.settings.head_lr,
            0.0,
        )
    }

    /// One step on a batch of normalised pixels and their labels. Loss, gradient norm and
    /// logits stay on the device; read them asynchronously.
    pub fn step(&mut self, pixels: Tensor<4>, labels: &[usize]) -> StepOutput<()> {
        let model = self.model.take().expect("the model is always put back");
        // A clone shares the parameter tensors: keeping it costs no copy.
        self.previous = Some(model.clone());
        let step = self.step;
        let forward = ForwardOptions::eval();
        let smoothing = self.settings.label_smoothing;
        let mode = self.settings.mode;
        let out = match &mut self.optimizer {
            Optimizer::Grouped(optim, schedule) => {
                finetune_step(model, optim, pixels, labels, smoothing, &forward, |key| {
                    let is_head = key.starts_with("classifier.") || key.starts_with("fc_norm.");
                    if mode == FinetuneMode::HeadOnly && !is_head {
                        return None;
                    }
                    schedule.group(key, step)
                })
            }
            Optimizer::Lora(optim) => {
                let logits = model.forward(pixels, &forward);
                let loss = cross_entropy(logits.clone(), labels, smoothing);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                let lr = warmup_cosine(
                    step,
                    self.settings.total_steps,
                    self.settings.warmup_steps.max(1),
                    self.settings.base_lr,
                    0.0,
                );
                StepOutput {
                    model: optim.step(lr, model, grads),
                    loss: loss.detach(),
                    grad_norm: None,
                    embedding_similarity: None,
                    logits: Some(logits.detach()),
                }
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

    /// Undoes the last step's update to the weights (its loss or gradient norm was not
    /// finite: see [`crate::guard`]). The optimizer's moments are not rolled back, so a
    /// caller stops training after this. Returns whether there was a step to undo.
    pub fn discard_last_step(&mut self) -> bool {
        match self.previous.take() {
            Some(previous) => {
                self.model = Some(previous);
                self.step = self.step.saturating_sub(1);
                true
            }
            None => false,
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
