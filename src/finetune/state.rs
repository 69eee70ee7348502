//! The Fine-tune tab's state: its classes, the run in progress and the trained model.

use std::rc::Rc;

use nepa_protocol::{Prediction, RequestId, TrainProgress, TrainedInfo};
use nepa_types::finetune::FinetuneMode;
use yew::prelude::*;

use crate::picture::GalleryImage;

#[derive(Clone, Debug, PartialEq)]
pub struct ClassData {
    pub name: String,
    pub images: Vec<Rc<GalleryImage>>,
}

/// The run settings the user picks (the page's state handles).
#[derive(Clone, PartialEq)]
pub struct RunSettings {
    pub mode: UseStateHandle<FinetuneMode>,
    pub steps: UseStateHandle<usize>,
    pub batch: UseStateHandle<usize>,
}

#[derive(Clone, Default, PartialEq)]
pub struct FinetuneState {
    pub classes: Vec<ClassData>,
    pub progress: Option<TrainProgress>,
    /// The run in progress (Pause and Stop name it).
    pub run: Option<RequestId>,
    pub trained: Option<Rc<TrainedInfo>>,
    pub predictions: Vec<Prediction>,
    /// A status line ("loading the sample set…", "stopped at step 3/40: …").
    pub message: Option<String>,
    pub errors: Vec<String>,
}

impl FinetuneState {
    pub fn running(&self) -> bool {
        self.run.is_some()
    }

    pub fn paused(&self) -> bool {
        self.progress.as_ref().is_some_and(|p| p.paused)
    }
}

pub enum FinetuneMsg {
    AddClass(String),
    AddImages(usize, Vec<Rc<GalleryImage>>),
    RemoveClass(usize),
    SetClasses(Vec<ClassData>),
    Started(RequestId, usize),
    Progress(TrainProgress),
    /// The run ended (whatever its result).
    Ended,
    Trained(Rc<TrainedInfo>),
    Predictions(Vec<Prediction>),
    Message(Option<String>),
    Error(String),
    DismissErrors,
}

impl Reducible for FinetuneState {
    type Action = FinetuneMsg;

    fn reduce(self: Rc<Self>, msg: FinetuneMsg) -> Rc<Self> {
        let mut s = Rc::unwrap_or_clone(self);
        match msg {
            FinetuneMsg::AddClass(name) => s.classes.push(ClassData {
                name,
                images: vec![],
            }),
            FinetuneMsg::AddImages(i, mut images) => {
                if let Some(c) = s.classes.get_mut(i) {
                    c.images.append(&mut images);
                }
            }
            FinetuneMsg::RemoveClass(i) => {
                if i < s.classes.len() {
                    s.classes.remove(i);
                }
            }
            FinetuneMsg::SetClasses(classes) => s.classes = classes,
            FinetuneMsg::Started(run, total) => {
                s.run = Some(run);
                s.message = None;
                s.progress = Some(TrainProgress {
                    total,
                    running: true,
                    ..TrainProgress::default()
                });
            }
            FinetuneMsg::Progress(p) => s.progress = Some(p),
            FinetuneMsg::Ended => {
                s.run = None;
                if let Some(p) = &mut s.progress {
                    p.running = false;
                    p.paused = false;
                }
            }
            FinetuneMsg::Trained(t) => {
                s.trained = Some(t);
                s.predictions.clear();
            }
            FinetuneMsg::Predictions(p) => s.predictions = p,
            FinetuneMsg::Message(m) => s.message = m,
            FinetuneMsg::Error(e) => s.errors.push(e),
            FinetuneMsg::DismissErrors => s.errors.clear(),
        }
        Rc::new(s)
    }
}
