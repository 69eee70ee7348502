//! The data side of the official fine-tuning recipe (docs/nepa.md §5), with the semantics of
//! timm, which the official scripts call: Mixup/CutMix with label smoothing
//! ([`MixupConfig`]), RandAugment ([`RandAugment`]), random erasing ([`RandomErasing`]),
//! the train and eval transforms ([`TrainTransform`], [`EvalTransform`]) and an EMA of the
//! weights ([`ModelEma`]).
//!
//! Everything host-side works on byte and float buffers and draws only from a seeded
//! [`crate::SplitMix64`], so a run reproduces bit for bit on native and wasm alike. The
//! random streams are this crate's, not NumPy's or torch's: the distributions match timm's,
//! the individual draws do not.

mod ema;
mod erasing;
mod eval;
mod mixup;
mod pixel_ops;
mod randaug;
mod transform;

pub use ema::ModelEma;
pub use erasing::{EraseBox, RandomErasing};
pub use eval::EvalTransform;
pub use mixup::{Mix, MixedTargets, MixupConfig, smooth_one_hot, soft_target_cross_entropy};
pub use randaug::{OPS, Op, RandAugment};
pub use transform::TrainTransform;
