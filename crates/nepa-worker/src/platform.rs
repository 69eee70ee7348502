//! Small browser services of the worker: yielding to the event loop, the clock, the size of
//! the wasm memory and JS error texts.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = r#"
export function yield_to_loop(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
"#)]
extern "C" {
    fn yield_to_loop(ms: u32) -> js_sys::Promise;
}

/// Lets other messages (Cancel, Pause, a newer Render) in: a macrotask boundary, then resumes.
pub async fn sleep(ms: u32) {
    let _ = JsFuture::from(yield_to_loop(ms)).await;
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    (js_sys::Date::now() / 1e3) as u64
}

/// Bytes of the worker's wasm memory (it never shrinks: its peak).
pub fn wasm_memory_bytes() -> u64 {
    js_sys::Reflect::get(&wasm_bindgen::memory(), &"buffer".into())
        .ok()
        .and_then(|b| b.dyn_into::<js_sys::ArrayBuffer>().ok())
        .map_or(0, |b| b.byte_length() as u64)
}

/// A JS error's message (`TypeError: Failed to fetch`), else its debug form.
pub fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.to_string()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The browser's user agent string, as the worker sees it.
pub fn user_agent() -> String {
    js_sys::global()
        .dyn_into::<web_sys::WorkerGlobalScope>()
        .ok()
        .and_then(|s| s.navigator().user_agent().ok())
        .unwrap_or_default()
}

/// Megabytes, one decimal, for messages.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
