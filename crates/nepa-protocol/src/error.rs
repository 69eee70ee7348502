//! The web app's one error type: what went wrong, as a kind the page can act on, and the
//! message shown to the user (it names the file or URL and says what was kept).

use nepa_types::error::NepaError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file or response that is not what it claims (not an image, a broken checkpoint).
    BadInput,
    /// Over a size cap (a download, a file).
    TooLarge,
    /// A download stalled or took too long.
    Timeout,
    /// The user cancelled.
    Cancelled,
    /// The network or the server refused.
    Network,
    /// The compute device failed or was lost.
    Device,
    /// Browser storage (OPFS, Cache Storage) refused.
    Storage,
    /// Training stopped: a non-finite loss, or an error of the model crate.
    Model,
    /// A request the worker cannot answer now (no model yet, an unknown image).
    NotReady,
    /// A bug: a malformed message, a worker that died.
    Internal,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WebError {
    pub kind: ErrorKind,
    pub message: String,
}

impl WebError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadInput, message)
    }

    pub fn model(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Model, message)
    }

    pub fn device(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Device, message)
    }

    pub fn storage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Storage, message)
    }

    pub fn network(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Network, message)
    }

    pub fn not_ready(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotReady, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The same error with what it concerns in front ("photo.png: …").
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        Self::new(self.kind, format!("{what}: {}", self.message))
    }
}

/// The model crate's errors keep their kind on the page: a model over the memory budget is
/// `TooLarge`, a broken checkpoint `BadInput`, a failed read-back `Device`.
impl From<NepaError> for WebError {
    fn from(e: NepaError) -> Self {
        let kind = match &e {
            NepaError::TooLarge(_) => ErrorKind::TooLarge,
            NepaError::Config(_)
            | NepaError::Input(_)
            | NepaError::Parse(_)
            | NepaError::MissingTensor { .. }
            | NepaError::ShapeMismatch { .. }
            | NepaError::UnsupportedDType { .. } => ErrorKind::BadInput,
            NepaError::Readback(_) => ErrorKind::Device,
            NepaError::NonFinite { .. } => ErrorKind::Model,
        };
        Self::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_errors_keep_their_kind() {
        let cases = [
            (NepaError::TooLarge("4 GiB".into()), ErrorKind::TooLarge),
            (NepaError::Parse("header".into()), ErrorKind::BadInput),
            (NepaError::Config("heads".into()), ErrorKind::BadInput),
            (NepaError::Readback("lost".into()), ErrorKind::Device),
            (NepaError::NonFinite { key: "w".into() }, ErrorKind::Model),
        ];
        for (e, kind) in cases {
            let text = e.to_string();
            let web = WebError::from(e).context("model.safetensors");
            assert_eq!(web.kind, kind, "{text}");
            assert_eq!(web.message, format!("model.safetensors: {text}"));
        }
    }
}
