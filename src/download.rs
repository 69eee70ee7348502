//! Downloads: plain fetches of the page's own files, and checkpoint downloads by URL with
//! progress, a size cap, stall and overall timeouts and a Cancel button.
//!
//! A URL is hostile input: its Content-Length may lie (a header of 2^31 or more used to pre-size
//! the buffer and panicked on wasm32) and its body may never end (the page grew until the tab
//! died). Chunks are kept as JS arrays while they arrive and copied into wasm memory once, with
//! a fallible allocation, when the body is complete and known to be under the cap.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_time::Instant;

use crate::platform;

#[wasm_bindgen(inline_js = r#"
export function new_abort_controller() { return new AbortController(); }
export function abort_controller(controller) { controller.abort(); }
export function fetch_with_signal(url, controller) {
  return fetch(url, { signal: controller.signal });
}
// Settles with the promise's value, or with `undefined` after `ms` (the caller treats that as
// "nothing arrived in time"). The timer is cleared either way.
export function race_timeout(promise, ms) {
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(() => resolve(undefined), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
"#)]
extern "C" {
    fn new_abort_controller() -> JsValue;
    fn abort_controller(controller: &JsValue);
    fn fetch_with_signal(url: &str, controller: &JsValue) -> js_sys::Promise;
    fn race_timeout(promise: &js_sys::Promise, ms: u32) -> js_sys::Promise;
}

/// The most a checkpoint download may hold. wasm32 memory is 4 GiB at most and must also hold
/// the parsed tensors (on the CPU backend a second copy of the weights) and the page, so 1 GiB
/// is what reliably fits — under the 2 GiB a JS array buffer may safely have.
pub const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;
/// No byte for this long: the server stalled.
pub const STALL_MS: u32 = 30_000;
/// A whole download may take this long (1 GiB at 0.6 MB/s).
pub const TOTAL_MS: u32 = 30 * 60 * 1000;

/// Size cap and timeouts of one download.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub cap_bytes: u64,
    pub stall_ms: u32,
    pub total_ms: u32,
}

impl Limits {
    /// The defaults, or what `window.nepaDownloadLimits = {capBytes, stallMs, totalMs}` says
    /// (a test hook, read when a download starts; each field optional).
    pub fn current() -> Self {
        let field = |name: &str| platform::hook_number("nepaDownloadLimits", name);
        Self {
            // The hook may only lower the cap: the default is what fits in memory.
            cap_bytes: field("capBytes")
                .map_or(MAX_DOWNLOAD_BYTES, |v| (v as u64).min(MAX_DOWNLOAD_BYTES)),
            stall_ms: field("stallMs").map_or(STALL_MS, |v| v as u32),
            total_ms: field("totalMs").map_or(TOTAL_MS, |v| v as u32),
        }
    }
}

/// Cancels a download in progress (the page's Cancel button).
pub struct Cancel {
    controller: JsValue,
    cancelled: Cell<bool>,
}

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cancel {
    pub fn new() -> Self {
        Self {
            controller: new_abort_controller(),
            cancelled: Cell::new(false),
        }
    }

    pub fn cancel(&self) {
        self.cancelled.set(true);
        abort_controller(&self.controller);
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The message for a download over the cap.
fn too_large(url: &str, what: String, cap: u64) -> String {
    let cap = if cap >= 1 << 30 && cap.is_multiple_of(1 << 30) {
        format!("{} GiB", cap >> 30)
    } else {
        mb(cap)
    };
    format!(
        "{url}: the download is too large: {what}, but the page accepts at most {cap} (the \
         browser's wasm32 memory, 4 GiB at most, must also hold the parsed model); nothing was \
         loaded"
    )
}

/// Starts a GET of `url` and checks the HTTP status.
async fn fetch_response(url: &str, controller: &JsValue) -> Result<web_sys::Response, String> {
    let response = JsFuture::from(fetch_with_signal(url, controller))
        .await
        .map_err(|e| format!("{url}: download failed ({})", describe(&e)))?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| "not a response")?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    Ok(response)
}

/// A JS error's message (`TypeError: Failed to fetch`), else its debug form.
fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.to_string()))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The whole body of a response, read at once.
async fn response_bytes(url: &str, response: &web_sys::Response) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| describe(&e))?)
        .await
        .map_err(|e| format!("{url}: {}", describe(&e)))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Fetches one of the page's own files (bundled photos, the sample set).
pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let controller = new_abort_controller();
    response_bytes(url, &fetch_response(url, &controller).await?).await
}

/// Waits for `promise` under the stall and overall timeouts. A timeout aborts the request
/// and is an error, as is a cancel; `received` is for the message.
async fn within_limits(
    url: &str,
    promise: js_sys::Promise,
    limits: &Limits,
    started: Instant,
    received: u64,
    cancel: &Cancel,
) -> Result<JsValue, String> {
    let elapsed = started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
    let left = limits.total_ms.saturating_sub(elapsed);
    let wait = limits.stall_ms.min(left);
    let settled = JsFuture::from(race_timeout(&promise, wait)).await;
    if cancel.cancelled.get() {
        return Err(format!(
            "{url}: download cancelled after {}; the model already loaded is kept",
            mb(received)
        ));
    }
    let value = settled.map_err(|e| format!("{url}: download interrupted ({})", describe(&e)))?;
    if !value.is_undefined() {
        return Ok(value);
    }
    abort_controller(&cancel.controller);
    Err(if wait < limits.stall_ms {
        format!(
            "{url}: the download took longer than {} s and was stopped after {}",
            limits.total_ms / 1000,
            mb(received)
        )
    } else {
        format!(
            "{url}: the download stalled: no data for {} s (after {}); it was stopped",
            f64::from(limits.stall_ms) / 1e3,
            mb(received)
        )
    })
}

/// Fetches a URL while reporting `(received, total)` bytes (total from Content-Length, 0 if
/// unknown) after every chunk, reading the body as a stream. Refuses bodies over the cap (from
/// Content-Length before reading, else as soon as the stream passes it), stalls and slow
/// downloads (see [`Limits`]), and stops when `cancel` is used.
pub async fn fetch_with_progress(
    url: &str,
    cancel: Rc<Cancel>,
    progress: impl Fn(u64, u64),
) -> Result<Vec<u8>, String> {
    let limits = Limits::current();
    let started = Instant::now();
    let fetching = fetch_with_signal(url, &cancel.controller);
    let response = within_limits(url, fetching, &limits, started, 0, &cancel).await?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| "not a response")?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    // Untrusted: used to refuse early and for the progress bar, never to size a buffer.
    let total: u64 = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if total > limits.cap_bytes {
        cancel.cancel();
        return Err(too_large(
            url,
            format!("the server announces {} (Content-Length)", mb(total)),
            limits.cap_bytes,
        ));
    }
    let Some(body) = response.body() else {
        // No stream (old browsers): read at once, still under the timeouts and the cap.
        let promise = response.array_buffer().map_err(|e| describe(&e))?;
        let buffer = within_limits(url, promise, &limits, started, 0, &cancel).await?;
        let array = js_sys::Uint8Array::new(&buffer);
        return into_wasm_memory(url, &[array], &limits);
    };
    let reader: web_sys::ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|_| "the response body cannot be streamed")?;
    let mut chunks: Vec<js_sys::Uint8Array> = vec![];
    let mut received: u64 = 0;
    loop {
        let chunk = within_limits(url, reader.read(), &limits, started, received, &cancel).await?;
        let done = js_sys::Reflect::get(&chunk, &"done".into())
            .map(|d| d.is_truthy())
            .unwrap_or(true);
        if done {
            break;
        }
        let value = js_sys::Reflect::get(&chunk, &"value".into()).map_err(|e| describe(&e))?;
        let array: js_sys::Uint8Array = value
            .dyn_into()
            .map_err(|_| format!("{url}: the response stream gave something other than bytes"))?;
        received += u64::from(array.length());
        if received > limits.cap_bytes {
            cancel.cancel();
            return Err(too_large(
                url,
                format!("it sent more than {} without ending", mb(limits.cap_bytes)),
                limits.cap_bytes,
            ));
        }
        chunks.push(array);
        progress(received, total);
    }
    into_wasm_memory(url, &chunks, &limits)
}

/// Copies the received chunks into one buffer, allocated once and fallibly (an allocation
/// failure on wasm32 would otherwise abort the page).
fn into_wasm_memory(
    url: &str,
    chunks: &[js_sys::Uint8Array],
    limits: &Limits,
) -> Result<Vec<u8>, String> {
    let size: u64 = chunks.iter().map(|c| u64::from(c.length())).sum();
    if size > limits.cap_bytes {
        return Err(too_large(
            url,
            format!("it sent {}", mb(size)),
            limits.cap_bytes,
        ));
    }
    let size = usize::try_from(size).map_err(|_| too_large(url, mb(size), limits.cap_bytes))?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(size).map_err(|_| {
        format!(
            "{url}: not enough memory for the {} download; close other tabs or use a smaller \
             checkpoint",
            mb(size as u64)
        )
    })?;
    for chunk in chunks {
        let start = bytes.len();
        bytes.resize(start + chunk.length() as usize, 0);
        chunk.copy_to(&mut bytes[start..]);
    }
    Ok(bytes)
}
