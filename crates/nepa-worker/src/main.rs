//! The NEPA web app's engine: a Web Worker holding the compute device, the models and the
//! images, answering the page's requests (crates/nepa-protocol, docs/web-architecture.md).
//!
//! Natively this binary only says what it is; the worker is built by trunk for wasm32.

#[cfg(target_arch = "wasm32")]
mod adapt;
#[cfg(target_arch = "wasm32")]
mod bridge;
#[cfg(target_arch = "wasm32")]
mod cache;
#[cfg(target_arch = "wasm32")]
mod classes;
#[cfg(target_arch = "wasm32")]
mod compare;
#[cfg(target_arch = "wasm32")]
mod device;
#[cfg(target_arch = "wasm32")]
mod dispatch;
#[cfg(target_arch = "wasm32")]
mod explore;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod files;
#[cfg(target_arch = "wasm32")]
mod finetune;
#[cfg(target_arch = "wasm32")]
mod hub;
#[cfg(target_arch = "wasm32")]
mod images;
#[cfg(target_arch = "wasm32")]
mod models;
#[cfg(target_arch = "wasm32")]
mod platform;
#[cfg(target_arch = "wasm32")]
mod state;
#[cfg(target_arch = "wasm32")]
mod storage;
#[cfg(target_arch = "wasm32")]
mod tasks;
#[cfg(target_arch = "wasm32")]
mod trained;

#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    // A wasm "command" module re-runs every static constructor (cubecl/burn register many
    // `inventory` items) on each export call unless the constructors run once up front:
    // 3–4× slower otherwise (docs/feasibility.md §5.2).
    fn __wasm_call_ctors();
}

/// Logs a panic to the console and tells the page that the engine stopped.
#[cfg(target_arch = "wasm32")]
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| info.to_string());
        bridge::event(nepa_protocol::Reply::Failed(
            nepa_protocol::WebError::internal(format!(
                "the engine stopped: {message}; reload the page"
            )),
        ));
    }));
}

#[cfg(target_arch = "wasm32")]
fn main() {
    use std::rc::Rc;

    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;

    // SAFETY: called once, first thing, before any other wasm export runs.
    unsafe { __wasm_call_ctors() };
    install_panic_hook();
    let engine = Rc::new(state::Engine::default());
    let on_message =
        Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            match bridge::receive(&event.data()) {
                Ok((message, payload)) => dispatch::handle(&engine, message, payload),
                Err(e) => bridge::event(nepa_protocol::Reply::Failed(e)),
            }
        });
    let Ok(scope) = js_sys::global().dyn_into::<web_sys::DedicatedWorkerGlobalScope>() else {
        web_sys::console::error_1(&"nepa-worker must run in a dedicated worker".into());
        return;
    };
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The worker lives as long as its handler must.
    on_message.forget();
    bridge::event(nepa_protocol::Reply::WorkerReady);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    println!(
        "nepa-worker is the NEPA web app's engine, a Web Worker built for wasm32 by trunk \
         (see docs/web-architecture.md); it does nothing natively."
    );
}
