//! Pause and cancel flags of the running requests, by request id.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use nepa_protocol::RequestId;

/// What the page can do to a running request; read between steps.
#[derive(Default)]
pub struct Control {
    paused: Cell<bool>,
    cancelled: Cell<bool>,
    /// Run on Cancel (a download aborts its fetch).
    on_cancel: RefCell<Option<Box<dyn Fn()>>>,
}

impl Control {
    pub fn paused(&self) -> bool {
        self.paused.get()
    }

    pub fn cancelled(&self) -> bool {
        self.cancelled.get()
    }

    pub fn set_on_cancel(&self, f: Box<dyn Fn()>) {
        *self.on_cancel.borrow_mut() = Some(f);
    }

    fn cancel(&self) {
        self.cancelled.set(true);
        if let Some(f) = self.on_cancel.borrow().as_ref() {
            f();
        }
    }
}

/// The running requests that can be paused or cancelled.
#[derive(Clone, Default)]
pub struct Tasks {
    map: Rc<RefCell<HashMap<RequestId, Rc<Control>>>>,
}

/// Keeps a request's control registered while it runs.
pub struct Registered {
    map: Rc<RefCell<HashMap<RequestId, Rc<Control>>>>,
    id: RequestId,
    pub control: Rc<Control>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.map.borrow_mut().remove(&self.id);
    }
}

impl Tasks {
    /// Registers request `id` until the returned guard is dropped.
    pub fn register(&self, id: RequestId) -> Registered {
        let control = Rc::new(Control::default());
        self.map.borrow_mut().insert(id, control.clone());
        Registered {
            map: self.map.clone(),
            id,
            control,
        }
    }

    fn get(&self, id: RequestId) -> Option<Rc<Control>> {
        self.map.borrow().get(&id).cloned()
    }

    /// Cancels request `id`; whether it was running.
    pub fn cancel(&self, id: RequestId) -> bool {
        // Not borrowed while the callback runs: it may touch the map.
        let control = self.get(id);
        control.map(|c| c.cancel()).is_some()
    }

    /// Pauses or resumes request `id`; whether it was running.
    pub fn pause(&self, id: RequestId, paused: bool) -> bool {
        self.get(id).map(|c| c.paused.set(paused)).is_some()
    }
}
