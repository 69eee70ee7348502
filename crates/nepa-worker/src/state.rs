//! What the worker holds: the device, the model, the images, the fine-tuned classifier and
//! the render queue. Data only; the request handlers live in their own modules.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use burn::tensor::Device;
use nepa::checkpoint::HubPreprocessor;
use nepa::image::RgbImage;
use nepa::viz::Analysis;
use nepa::{NepaClassifier, NepaConfig, NepaModel};
use nepa_protocol::{ImageId, ViewKey, WebError};

use crate::bridge::Responder;
use crate::tasks::Tasks;

/// The device the worker computes on, and what the user should be told about it.
pub struct ComputeDevice {
    pub device: Device,
    /// "WebGPU" or "CPU (Flex, wasm)".
    pub backend: &'static str,
    pub adapter: String,
    pub fallback_reason: Option<String>,
    pub software_adapter: Option<String>,
}

/// A model ready for inference, and where it came from.
pub struct LoadedModel {
    pub model: NepaModel,
    pub config: NepaConfig,
    pub label: String,
    pub trained: bool,
    /// The checkpoint bytes, to load it again on another device; `None` for the random init.
    /// Kept in JS memory: the wasm heap never shrinks, so a copy there would cost its size
    /// for the rest of the session.
    pub source: Option<js_sys::Uint8Array>,
    pub name: String,
    /// The hub files it was built with (loading it again uses them, not the shapes).
    pub hub_files: Option<Rc<HubFiles>>,
    /// The classifier of a hub model with `id2label`; `model` is its backbone (the same
    /// tensors, not a copy).
    pub classifier: Option<Rc<HubClassifier>>,
}

/// A hub model's `config.json` and, when its repository has one, `preprocessor_config.json`.
pub struct HubFiles {
    pub config: String,
    pub preprocessor: Option<String>,
}

/// A hub classifier, its class names (label i = entry i) and its own preprocessing (from
/// `preprocessor_config.json`; docs/hub.md).
pub struct HubClassifier {
    pub model: NepaClassifier,
    pub classes: Vec<String>,
    pub preprocessor: HubPreprocessor,
}

/// A fine-tuned (or restored) classifier.
pub struct Trained {
    pub model: NepaClassifier,
    pub config: NepaConfig,
    pub classes: Vec<String>,
    /// Its safetensors bytes (export, and loading it again on another device).
    pub bytes: Rc<Vec<u8>>,
    pub summary: String,
}

/// A decoded image.
pub struct Upload {
    pub name: String,
    pub image: RgbImage,
}

/// The Explore tab's renders: one runs at a time, a newer one replaces a waiting one, and the
/// last analysis is kept per (model version, image).
#[derive(Default)]
pub struct Renders {
    pub running: Cell<bool>,
    pub pending: RefCell<Option<(Responder, ViewKey)>>,
    pub analysis: RefCell<Option<(u32, ImageId, Rc<Analysis>)>>,
}

#[derive(Default)]
pub struct Engine {
    pub device: RefCell<Option<Rc<ComputeDevice>>>,
    /// A `Start` or `SwitchDevice` is picking the device: requests wait for it.
    pub starting: Cell<bool>,
    pub model: RefCell<Option<Rc<LoadedModel>>>,
    /// Grows with every model load or change.
    pub version: Cell<u32>,
    pub images: RefCell<HashMap<ImageId, Rc<Upload>>>,
    pub next_image: Cell<ImageId>,
    pub trained: RefCell<Option<Rc<Trained>>>,
    pub tasks: Tasks,
    pub renders: Renders,
}

impl Engine {
    pub fn device(&self) -> Result<Rc<ComputeDevice>, WebError> {
        self.device.borrow().clone().ok_or_else(|| {
            WebError::not_ready("the compute device is not ready yet (the engine waits for Start)")
        })
    }

    /// The device, once a `Start` or `SwitchDevice` in progress has picked it.
    pub async fn ready_device(&self) -> Result<Rc<ComputeDevice>, WebError> {
        while self.starting.get() {
            crate::platform::sleep(10).await;
        }
        self.device()
    }

    pub fn model(&self) -> Result<Rc<LoadedModel>, WebError> {
        self.model
            .borrow()
            .clone()
            .ok_or_else(|| WebError::not_ready("no model is loaded yet"))
    }

    /// Takes the current model out, without a new version (to free its memory before a large
    /// load; `restore_model` puts one back).
    pub fn take_model(&self) -> Option<Rc<LoadedModel>> {
        *self.renders.analysis.borrow_mut() = None;
        self.model.borrow_mut().take()
    }

    /// Puts back a model taken out, under the same version.
    pub fn restore_model(&self, model: LoadedModel) {
        *self.model.borrow_mut() = Some(Rc::new(model));
    }

    /// Makes `model` the current one; returns its new version.
    pub fn set_model(&self, model: LoadedModel) -> u32 {
        let version = self.version.get() + 1;
        self.version.set(version);
        *self.model.borrow_mut() = Some(Rc::new(model));
        *self.renders.analysis.borrow_mut() = None;
        version
    }

    pub fn image(&self, id: ImageId) -> Result<Rc<Upload>, WebError> {
        self.images
            .borrow()
            .get(&id)
            .cloned()
            .ok_or_else(|| WebError::not_ready(format!("the engine holds no image {id}")))
    }

    /// Keeps a decoded image; returns its id.
    pub fn add_image(&self, upload: Upload) -> ImageId {
        let id = self.next_image.get();
        self.next_image.set(id.wrapping_add(1));
        self.images.borrow_mut().insert(id, Rc::new(upload));
        id
    }

    pub fn trained(&self) -> Result<Rc<Trained>, WebError> {
        self.trained
            .borrow()
            .clone()
            .ok_or_else(|| WebError::not_ready("there is no fine-tuned model yet"))
    }
}
