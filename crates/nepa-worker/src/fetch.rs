//! Downloads: plain fetches of the app's own files, and checkpoint downloads by URL with
//! progress, a size cap, stall and overall timeouts and Cancel.
//!
//! A URL is hostile input: its Content-Length may lie and its body may never end. Chunks are
//! kept as JS arrays while they arrive and copied into wasm memory once, with a fallible
//! allocation, when the body is complete and known to be under the cap.

use nepa_protocol::{DownloadLimits, ErrorKind, WebError};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_time::Instant;

use crate::platform::{describe, mb};
use crate::tasks::Control;

#[wasm_bindgen(inline_js = r#"
export function new_abort_controller() { return new AbortController(); }
export function abort_controller(controller) { controller.abort(); }
export function fetch_with_signal(url, controller) {
  return fetch(url, { signal: controller.signal });
}
// Settles with the promise's value, or with `undefined` after `ms`.
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

/// The message for a download over the cap.
pub fn too_large(url: &str, what: String, cap: u64) -> WebError {
    let cap = if cap >= 1 << 30 && cap.is_multiple_of(1 << 30) {
        format!("{} GiB", cap >> 30)
    } else {
        mb(cap)
    };
    WebError::new(
        ErrorKind::TooLarge,
        format!(
            "{url}: the download is too large: {what}, but the page accepts at most {cap} (the \
             browser's wasm32 memory, 4 GiB at most, must also hold the parsed model); nothing \
             was loaded"
        ),
    )
}

fn as_response(url: &str, value: JsValue) -> Result<web_sys::Response, WebError> {
    let response: web_sys::Response = value
        .dyn_into()
        .map_err(|_| WebError::network(format!("{url}: not a response")))?;
    if !response.ok() {
        return Err(WebError::network(format!(
            "{url}: HTTP {}",
            response.status()
        )));
    }
    Ok(response)
}

/// Fetches one of the app's own files (bundled photos, the sample set, the demo model).
pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, WebError> {
    let controller = new_abort_controller();
    let response = JsFuture::from(fetch_with_signal(url, &controller))
        .await
        .map_err(|e| WebError::network(format!("{url}: download failed ({})", describe(&e))))?;
    let response = as_response(url, response)?;
    let promise = response
        .array_buffer()
        .map_err(|e| WebError::network(describe(&e)))?;
    let buffer = JsFuture::from(promise)
        .await
        .map_err(|e| WebError::network(format!("{url}: {}", describe(&e))))?;
    into_wasm_memory(url, &[js_sys::Uint8Array::new(&buffer)], u64::MAX)
}

/// One download: its limits, clock, abort handle and cancel flag.
struct Download<'a> {
    url: &'a str,
    limits: DownloadLimits,
    started: Instant,
    controller: JsValue,
    control: &'a Control,
}

impl Download<'_> {
    /// Waits for `promise` under the stall and overall timeouts. A timeout aborts the request
    /// and is an error, as is a cancel; `received` is for the message.
    async fn within_limits(
        &self,
        promise: js_sys::Promise,
        received: u64,
    ) -> Result<JsValue, WebError> {
        let (url, limits) = (self.url, &self.limits);
        let elapsed = self.started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
        let wait = limits.stall_ms.min(limits.total_ms.saturating_sub(elapsed));
        let settled = JsFuture::from(race_timeout(&promise, wait)).await;
        if self.control.cancelled() {
            return Err(WebError::new(
                ErrorKind::Cancelled,
                format!(
                    "{url}: download cancelled after {}; the model already loaded is kept",
                    mb(received)
                ),
            ));
        }
        let value = settled.map_err(|e| {
            WebError::network(format!("{url}: download interrupted ({})", describe(&e)))
        })?;
        if !value.is_undefined() {
            return Ok(value);
        }
        abort_controller(&self.controller);
        let message = if wait < limits.stall_ms {
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
        };
        Err(WebError::new(ErrorKind::Timeout, message))
    }
}

/// Fetches a URL while reporting `(received, total)` bytes (total from Content-Length, 0 if
/// unknown) after every chunk. Refuses bodies over the cap (from Content-Length before
/// reading, else as soon as the stream passes it), stalls and slow downloads, and stops when
/// the request is cancelled. The body stays in JS memory, as the chunks it came in: the
/// caller decides when to copy it into the wasm heap.
pub async fn fetch_chunks(
    url: &str,
    limits: DownloadLimits,
    control: &Control,
    progress: impl Fn(u64, u64),
) -> Result<Vec<js_sys::Uint8Array>, WebError> {
    let refused = |status, _| WebError::network(format!("{url}: HTTP {status}"));
    fetch_chunks_or(url, limits, control, progress, refused).await
}

/// [`fetch_chunks`], with the error for a response that is not a success made by `refused`
/// from its status and its `X-Error-Code` header (a hub's `RepoNotFound`, `EntryNotFound`…).
pub async fn fetch_chunks_or(
    url: &str,
    limits: DownloadLimits,
    control: &Control,
    progress: impl Fn(u64, u64),
    refused: impl FnOnce(u16, Option<String>) -> WebError,
) -> Result<Vec<js_sys::Uint8Array>, WebError> {
    let controller = new_abort_controller();
    let abort = controller.clone();
    control.set_on_cancel(Box::new(move || abort_controller(&abort)));
    let download = Download {
        url,
        limits,
        started: Instant::now(),
        controller,
        control,
    };
    let fetching = fetch_with_signal(url, &download.controller);
    let response: web_sys::Response = download
        .within_limits(fetching, 0)
        .await?
        .dyn_into()
        .map_err(|_| WebError::network(format!("{url}: not a response")))?;
    if !response.ok() {
        let code = response.headers().get("x-error-code").ok().flatten();
        return Err(refused(response.status(), code));
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
        abort_controller(&download.controller);
        return Err(too_large(
            url,
            format!("the server announces {} (Content-Length)", mb(total)),
            limits.cap_bytes,
        ));
    }
    read_body(&download, &response, total, progress).await
}

/// The body's chunks, as JS arrays, under the limits.
async fn read_body(
    download: &Download<'_>,
    response: &web_sys::Response,
    total: u64,
    progress: impl Fn(u64, u64),
) -> Result<Vec<js_sys::Uint8Array>, WebError> {
    let (url, cap) = (download.url, download.limits.cap_bytes);
    let Some(body) = response.body() else {
        let promise = response
            .array_buffer()
            .map_err(|e| WebError::network(describe(&e)))?;
        let buffer = download.within_limits(promise, 0).await?;
        return Ok(vec![js_sys::Uint8Array::new(&buffer)]);
    };
    let reader: web_sys::ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|_| WebError::network(format!("{url}: the response body cannot be streamed")))?;
    let mut chunks = vec![];
    let mut received: u64 = 0;
    loop {
        let chunk = download.within_limits(reader.read(), received).await?;
        let Some(array) = stream_chunk(url, &chunk)? else {
            break;
        };
        received += u64::from(array.length());
        if received > cap {
            abort_controller(&download.controller);
            return Err(too_large(
                url,
                format!("it sent more than {} without ending", mb(cap)),
                cap,
            ));
        }
        chunks.push(array);
        progress(received, total);
    }
    Ok(chunks)
}

/// A stream reader's result: the chunk, or `None` at the end.
pub fn stream_chunk(name: &str, chunk: &JsValue) -> Result<Option<js_sys::Uint8Array>, WebError> {
    let done = js_sys::Reflect::get(chunk, &"done".into())
        .map(|d| d.is_truthy())
        .unwrap_or(true);
    if done {
        return Ok(None);
    }
    let value = js_sys::Reflect::get(chunk, &"value".into())
        .map_err(|e| WebError::network(describe(&e)))?;
    value.dyn_into().map(Some).map_err(|_| {
        WebError::network(format!(
            "{name}: the stream gave something other than bytes"
        ))
    })
}

/// Copies the received chunks into one buffer, allocated once and fallibly (an allocation
/// failure on wasm32 would otherwise abort the engine).
pub fn into_wasm_memory(
    url: &str,
    chunks: &[js_sys::Uint8Array],
    cap: u64,
) -> Result<Vec<u8>, WebError> {
    let size: u64 = chunks.iter().map(|c| u64::from(c.length())).sum();
    if size > cap {
        return Err(too_large(url, format!("it sent {}", mb(size)), cap));
    }
    let size = usize::try_from(size).map_err(|_| too_large(url, mb(size), cap))?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(size).map_err(|_| {
        WebError::new(
            ErrorKind::TooLarge,
            format!(
                "{url}: not enough memory for the {} download; close other tabs or use a \
                 smaller checkpoint",
                mb(size as u64)
            ),
        )
    })?;
    for chunk in chunks {
        let start = bytes.len();
        bytes.resize(start + chunk.length() as usize, 0);
        chunk.copy_to(&mut bytes[start..]);
    }
    Ok(bytes)
}
