//! What the Fine-tune tab asks of the engine, and how each answer lands in its state.

use std::rc::Rc;

use nepa_protocol::{ClassSpec, ErrorKind, FinetuneRequest, Reply, Request};
use nepa_types::finetune::FinetuneMode;
use yew::prelude::*;

use crate::engine::EngineClient;
use crate::finetune::state::{ClassData, FinetuneMsg, FinetuneState};
use crate::picture::GalleryImage;
use crate::platform;
use crate::platform::files::files_payload;

pub type Dispatch = UseReducerDispatcher<FinetuneState>;

fn fail(dispatch: &Dispatch, reply: Reply) {
    if let Reply::Failed(e) = reply {
        dispatch.dispatch(FinetuneMsg::Error(e.message));
    }
}

/// Adds images to class `class` (decoded by the engine).
pub fn add_images(
    engine: &EngineClient,
    dispatch: &Dispatch,
    class: usize,
    files: Vec<web_sys::File>,
) {
    let (names, payload) = files_payload(&files);
    let d = dispatch.clone();
    engine.send(
        Request::AddImages { names },
        Some(payload),
        move |reply, payload| match reply {
            Reply::ImagesAdded(added) => {
                for e in added.errors {
                    d.dispatch(FinetuneMsg::Error(e.message));
                }
                let bytes = payload.map(|p| p.to_vec()).unwrap_or_default();
                d.dispatch(FinetuneMsg::AddImages(
                    class,
                    GalleryImage::from_infos(&added.images, &bytes),
                ));
            }
            other => fail(&d, other),
        },
    );
}

/// The bundled Fashion-MNIST sample, as classes.
pub fn load_sample(engine: &EngineClient, dispatch: &Dispatch) {
    dispatch.dispatch(FinetuneMsg::Message(Some("loading the sample set…".into())));
    let d = dispatch.clone();
    engine.send(Request::LoadSampleClasses, None, move |reply, payload| {
        match reply {
            Reply::SampleClasses(classes) => {
                let bytes = payload.map(|p| p.to_vec()).unwrap_or_default();
                let classes = classes
                    .into_iter()
                    .map(|c| ClassData {
                        images: GalleryImage::from_infos(&c.images, &bytes),
                        name: c.name,
                    })
                    .collect();
                d.dispatch(FinetuneMsg::SetClasses(classes));
            }
            Reply::Failed(e) => d.dispatch(FinetuneMsg::Error(e.message)),
            _ => {}
        }
        d.dispatch(FinetuneMsg::Message(None));
    });
}

/// The run's request: the classes, and the page's settings. `window.nepaFinetuneOverrides =
/// {lr}` (a test hook) sets the peak learning rate (a test makes a run diverge with it).
fn finetune_request(
    classes: &[ClassData],
    mode: FinetuneMode,
    steps: usize,
    batch: usize,
) -> FinetuneRequest {
    FinetuneRequest {
        classes: classes
            .iter()
            .map(|c| ClassSpec {
                name: c.name.clone(),
                images: c.images.iter().map(|i| i.id).collect(),
            })
            .collect(),
        mode,
        steps,
        batch,
        lr: platform::hook_number("nepaFinetuneOverrides", "lr"),
    }
}

/// Checks the classes, then trains in the engine.
pub fn train(
    engine: &EngineClient,
    dispatch: &Dispatch,
    classes: &[ClassData],
    mode: FinetuneMode,
    steps: usize,
    batch: usize,
) {
    if classes.len() < 2 {
        return dispatch.dispatch(FinetuneMsg::Error("make at least two classes".into()));
    }
    if let Some(c) = classes.iter().find(|c| c.images.is_empty()) {
        return dispatch.dispatch(FinetuneMsg::Error(format!(
            "class \"{}\" has no images",
            c.name
        )));
    }
    let request = finetune_request(classes, mode, steps, batch);
    let d = dispatch.clone();
    let run = engine.send(
        Request::Finetune(request),
        None,
        move |reply, _| match reply {
            Reply::TrainStep(p) => d.dispatch(FinetuneMsg::Progress(p)),
            Reply::Progress(p) => d.dispatch(FinetuneMsg::Message(Some(p.stage))),
            Reply::Trained(t) => {
                d.dispatch(FinetuneMsg::Ended);
                d.dispatch(FinetuneMsg::Message(t.status.clone()));
                if let Some(e) = &t.error {
                    d.dispatch(FinetuneMsg::Error(e.clone()));
                }
                d.dispatch(FinetuneMsg::Trained(Rc::new(t)));
            }
            Reply::Failed(e) => {
                d.dispatch(FinetuneMsg::Ended);
                // Stopped before the first step: a status, not an error.
                if e.kind == ErrorKind::Cancelled {
                    d.dispatch(FinetuneMsg::Message(Some(e.message)));
                } else {
                    d.dispatch(FinetuneMsg::Message(None));
                    d.dispatch(FinetuneMsg::Error(e.message));
                }
            }
            _ => d.dispatch(FinetuneMsg::Ended),
        },
    );
    dispatch.dispatch(FinetuneMsg::Started(run, steps));
}

/// The last trained model, from browser storage (once the engine has a device).
pub fn restore(engine: &EngineClient, dispatch: &Dispatch) {
    let d = dispatch.clone();
    engine.send(
        Request::RestoreFinetuned,
        None,
        move |reply, _| match reply {
            Reply::Trained(t) => d.dispatch(FinetuneMsg::Trained(Rc::new(t))),
            other => fail(&d, other),
        },
    );
}

/// Class probabilities of new images under the trained model.
pub fn classify(engine: &EngineClient, dispatch: &Dispatch, files: Vec<web_sys::File>) {
    let (names, payload) = files_payload(&files);
    let d = dispatch.clone();
    engine.send(
        Request::Classify { names },
        Some(payload),
        move |reply, _| match reply {
            Reply::Predictions(p) => d.dispatch(FinetuneMsg::Predictions(p)),
            other => fail(&d, other),
        },
    );
}

/// The trained model as a safetensors download.
pub fn download(engine: &EngineClient, dispatch: &Dispatch) {
    let d = dispatch.clone();
    engine.send(
        Request::ExportFinetuned,
        None,
        move |reply, payload| match (reply, payload) {
            (Reply::Exported { name }, Some(bytes)) => {
                platform::save::download_js(&name, &bytes, "application/octet-stream")
            }
            (other, _) => fail(&d, other),
        },
    );
}
