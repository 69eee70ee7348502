//! The Fine-tune tab's event handlers.

use std::rc::Rc;

use nepa_protocol::Request;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::engine::EngineClient;
use crate::finetune::actions;
use crate::finetune::state::{FinetuneMsg, FinetuneState, RunSettings};
use crate::platform::files::take_input_files;

/// The tab's event handlers, made once per render.
pub struct Callbacks {
    pub on_add_class: Callback<MouseEvent>,
    pub on_sample: Callback<MouseEvent>,
    pub on_train: Callback<MouseEvent>,
    pub on_pause: Callback<MouseEvent>,
    pub on_stop: Callback<MouseEvent>,
    pub on_classify: Callback<Event>,
    pub on_download: Callback<MouseEvent>,
}

impl Callbacks {
    pub fn new(
        engine: &Rc<EngineClient>,
        state: &UseReducerHandle<FinetuneState>,
        settings: &RunSettings,
        class_name: &NodeRef,
    ) -> Self {
        let on_add_class = {
            let (dispatch, input, count) =
                (state.dispatcher(), class_name.clone(), state.classes.len());
            Callback::from(move |_| {
                let Some(input) = input.cast::<HtmlInputElement>() else {
                    return;
                };
                let name = input.value().trim().to_string();
                input.set_value("");
                dispatch.dispatch(FinetuneMsg::AddClass(if name.is_empty() {
                    format!("class {}", count + 1)
                } else {
                    name
                }));
            })
        };
        let on_sample = {
            let (engine, dispatch) = (engine.clone(), state.dispatcher());
            Callback::from(move |_| actions::load_sample(&engine, &dispatch))
        };
        let on_train = {
            let (engine, dispatch, classes) =
                (engine.clone(), state.dispatcher(), state.classes.clone());
            let s = settings.clone();
            Callback::from(move |_| {
                actions::train(&engine, &dispatch, &classes, *s.mode, *s.steps, *s.batch)
            })
        };
        let on_pause = {
            let (engine, run, paused) = (engine.clone(), state.run, state.paused());
            Callback::from(move |_| {
                if let Some(target) = run {
                    engine.tell(Request::Pause {
                        target,
                        paused: !paused,
                    });
                }
            })
        };
        let on_stop = {
            let (engine, run) = (engine.clone(), state.run);
            Callback::from(move |_| {
                if let Some(target) = run {
                    engine.tell(Request::Cancel { target });
                }
            })
        };
        let on_classify = {
            let (engine, dispatch) = (engine.clone(), state.dispatcher());
            Callback::from(move |e: Event| {
                actions::classify(&engine, &dispatch, take_input_files(&e))
            })
        };
        let on_download = {
            let (engine, dispatch) = (engine.clone(), state.dispatcher());
            Callback::from(move |_| actions::download(&engine, &dispatch))
        };
        Self {
            on_add_class,
            on_sample,
            on_train,
            on_pause,
            on_stop,
            on_classify,
            on_download,
        }
    }
}
