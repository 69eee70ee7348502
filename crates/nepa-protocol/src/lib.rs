//! The messages between the NEPA web page and its engine worker (docs/web-architecture.md).
//!
//! The page (the root crate, built without Burn) renders; the worker (`crates/nepa-worker`)
//! holds the device, the models and the images, and runs every model computation. Each
//! message is a JS object `{ json, payload }`: `json` is one of the types below as JSON, and
//! `payload` carries what is too large for JSON (files, checkpoint bytes, RGBA pixels) as
//! transferables, so big buffers move between threads without a copy.

mod error;
mod hub;
mod views;

pub use error::{ErrorKind, WebError};
pub use hub::*;
pub use views::*;

use serde::{Deserialize, Serialize};

/// Numbers a request; its progress, result or error carry the same id.
pub type RequestId = u64;
/// An image the worker holds (decoded once, referred to by id afterwards).
pub type ImageId = u32;

/// A message to the worker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ToWorker {
    pub id: RequestId,
    pub request: Request,
}

/// A message from the worker: `id` names the request it answers, `None` for events of its
/// own (a lost device).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FromWorker {
    pub id: Option<RequestId>,
    pub reply: Reply,
}

/// Which device the worker computes on.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum DevicePreference {
    /// WebGPU on a hardware adapter; Flex (CPU) when there is none or the adapter is a
    /// software rasteriser (SwiftShader, llvmpipe, WARP), which is slower than Flex.
    #[default]
    Auto,
    /// Flex, the CPU backend (`?cpu`, or after a lost device).
    Cpu,
    /// WebGPU even on a software adapter (the user's switch, or the page's `?webgpu`).
    AnyAdapter,
}

/// Which attention the engine takes on WebGPU (docs/attention.md): softmax(q·kᵀ)·v with
/// Burn's operations, the probabilities materialised (the default, the faster one on the
/// software adapters the tests run on), or nepa's fused kernels (the page's `?attention=fused`).
/// The CPU (Flex) path is the same under both.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Attention {
    #[default]
    Decomposed,
    Fused,
}

/// What the page asks of the worker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Request {
    /// Starts the compute device with the attention the engine takes from then on; the first
    /// request. Answered by [`Reply::Started`].
    Start {
        device: DevicePreference,
        #[serde(default)]
        attention: Attention,
    },
    /// Moves to another device: the model is loaded again there (`ModelUpdated`), then
    /// `Started`.
    SwitchDevice { device: DevicePreference },
    /// The bundled demo checkpoint, else the random init (with an error saying why).
    LoadDemo,
    /// A checkpoint from a file; payload: the `File`. Answered by [`Reply::ModelReady`].
    LoadFile { name: String },
    /// A checkpoint by URL, under the limits; kept in the browser's Cache Storage and
    /// reused on later loads of the same URL.
    LoadUrl { url: String, limits: DownloadLimits },
    /// A model from a hub by id: its `config.json` (architecture, class names) and
    /// `model.safetensors`, under the limits; kept in Cache Storage by id and revision.
    LoadHub {
        model: HubModel,
        limits: DownloadLimits,
    },
    /// Decodes images; payload: an array of `File`s, one per name. Answered by
    /// [`Reply::ImagesAdded`] (thumbnails in the payload).
    AddImages { names: Vec<String> },
    /// Fetches and decodes the page's own images (bundled photos).
    AddBundledImages { urls: Vec<String> },
    /// The bundled Fashion-MNIST sample classes (`samples/fashion-mnist/manifest.json`).
    LoadSampleClasses,
    /// The five NEPA maps of an image for a selection. A newer `Render` replaces an older
    /// one still waiting; answered by [`Reply::Rendered`] (pixels in the payload).
    Render { key: ViewKey },
    /// NEPA pretraining steps on the given images ("adapt to my images"): `Progress` and a
    /// `ModelUpdated` every few steps, then `Done`.
    Adapt { steps: usize, images: Vec<ImageId> },
    /// Fine-tunes a classifier on the classes (the crate's driver, the page's preset).
    Finetune(FinetuneRequest),
    /// Pauses or resumes a running request (fine-tuning).
    Pause { target: RequestId, paused: bool },
    /// Stops a running request: a download, an adaptation, a fine-tuning run, a benchmark.
    Cancel { target: RequestId },
    /// The most probable classes of an image under the current model's classifier head (a
    /// hub classifier); answered by [`Reply::TopClasses`], or `Done` when the model changed.
    TopClasses { model_version: u32, image: ImageId },
    /// Class probabilities of images; payload: `File`s, one per name.
    Classify { names: Vec<String> },
    /// The last fine-tuned model from browser storage (OPFS), if there is one.
    RestoreFinetuned,
    /// The fine-tuned model as safetensors bytes (payload of [`Reply::Exported`]).
    ExportFinetuned,
    /// The Compare tab's benchmark (`nepa::bench::compare_run`) on the worker's device;
    /// answered by [`Reply::BenchReport`]. Reading and comparing reports needs no engine:
    /// the page does it with `nepa_types::report`.
    Bench,
    /// Lists the checkpoints kept in Cache Storage.
    ListCache,
    /// Deletes one kept checkpoint (by URL); answered by the new list.
    DeleteCached { url: String },
    /// Destroys the GPU device: a real device loss on demand, so the recovery path can be
    /// tested (the page exposes it as `window.nepaLoseDevice()`).
    LoseDevice,
}

/// Size cap and timeouts of a download by URL.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct DownloadLimits {
    pub cap_bytes: u64,
    /// No byte for this long: the server stalled.
    pub stall_ms: u32,
    /// The whole download may take this long.
    pub total_ms: u32,
}

impl Default for DownloadLimits {
    fn default() -> Self {
        Self {
            // wasm32 memory (4 GiB at most) must also hold the parsed model.
            cap_bytes: 1 << 30,
            stall_ms: 30_000,
            // 1 GiB at 0.6 MB/s.
            total_ms: 30 * 60 * 1000,
        }
    }
}

/// What the worker answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Reply {
    /// The worker's wasm is running and listens (sent once, unasked, with `id: None`): the
    /// page holds its requests until then.
    WorkerReady,
    /// A step of a long request.
    Progress(Progress),
    /// The request failed; nothing the page holds is lost.
    Failed(WebError),
    /// The request finished without a result of its own (cancel, pause).
    Done,
    /// The device is ready (or was switched).
    Started(DeviceInfo),
    /// The GPU device was lost; the worker waits for `SwitchDevice`.
    DeviceLost {
        reason: String,
    },
    /// A model is loaded: its version grows each time.
    ModelReady(ModelInfo),
    /// The model changed while its request goes on (every few adaptation steps; the model
    /// loaded again on a new device before `Started`). Not final.
    ModelUpdated(ModelInfo),
    /// Decoded images (thumbnails RGBA in the payload) and the files that were refused.
    ImagesAdded(ImagesAdded),
    /// The sample set's classes (their images are added like uploads).
    SampleClasses(Vec<ClassImages>),
    Rendered(RenderedView),
    /// One fine-tuning step.
    TrainStep(TrainProgress),
    /// A fine-tuned (or restored) classifier.
    Trained(TrainedInfo),
    Predictions(Vec<Prediction>),
    /// Safetensors bytes in the payload.
    Exported {
        name: String,
    },
    /// The benchmark's run report, `nepa-run-report/1` JSON (docs/run-report.md).
    BenchReport {
        json: String,
    },
    Cache(Vec<CachedCheckpoint>),
    TopClasses(TopClasses),
}

impl Reply {
    /// Whether this reply ends its request: all do except progress, training steps, model
    /// updates and the worker's hello. The page drops a request's handler after it.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Reply::WorkerReady | Reply::Progress(_) | Reply::TrainStep(_) | Reply::ModelUpdated(_)
        )
    }
}

/// Progress of a long request: a stage, and how far it is when that can be counted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    /// What runs now ("downloading", "parsing", "uploading to the device", "step 3/20 …").
    pub stage: String,
    pub done: Option<u64>,
    pub total: Option<u64>,
}

impl Progress {
    pub fn stage(stage: impl Into<String>) -> Self {
        Self {
            stage: stage.into(),
            ..Self::default()
        }
    }

    pub fn counted(stage: impl Into<String>, done: u64, total: Option<u64>) -> Self {
        Self {
            stage: stage.into(),
            done: Some(done),
            total,
        }
    }
}

/// Serialises a message for the `json` field.
pub fn encode<T: Serialize>(message: &T) -> String {
    // Cannot fail for these types (string keys only). serde_json writes a NaN as null, which
    // does not parse back as a number: values that may be NaN are sent as `Option`s.
    serde_json::to_string(message).unwrap_or_else(|e| {
        serde_json::to_string(&FromWorker {
            id: None,
            reply: Reply::Failed(WebError::internal(format!("unencodable message: {e}"))),
        })
        .unwrap_or_default()
    })
}

/// Parses a message's `json` field.
pub fn decode<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, WebError> {
    serde_json::from_str(json).map_err(|e| WebError::internal(format!("malformed message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_json() {
        let request = ToWorker {
            id: 7,
            request: Request::Render {
                key: ViewKey {
                    model_version: 3,
                    image: 2,
                    selection: Selection {
                        query: Some((1, 4)),
                        layer: Some(2),
                        head: None,
                        softmax: true,
                    },
                },
            },
        };
        assert_eq!(decode::<ToWorker>(&encode(&request)).unwrap(), request);
        // The first view's selection (no query yet) survives the trip as `None`.
        let first = ToWorker {
            id: 8,
            request: Request::Render {
                key: ViewKey::default(),
            },
        };
        assert_eq!(decode::<ToWorker>(&encode(&first)).unwrap(), first);
        let reply = FromWorker {
            id: Some(7),
            reply: Reply::Failed(WebError::new(ErrorKind::TooLarge, "too large")),
        };
        assert_eq!(decode::<FromWorker>(&encode(&reply)).unwrap(), reply);
    }

    #[test]
    fn a_malformed_message_is_an_error_not_a_panic() {
        let e = decode::<ToWorker>("{\"id\": 1}").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message.contains("malformed"), "{e}");
    }
}
