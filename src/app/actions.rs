//! What the app asks of the engine, and how each answer lands in the app's state.

use std::rc::Rc;

use js_sys::Uint8Array;
use nepa_protocol::{
    Attention, DevicePreference, DownloadLimits, HubModel, Reply, Request, WebError,
};
use yew::prelude::*;

use crate::app::state::{AppMsg, Loading};
use crate::engine::EngineClient;
use crate::picture::GalleryImage;
use crate::platform;
use crate::platform::files::{files_payload, is_checkpoint};

pub type Dispatch = UseReducerDispatcher<crate::app::state::AppState>;

/// Bundled CC0 / public-domain photos (static/photos/LICENSES.txt).
const BUNDLED: [&str; 3] = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"];

/// The device the page's URL asks for: `?cpu` forces Flex, `?webgpu` takes the browser's
/// adapter even when it is a software rasteriser.
pub fn preferred_device() -> DevicePreference {
    if platform::has_flag("cpu") {
        DevicePreference::Cpu
    } else if platform::has_flag("webgpu") {
        DevicePreference::AnyAdapter
    } else {
        DevicePreference::Auto
    }
}

/// The attention the page's URL asks for: `?attention=fused` takes nepa's fused kernels on
/// WebGPU; anything else the default.
pub fn preferred_attention() -> Attention {
    match platform::url_param("attention").as_deref() {
        Some("fused") => Attention::Fused,
        _ => Attention::Decomposed,
    }
}

/// Replies any request may get that are not its result: shown as errors, kept otherwise.
fn common(dispatch: &Dispatch, reply: Reply) {
    match reply {
        Reply::Failed(e) => dispatch.dispatch(AppMsg::Error(e.message)),
        Reply::ModelReady(m) | Reply::ModelUpdated(m) => dispatch.dispatch(AppMsg::Model(m)),
        Reply::Started(d) => dispatch.dispatch(AppMsg::Started(d)),
        _ => {}
    }
}

/// Replies that answer no request: a lost device, a failed engine, a fallback model.
pub fn unasked(dispatch: &Dispatch, reply: Reply) {
    match reply {
        Reply::DeviceLost { reason } => dispatch.dispatch(AppMsg::DeviceLost(reason)),
        other => common(dispatch, other),
    }
}

/// Start-up: the device, then the demo model, the bundled photos and the cache list.
pub fn start(engine: &Rc<EngineClient>, dispatch: &Dispatch) {
    let d = dispatch.clone();
    engine.send(
        Request::Start {
            device: preferred_device(),
            attention: preferred_attention(),
        },
        None,
        move |reply, _| common(&d, reply),
    );
    load(engine, dispatch, Request::LoadDemo, None);
    let d = dispatch.clone();
    let urls = BUNDLED.iter().map(|n| format!("photos/{n}")).collect();
    engine.send(
        Request::AddBundledImages { urls },
        None,
        move |reply, payload| images_added(&d, reply, payload),
    );
    list_cache(engine, dispatch);
}

/// Adds decoded images to the gallery; refused files are errors naming them.
fn images_added(dispatch: &Dispatch, reply: Reply, payload: Option<Uint8Array>) {
    match reply {
        Reply::ImagesAdded(added) => {
            for e in added.errors {
                dispatch.dispatch(AppMsg::Error(e.message));
            }
            let bytes = payload.map(|p| p.to_vec()).unwrap_or_default();
            let images = GalleryImage::from_infos(&added.images, &bytes);
            if !images.is_empty() {
                dispatch.dispatch(AppMsg::AddImages(images));
            }
        }
        other => common(dispatch, other),
    }
}

/// A model load (demo, file, URL) with its progress shown and Cancel offered. A failure's
/// message is the engine's (it names the file and says "checkpoint does not fit").
fn load(
    engine: &Rc<EngineClient>,
    dispatch: &Dispatch,
    request: Request,
    payload: Option<wasm_bindgen::JsValue>,
) {
    let d = dispatch.clone();
    let reloads_cache = matches!(request, Request::LoadUrl { .. } | Request::LoadHub { .. });
    let engine_for_list = engine.clone();
    let id = std::rc::Rc::new(std::cell::Cell::new(0));
    let request_id = id.clone();
    let sent = engine.send(request, payload, move |reply, _| match reply {
        Reply::Progress(progress) => d.dispatch(AppMsg::Loading(Some(Loading {
            request: request_id.get(),
            progress,
        }))),
        Reply::Failed(e) => {
            d.dispatch(AppMsg::Loading(None));
            d.dispatch(AppMsg::Error(e.message));
        }
        other => {
            if other.is_final() {
                d.dispatch(AppMsg::Loading(None));
                if reloads_cache {
                    list_cache(&engine_for_list, &d);
                }
            }
            common(&d, other);
        }
    });
    id.set(sent);
}

/// Picked or dropped files: checkpoints load as the model, the rest go to the gallery.
pub fn ingest(engine: &Rc<EngineClient>, dispatch: &Dispatch, files: Vec<web_sys::File>) {
    let (checkpoints, images): (Vec<_>, Vec<_>) = files.into_iter().partition(is_checkpoint);
    for file in checkpoints {
        let name = file.name();
        load(
            engine,
            dispatch,
            Request::LoadFile { name },
            Some(file.into()),
        );
    }
    if !images.is_empty() {
        let (names, payload) = files_payload(&images);
        let d = dispatch.clone();
        engine.send(
            Request::AddImages { names },
            Some(payload),
            move |reply, payload| images_added(&d, reply, payload),
        );
    }
}

/// The download limits: the defaults, or what `window.nepaDownloadLimits = {capBytes,
/// stallMs, totalMs}` says (a test hook; it may only lower the cap).
fn download_limits() -> DownloadLimits {
    let field = |name: &str| platform::hook_number("nepaDownloadLimits", name);
    let defaults = DownloadLimits::default();
    DownloadLimits {
        cap_bytes: field("capBytes")
            .map_or(defaults.cap_bytes, |v| (v as u64).min(defaults.cap_bytes)),
        stall_ms: field("stallMs").map_or(defaults.stall_ms, |v| v as u32),
        total_ms: field("totalMs").map_or(defaults.total_ms, |v| v as u32),
    }
}

/// A checkpoint by URL (from the browser's cache when it was loaded before).
pub fn load_url(engine: &Rc<EngineClient>, dispatch: &Dispatch, url: String) {
    let url = url.trim().to_string();
    if url.is_empty() {
        dispatch.dispatch(AppMsg::Error(
            WebError::bad_input("type a checkpoint URL first").message,
        ));
        return;
    }
    let limits = download_limits();
    load(engine, dispatch, Request::LoadUrl { url, limits }, None);
}

/// A model from the hub by id (`org/name[@revision]`), on the page's hub (`?hub=`).
pub fn load_hub(engine: &Rc<EngineClient>, dispatch: &Dispatch, text: String) {
    match HubModel::parse(&crate::hub::hub_address(), &text) {
        Ok(model) => {
            let limits = download_limits();
            load(engine, dispatch, Request::LoadHub { model, limits }, None);
        }
        Err(e) => dispatch.dispatch(AppMsg::Error(e.message)),
    }
}

pub fn list_cache(engine: &Rc<EngineClient>, dispatch: &Dispatch) {
    let d = dispatch.clone();
    engine.send(Request::ListCache, None, move |reply, _| match reply {
        Reply::Cache(entries) => d.dispatch(AppMsg::Cache(entries)),
        other => common(&d, other),
    });
}

pub fn delete_cached(engine: &Rc<EngineClient>, dispatch: &Dispatch, url: String) {
    let d = dispatch.clone();
    engine.send(
        Request::DeleteCached { url },
        None,
        move |reply, _| match reply {
            Reply::Cache(entries) => d.dispatch(AppMsg::Cache(entries)),
            other => common(&d, other),
        },
    );
}

/// Moves the engine to another device; the model is loaded again there.
pub fn switch_device(engine: &Rc<EngineClient>, dispatch: &Dispatch, device: DevicePreference) {
    let d = dispatch.clone();
    engine.send(Request::SwitchDevice { device }, None, move |reply, _| {
        common(&d, reply)
    });
}
