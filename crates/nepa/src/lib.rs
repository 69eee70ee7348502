//! # nepa
//!
//! NEPA — Next-Embedding Predictive Autoregression (Xu et al., arXiv 2512.16922) — on Burn.
//!
//! A vision transformer whose input embeddings z = [CLS ; conv patch embeddings] pass through
//! causal pre-norm blocks (2D RoPE θ = 100, QK-LayerNorm, LayerScale) and a final LayerNorm to
//! give ẑ; training minimises −mean cos(ẑ_t, stopgrad(z_{t+1})). Fine-tuning uses
//! bidirectional attention and a mean-pool → LayerNorm → Linear head.
//!
//! The crate is backend-agnostic (Burn 0.22 picks the backend from the `Device`) and does
//! no I/O except on byte slices, so the native trainer and the browser app use it unchanged.

// The plain data lives in `nepa-types` (no Burn), so the page and the protocol share it; the
// modules are re-exported under their old paths.
pub use nepa_types::{config, error, flops};

pub mod bench;
pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod finetune;
pub mod forward_tables;
pub mod guard;
pub mod idx;
pub mod image;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod precision;
pub mod pretrain;
pub mod probe;
pub mod recipe;
pub mod rng;
pub mod rope;
pub mod step_profile;
pub mod train;
pub mod viz;

pub use checkpoint::{LoadOptions, LoadReport, load_backbone, load_classifier};
pub use classifier::NepaClassifier;
pub use config::{Activation, MAX_LABELS, MODEL_MEMORY_BUDGET_BYTES, NepaConfig};
pub use error::NepaError;
pub use guard::{DivergenceGuard, StepOutcome, StepVerdict};
pub use loss::{LossOptions, prediction_loss};
pub use model::{ForwardOptions, NepaModel, NepaOutput};
pub use precision::Precision;
pub use rng::SplitMix64;
