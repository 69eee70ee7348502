//! The wire: `{json, payload}` messages in and out of the worker (docs/web-architecture.md).

use nepa_protocol::{FromWorker, Progress, Reply, RequestId, ToWorker, WebError, decode, encode};
use wasm_bindgen::prelude::*;
use web_sys::DedicatedWorkerGlobalScope;

fn scope() -> Option<DedicatedWorkerGlobalScope> {
    js_sys::global().dyn_into().ok()
}

/// Posts a message to the page; `payload` (if any) moves with it (its buffer is transferred).
pub fn post(message: FromWorker, payload: Option<js_sys::Uint8Array>) {
    let Some(scope) = scope() else {
        web_sys::console::error_1(&"nepa-worker: not running in a dedicated worker".into());
        return;
    };
    let object = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&object, &"json".into(), &encode(&message).into());
    let payload_value = payload.as_ref().map_or(JsValue::NULL, |p| p.clone().into());
    let _ = js_sys::Reflect::set(&object, &"payload".into(), &payload_value);
    let sent = match &payload {
        Some(p) => scope.post_message_with_transfer(&object, &js_sys::Array::of1(&p.buffer())),
        None => scope.post_message(&object),
    };
    if let Err(e) = sent {
        web_sys::console::error_2(&"nepa-worker: postMessage failed".into(), &e);
    }
}

/// Posts an unasked event (`id: None`).
pub fn event(reply: Reply) {
    post(FromWorker { id: None, reply }, None);
}

/// Reads an incoming `{json, payload}` message.
pub fn receive(data: &JsValue) -> Result<(ToWorker, JsValue), WebError> {
    let json = js_sys::Reflect::get(data, &"json".into())
        .ok()
        .and_then(|j| j.as_string())
        .ok_or_else(|| WebError::internal("malformed message: no json field"))?;
    let payload = js_sys::Reflect::get(data, &"payload".into()).unwrap_or(JsValue::NULL);
    Ok((decode::<ToWorker>(&json)?, payload))
}

/// Byte progress of one request, posted at most every 100 ms and at the end: a stream gives
/// thousands of chunks, and a message per chunk would flood the page's event loop and lag
/// its timers.
pub struct ByteProgress {
    r: Responder,
    stage: &'static str,
    last_ms: std::cell::Cell<f64>,
}

impl ByteProgress {
    const EVERY_MS: f64 = 100.0;

    pub fn new(r: Responder, stage: &'static str) -> Self {
        Self {
            r,
            stage,
            last_ms: std::cell::Cell::new(f64::NEG_INFINITY),
        }
    }

    /// `total` 0: unknown.
    pub fn update(&self, done: u64, total: u64) {
        let now = js_sys::Date::now();
        if now - self.last_ms.get() >= Self::EVERY_MS || done == total {
            self.last_ms.set(now);
            self.r.progress(Progress::counted(
                self.stage,
                done,
                (total > 0).then_some(total),
            ));
        }
    }
}

/// Answers one request: progress, then one result or error.
#[derive(Clone, Copy, Debug)]
pub struct Responder {
    pub id: RequestId,
}

impl Responder {
    pub fn new(id: RequestId) -> Self {
        Self { id }
    }

    pub fn progress(&self, progress: Progress) {
        self.reply(Reply::Progress(progress));
    }

    pub fn stage(&self, stage: impl Into<String>) {
        self.progress(Progress::stage(stage));
    }

    pub fn reply(&self, reply: Reply) {
        post(
            FromWorker {
                id: Some(self.id),
                reply,
            },
            None,
        );
    }

    pub fn fail(&self, error: WebError) {
        self.reply(Reply::Failed(error));
    }

    /// Answers with `bytes` as the payload (copied once out of wasm memory, then moved).
    pub fn reply_with_bytes(&self, reply: Reply, bytes: &[u8]) {
        let payload = js_sys::Uint8Array::new_with_length(bytes.len() as u32);
        payload.copy_from(bytes);
        post(
            FromWorker {
                id: Some(self.id),
                reply,
            },
            Some(payload),
        );
    }

    /// Answers with the result, or the error.
    pub fn finish(&self, result: Result<Reply, WebError>) {
        match result {
            Ok(reply) => self.reply(reply),
            Err(e) => self.fail(e),
        }
    }
}
