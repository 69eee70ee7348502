//! Errors of the model crate. Messages are shown to users as they are, so they name the
//! tensor, the field or the value at fault.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NepaError {
    #[error("invalid config: {0}")]
    Config(String),
    /// Sizes that are each within bounds but together would need more memory than the crate
    /// allows (see `config::MODEL_MEMORY_BUDGET_BYTES`); refused before allocating.
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("checkpoint is not a valid safetensors file: {0}")]
    Parse(String),
    #[error("checkpoint has no tensor `{key}` (expected shape {expected:?}){hint}")]
    MissingTensor {
        key: String,
        expected: Vec<usize>,
        hint: String,
    },
    #[error("checkpoint tensor `{key}` has shape {found:?}, but this config expects {expected:?}")]
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error(
        "checkpoint tensor `{key}` has unsupported dtype {dtype} (expected F32, F16, BF16 or F64)"
    )]
    UnsupportedDType { key: String, dtype: String },
    #[error("could not read tensor data back from the device: {0}")]
    Readback(String),
    /// Refused before writing: a checkpoint must never hold NaN or infinite weights.
    #[error("tensor `{key}` holds non-finite values (NaN or ±∞); the checkpoint was not written")]
    NonFinite { key: String },
}
