//! The page's side of the engine worker (docs/web-architecture.md): starts the worker, sends
//! typed requests and routes each reply to the handler of its request. Replies that answer
//! no request (a lost device, a crashed engine) go to the app's handler.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use js_sys::{Array, Object, Reflect, Uint8Array};
use nepa_protocol::{FromWorker, Reply, Request, RequestId, ToWorker, WebError, decode, encode};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

/// The module trunk writes next to the worker's wasm (`data-loader-shim`, index.html).
const WORKER_SCRIPT: &str = "./nepa-worker_loader.js";

/// A reply and the bytes that came with it (pixels, a model file), if any.
pub type Handler = Rc<dyn Fn(Reply, Option<Uint8Array>)>;

/// A JS event listener kept alive as long as the engine.
type Listener = Closure<dyn Fn(JsValue)>;

/// The page's handle on the engine worker (the worker's own state is `nepa-worker`'s
/// `Engine`), shared by the tabs (a Yew context).
pub struct EngineClient {
    worker: Worker,
    next_id: Cell<RequestId>,
    handlers: RefCell<HashMap<RequestId, Handler>>,
    /// Messages sent before the worker said it listens.
    queue: RefCell<Option<Vec<(JsValue, Array)>>>,
    unasked: Handler,
    _listeners: RefCell<Vec<Listener>>,
}

impl PartialEq for EngineClient {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl EngineClient {
    /// Starts the worker. `unasked` receives replies with no request: `DeviceLost`, a
    /// failure of the engine itself, a model loaded as a fallback.
    pub fn start(
        unasked: impl Fn(Reply, Option<Uint8Array>) + 'static,
    ) -> Result<Rc<EngineClient>, WebError> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = Worker::new_with_options(WORKER_SCRIPT, &options)
            .map_err(|e| WebError::internal(format!("the engine worker could not start: {e:?}")))?;
        let engine = Rc::new(EngineClient {
            worker,
            next_id: Cell::new(1),
            handlers: RefCell::default(),
            queue: RefCell::new(Some(vec![])),
            unasked: Rc::new(unasked),
            _listeners: RefCell::default(),
        });
        engine.listen();
        Ok(engine)
    }

    fn listen(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let on_message = Listener::new(move |event: JsValue| {
            if let (Some(engine), Ok(event)) = (weak.upgrade(), event.dyn_into::<MessageEvent>()) {
                engine.receive(&event.data());
            }
        });
        self.worker
            .set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let weak: Weak<Self> = Rc::downgrade(self);
        let on_error = Listener::new(move |event: JsValue| {
            let detail = event
                .dyn_ref::<web_sys::ErrorEvent>()
                .map(|e| e.message())
                .unwrap_or_else(|| "its script or wasm did not load".into());
            if let Some(engine) = weak.upgrade() {
                (engine.unasked)(
                    Reply::Failed(WebError::internal(format!(
                        "the engine worker failed: {detail}; reload the page"
                    ))),
                    None,
                );
            }
        });
        self.worker
            .set_onerror(Some(on_error.as_ref().unchecked_ref()));
        self._listeners.borrow_mut().extend([on_message, on_error]);
    }

    fn receive(&self, data: &JsValue) {
        let json = Reflect::get(data, &"json".into())
            .ok()
            .and_then(|j| j.as_string())
            .unwrap_or_default();
        let payload = Reflect::get(data, &"payload".into())
            .ok()
            .and_then(|p| p.dyn_into::<Uint8Array>().ok());
        let message: FromWorker = match decode(&json) {
            Ok(message) => message,
            Err(e) => return (self.unasked)(Reply::Failed(e), None),
        };
        if message.reply == Reply::WorkerReady {
            let queued = self.queue.borrow_mut().take().unwrap_or_default();
            for (message, transfer) in queued {
                self.post(&message, &transfer);
            }
            return;
        }
        let handler = message.id.and_then(|id| {
            let mut handlers = self.handlers.borrow_mut();
            if message.reply.is_final() {
                handlers.remove(&id)
            } else {
                handlers.get(&id).cloned()
            }
        });
        match handler {
            Some(handler) => handler(message.reply, payload),
            // A reply for a request nobody waits for any more is dropped; one for no request
            // is the engine speaking for itself.
            None if message.id.is_none() => (self.unasked)(message.reply, payload),
            None => {}
        }
    }

    fn post(&self, message: &JsValue, transfer: &Array) {
        if let Err(e) = self.worker.post_message_with_transfer(message, transfer) {
            (self.unasked)(
                Reply::Failed(WebError::internal(format!(
                    "a message could not reach the engine: {e:?}"
                ))),
                None,
            );
        }
    }

    /// Sends a request with an optional payload (a `File`, an array of them); `on_reply`
    /// gets its progress and its result. Returns the request's id (for Cancel and Pause).
    pub fn send(
        &self,
        request: Request,
        payload: Option<JsValue>,
        on_reply: impl Fn(Reply, Option<Uint8Array>) + 'static,
    ) -> RequestId {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.handlers.borrow_mut().insert(id, Rc::new(on_reply));
        let message = Object::new();
        let json = encode(&ToWorker { id, request });
        let _ = Reflect::set(&message, &"json".into(), &json.into());
        let _ = Reflect::set(
            &message,
            &"payload".into(),
            &payload.unwrap_or(JsValue::NULL),
        );
        let message: JsValue = message.into();
        // Files are structured-cloned as handles: nothing to transfer from the page.
        let transfer = Array::new();
        match self.queue.borrow_mut().as_mut() {
            Some(queue) => queue.push((message, transfer)),
            None => self.post(&message, &transfer),
        }
        id
    }

    /// Sends a request whose replies nobody waits for (Cancel, Pause).
    pub fn tell(&self, request: Request) {
        self.send(request, None, |_, _| {});
    }
}

impl Drop for EngineClient {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}
