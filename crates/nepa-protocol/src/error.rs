//! The web app's one error type: what went wrong, as a kind the page can act on, and the
//! message shown to the user (it names the file or URL and says what was kept).

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
}
