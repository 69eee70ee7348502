//! The app's state outside the tabs: the engine's device and model, the gallery, the
//! checkpoint load in progress and the errors. One reducer, as every tab has.

use std::rc::Rc;

use nepa_protocol::{CachedCheckpoint, DeviceInfo, ModelInfo, Progress, RequestId};
use yew::prelude::*;

use crate::picture::GalleryImage;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tab {
    #[default]
    Explore,
    Finetune,
    Compare,
}

/// A checkpoint being read, downloaded, parsed or uploaded.
#[derive(Clone, Debug, PartialEq)]
pub struct Loading {
    /// The load request (the Cancel button cancels it).
    pub request: RequestId,
    pub progress: Progress,
}

#[derive(Clone, Default, PartialEq)]
pub struct AppState {
    pub device: Option<Rc<DeviceInfo>>,
    pub model: Option<Rc<ModelInfo>>,
    pub images: Vec<Rc<GalleryImage>>,
    pub selected: Option<usize>,
    pub errors: Vec<String>,
    pub loading: Option<Loading>,
    /// Why the GPU device was lost, until the user picks reload or CPU.
    pub device_lost: Option<String>,
    pub tab: Tab,
    /// Checkpoints kept in the browser's Cache Storage.
    pub cache: Vec<CachedCheckpoint>,
}

impl AppState {
    /// The selected gallery image.
    pub fn selected_image(&self) -> Option<&Rc<GalleryImage>> {
        self.selected.and_then(|i| self.images.get(i))
    }
}

pub enum AppMsg {
    Started(DeviceInfo),
    Model(ModelInfo),
    AddImages(Vec<Rc<GalleryImage>>),
    Select(usize),
    Error(String),
    DismissErrors,
    Loading(Option<Loading>),
    DeviceLost(String),
    Tab(Tab),
    Cache(Vec<CachedCheckpoint>),
}

impl Reducible for AppState {
    type Action = AppMsg;

    fn reduce(self: Rc<Self>, msg: AppMsg) -> Rc<Self> {
        let mut s = Rc::unwrap_or_clone(self);
        match msg {
            AppMsg::Started(device) => {
                s.device = Some(Rc::new(device));
                s.device_lost = None;
            }
            AppMsg::Model(model) => s.model = Some(Rc::new(model)),
            AppMsg::AddImages(mut images) => {
                let first_new = s.images.len();
                s.images.append(&mut images);
                if s.selected.is_none() && s.images.len() > first_new {
                    s.selected = Some(first_new);
                }
            }
            AppMsg::Select(i) => s.selected = Some(i),
            AppMsg::Error(e) => s.errors.push(e),
            AppMsg::DismissErrors => s.errors.clear(),
            AppMsg::Loading(loading) => s.loading = loading,
            AppMsg::DeviceLost(reason) => s.device_lost = Some(reason),
            AppMsg::Tab(tab) => s.tab = tab,
            AppMsg::Cache(cache) => s.cache = cache,
        }
        Rc::new(s)
    }
}
