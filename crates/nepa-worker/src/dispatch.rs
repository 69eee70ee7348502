//! Routes each request to its handler. Long requests run as async tasks (they yield between
//! steps, so Pause, Cancel and newer renders get through); quick ones answer at once.

use std::future::Future;
use std::rc::Rc;

use nepa::kernels::{AttentionMode, set_attention_mode};
use nepa_protocol::{Attention, Reply, Request, ToWorker, WebError};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::spawn_local;

use crate::bridge::Responder;
use crate::state::Engine;
use crate::{
    adapt, cache, classes, compare, device, explore, finetune, hub, images, models, trained,
};

/// Runs `task` in the background and answers with its result.
fn spawn(r: Responder, task: impl Future<Output = Result<Reply, WebError>> + 'static) {
    spawn_local(async move { r.finish(task.await) });
}

/// Handles one message from the page.
pub fn handle(engine: &Rc<Engine>, message: ToWorker, payload: JsValue) {
    let r = Responder::new(message.id);
    let e = engine.clone();
    match message.request {
        Request::Start { device, attention } => {
            set_attention_mode(match attention {
                Attention::Decomposed => AttentionMode::Decomposed,
                Attention::Fused => AttentionMode::Fused,
            });
            spawn_local(device::start(e, r, device))
        }
        Request::SwitchDevice { device } => spawn_local(device::start(e, r, device)),
        Request::LoadDemo => {
            let task = engine.tasks.register(r.id);
            spawn_local(async move {
                let control = task.control.clone();
                models::load_demo(e, r, control).await
            })
        }
        Request::LoadFile { name } => spawn(r, models::load_file(e, r, name, payload)),
        Request::LoadUrl { url, limits } => {
            let task = engine.tasks.register(r.id);
            spawn(r, async move {
                let control = task.control.clone();
                models::load_url(e, r, url, limits, control).await
            })
        }
        Request::LoadHub { model, limits } => {
            let task = engine.tasks.register(r.id);
            spawn(r, async move {
                let control = task.control.clone();
                hub::load_hub(e, r, model, limits, control).await
            })
        }
        Request::AddImages { names } => spawn_local(images::add_images(e, r, names, payload)),
        Request::AddBundledImages { urls } => spawn_local(images::add_bundled(e, r, urls)),
        Request::LoadSampleClasses => spawn_local(images::load_sample_classes(e, r)),
        Request::Render { key } => explore::render(e, r, key),
        Request::Adapt { steps, images } => {
            let task = engine.tasks.register(r.id);
            spawn(r, async move {
                let control = task.control.clone();
                adapt::adapt(e, r, steps, images, control).await
            })
        }
        Request::Finetune(request) => {
            let task = engine.tasks.register(r.id);
            spawn(r, async move {
                let control = task.control.clone();
                finetune::finetune(e, r, request, control).await
            })
        }
        Request::Bench => {
            let task = engine.tasks.register(r.id);
            spawn(r, async move {
                let control = task.control.clone();
                compare::bench(e, r, control).await
            })
        }
        other => handle_quick(engine, r, other, payload),
    }
}

/// The requests that answer at once or read storage.
fn handle_quick(engine: &Rc<Engine>, r: Responder, request: Request, payload: JsValue) {
    let e = engine.clone();
    match request {
        Request::Pause { target, paused } => {
            engine.tasks.pause(target, paused);
            r.reply(Reply::Done);
        }
        Request::Cancel { target } => {
            engine.tasks.cancel(target);
            r.reply(Reply::Done);
        }
        Request::TopClasses {
            model_version,
            image,
        } => spawn(r, classes::top_classes(e, model_version, image)),
        Request::Classify { names } => spawn(r, trained::classify(e, names, payload)),
        Request::RestoreFinetuned => spawn(r, trained::restore(e)),
        Request::ExportFinetuned => {
            if let Err(error) = trained::export(engine, r) {
                r.fail(error);
            }
        }
        Request::ListCache => spawn(r, cache::list()),
        Request::DeleteCached { url } => spawn(r, async move { cache::delete(&url).await }),
        Request::LoseDevice => r.finish(device::lose(engine)),
        // Routed by `handle`.
        _ => r.fail(WebError::internal("request routed to the wrong handler")),
    }
}
