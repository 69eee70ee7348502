//! Supervised fine-tuning (docs/nepa.md §5): one driver for `nepa finetune` and the page's
//! Fine-tune tab.
//!
//! - [`FinetuneSettings`]: every knob of the recipe, with the official values
//!   ([`FinetuneSettings::official`]) and a preset for small data sets
//!   ([`FinetuneSettings::small_data`]); docs/finetune-recipe.md says what differs and why.
//! - [`Finetuner`] (`tuner.rs`): the model and its optimizer, one update per call, in one of
//!   three modes (full with layer-wise lr decay, head only, LoRA).
//! - [`FinetuneRun`] (`run.rs`): the loop body both shells call: seeded batch order, the
//!   recipe's augmentation and label mixing, the step, the divergence guard, the EMA, and
//!   evaluation.

mod run;
mod tuner;

pub use crate::guard::StepOutcome;
pub use run::{
    FinetuneRecord, FinetuneRun, class_probabilities, class_probabilities_with, eval_pixels,
    evaluate, mixup_config, train_transform,
};
pub use tuner::Finetuner;

pub use nepa_types::finetune::{FinetuneMode, FinetuneSettings, Recipe};
