//! What the worker sends back for the page to show: plain data, no tensors.

use nepa_types::finetune::FinetuneMode;
use serde::{Deserialize, Serialize};

use crate::ImageId;

/// The compute device and what the user should be told about it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeviceInfo {
    /// "WebGPU" or "CPU (Flex, wasm)".
    pub backend: String,
    /// Adapter name, limits of interest and f16 support, as WebGPU reports them.
    pub adapter: String,
    /// Why the page is not on WebGPU, when it is not.
    pub fallback_reason: Option<String>,
    /// A software WebGPU adapter passed over for Flex: the user may switch to it.
    pub software_adapter: Option<String>,
    /// What the Compare tab's run is (from `nepa::bench::compare_run`).
    pub compare_description: String,
}

impl DeviceInfo {
    /// Whether the worker computes on Flex (the CPU) rather than WebGPU.
    pub fn is_cpu(&self) -> bool {
        self.fallback_reason.is_some()
    }
}

/// The model the worker holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// Grows with every load or change: results for an older version are stale.
    pub version: u32,
    /// Shown next to the model: file name and shape, or "untrained".
    pub label: String,
    pub trained: bool,
    pub layers: usize,
    pub heads: usize,
    /// Milliseconds from the request to the model on the device (read, parse, upload).
    pub load_ms: Option<f64>,
    /// Size of the worker's wasm memory after loading (it never shrinks: its peak).
    pub wasm_memory_bytes: u64,
    /// Where the bytes came from when not from the network: "browser cache".
    pub from_cache: bool,
    /// Classes of its classifier head (a hub classifier with `id2label`); 0: none.
    #[serde(default)]
    pub classes: usize,
}

/// Images decoded by the worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ImagesAdded {
    pub images: Vec<ImageInfo>,
    /// Files refused (not an image) or repaired (a truncated JPEG): each names its file.
    pub errors: Vec<crate::WebError>,
}

/// One decoded image: a thumbnail (RGBA, at `thumb_offset` in the payload, at most 64 px).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageInfo {
    pub id: ImageId,
    pub name: String,
    pub width: usize,
    pub height: usize,
    pub thumb: Pixels,
}

/// An RGBA picture inside a message's payload.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    /// Byte offset in the payload; the picture is `width * height * 4` bytes.
    pub offset: usize,
}

impl Pixels {
    pub fn len(&self) -> usize {
        self.width * self.height * 4
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The sample set's classes: names and their (already added) images.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClassImages {
    pub name: String,
    pub images: Vec<ImageInfo>,
}

/// The Explore tab's selection: the query patch, the layer and head of the attention map
/// (`None`: the mean), and the similarity mode.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Selection {
    /// The query patch `(row, col)`; `None` until the visitor picks one: the first view's
    /// rule (`nepa::viz::first_query`) chooses it for each image.
    pub query: Option<(usize, usize)>,
    pub layer: Option<usize>,
    pub head: Option<usize>,
    /// Softmax/γ similarity (the paper's) instead of the raw cosine.
    pub softmax: bool,
}

/// Everything a rendered view depends on: a result for another key is stale.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct ViewKey {
    pub model_version: u32,
    pub image: ImageId,
    pub selection: Selection,
}

/// The five maps of one key.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RenderedView {
    pub key: ViewKey,
    pub grid_rows: usize,
    pub grid_cols: usize,
    pub query_token: usize,
    pub cls_attention: f32,
    pub panels: Vec<PanelView>,
    /// The forward pass's time when this render ran one (a new model or image).
    pub forward_ms: Option<f64>,
}

/// One map: its picture in the payload and the per-patch values for the hover readout.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PanelView {
    pub id: String,
    pub title: String,
    /// One line saying what the map shows.
    pub caption: String,
    pub pixels: Pixels,
    /// Labels of the colour bar's ends, for heat maps.
    pub colorbar: Option<(String, String)>,
    pub values: Vec<f32>,
}

/// A fine-tuning run on the page: classes of images the worker holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FinetuneRequest {
    pub classes: Vec<ClassSpec>,
    pub mode: FinetuneMode,
    pub steps: usize,
    pub batch: usize,
    /// Peak learning rate; `None`: the page's preset.
    pub lr: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClassSpec {
    pub name: String,
    pub images: Vec<ImageId>,
}

/// Where a fine-tuning run is after a step.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainProgress {
    pub step: usize,
    pub total: usize,
    pub losses: Vec<f64>,
    /// Accuracy of each training batch (before the update).
    pub batch_accuracy: Vec<f64>,
    pub images_per_sec: Option<f64>,
    pub eta_s: Option<f64>,
    /// Device memory (in use, reserved) after each step, where the backend reports it.
    pub memory: Vec<(u64, u64)>,
    pub running: bool,
    pub paused: bool,
}

/// A fine-tuned classifier the worker holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainedInfo {
    pub summary: String,
    pub classes: Vec<String>,
    /// A status line about how the run ended ("stopped at step 3/40: …").
    pub status: Option<String>,
    /// A problem to show as an error: the run diverged, or storage refused the model (the
    /// model is still usable on the page).
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Prediction {
    pub name: String,
    /// One per class of the trained model, in its order; empty when `error` is set.
    pub probabilities: Vec<f32>,
    /// Why this file has no probabilities (it could not be read or decoded; names the file).
    #[serde(default)]
    pub error: Option<crate::WebError>,
}

/// A checkpoint kept in Cache Storage after a download by URL.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CachedCheckpoint {
    pub url: String,
    pub bytes: u64,
    /// `org/name@revision` for a model loaded from a hub.
    #[serde(default)]
    pub hub: Option<String>,
}
