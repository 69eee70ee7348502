//! The app: the engine worker, the header (device, model), loading models and images, the
//! gallery and the three tabs. It owns the engine and hands it to the tabs as a context.

mod actions;
pub mod state;
mod view;

use std::rc::Rc;

use nepa_protocol::{DevicePreference, Request};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::compare::ComparePage;
use crate::engine::EngineClient;
use crate::explore::ExplorePage;
use crate::finetune::FinetunePage;
use crate::hub::TopClassesPanel;
use crate::platform;
use crate::platform::files::{dropped_files, take_input_files};
use state::{AppMsg, AppState, Tab};

/// Name of the JS function that destroys the engine's GPU device: a real device loss on
/// demand, so the recovery path can be tested (and tried by users from the console).
const LOSE_DEVICE_HOOK: &str = "nepaLoseDevice";

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(AppState::default);
    let engine = {
        let dispatch = state.dispatcher();
        use_memo((), move |_| {
            EngineClient::start(move |reply, _| actions::unasked(&dispatch, reply))
        })
    };
    let engine = match &*engine {
        Ok(engine) => engine.clone(),
        Err(e) => return html! { <main><p class="error">{ e.message.clone() }</p></main> },
    };
    {
        let (engine, dispatch) = (engine.clone(), state.dispatcher());
        use_effect_with((), move |_| {
            let lose = engine.clone();
            platform::expose(
                LOSE_DEVICE_HOOK,
                wasm_bindgen::closure::Closure::new(move |_| lose.tell(Request::LoseDevice)),
            );
            actions::start(&engine, &dispatch);
        });
    }
    let callbacks = Callbacks::new(&engine, &state);
    html! {
        <ContextProvider<Rc<EngineClient>> context={engine.clone()}>
            <main ondragover={Callback::from(|e: DragEvent| e.prevent_default())} ondrop={callbacks.on_drop.clone()}>
                { view::header(&state) }
                { view::device_problems(&state, &callbacks) }
                { view::errors(&state) }
                { view::inputs(&state, &callbacks) }
                { view::gallery(&state) }
                { view::tabs(&state) }
                { tab_pages(&state) }
            </main>
        </ContextProvider<Rc<EngineClient>>>
    }
}

/// The three tabs; hidden ones stay mounted so a running job keeps its page.
fn tab_pages(state: &UseReducerHandle<AppState>) -> Html {
    let image = state.selected_image().cloned();
    let d = state.dispatcher();
    let on_model = Callback::from(move |m| d.dispatch(AppMsg::Model(m)));
    let d = state.dispatcher();
    let on_error = Callback::from(move |e| d.dispatch(AppMsg::Error(e)));
    html! {
        <>
            <div hidden={state.tab != Tab::Explore}>
                <TopClassesPanel model={state.model.clone()} image={image.clone()} />
                <ExplorePage model={state.model.clone()} image={image} images={state.images.clone()} {on_model} {on_error} />
            </div>
            <div hidden={state.tab != Tab::Finetune}>
                <FinetunePage device={state.device.clone()} model={state.model.clone()} />
            </div>
            <div hidden={state.tab != Tab::Compare}>
                <ComparePage device={state.device.clone()} />
            </div>
        </>
    }
}

/// The app's event handlers, made once per render.
pub struct Callbacks {
    pub on_files: Callback<Event>,
    pub on_drop: Callback<DragEvent>,
    pub on_url: Callback<MouseEvent>,
    pub url_ref: NodeRef,
    pub on_cancel: Callback<MouseEvent>,
    pub on_cpu: Callback<MouseEvent>,
    pub on_software_gpu: Callback<MouseEvent>,
    pub on_delete_cached: Callback<String>,
    /// The hub picker: its id field, an official model picked, the load button.
    pub hub_ref: NodeRef,
    pub on_pick: Callback<Event>,
    pub on_hub: Callback<MouseEvent>,
}

impl Callbacks {
    fn new(engine: &Rc<EngineClient>, state: &UseReducerHandle<AppState>) -> Self {
        let dispatch = state.dispatcher();
        let url_ref = NodeRef::default();
        let with = |f: fn(&Rc<EngineClient>, &actions::Dispatch)| {
            let (engine, dispatch) = (engine.clone(), dispatch.clone());
            Callback::from(move |_: MouseEvent| f(&engine, &dispatch))
        };
        let (e, d) = (engine.clone(), dispatch.clone());
        let on_files =
            Callback::from(move |ev: Event| actions::ingest(&e, &d, take_input_files(&ev)));
        let (e, d) = (engine.clone(), dispatch.clone());
        let on_drop = Callback::from(move |ev: DragEvent| {
            ev.prevent_default();
            actions::ingest(&e, &d, dropped_files(&ev));
        });
        let (e, d, input) = (engine.clone(), dispatch.clone(), url_ref.clone());
        let on_url = Callback::from(move |_: MouseEvent| {
            if let Some(input) = input.cast::<HtmlInputElement>() {
                actions::load_url(&e, &d, input.value());
            }
        });
        let (e, loading) = (engine.clone(), state.loading.clone());
        let on_cancel = Callback::from(move |_: MouseEvent| {
            if let Some(l) = &loading {
                e.tell(Request::Cancel { target: l.request });
            }
        });
        let (e, d) = (engine.clone(), dispatch.clone());
        let on_delete_cached =
            Callback::from(move |url: String| actions::delete_cached(&e, &d, url));
        let hub_ref = NodeRef::default();
        let (e, d, input) = (engine.clone(), dispatch.clone(), hub_ref.clone());
        let on_hub = Callback::from(move |_: MouseEvent| {
            if let Some(input) = input.cast::<HtmlInputElement>() {
                actions::load_hub(&e, &d, input.value());
            }
        });
        Self {
            on_pick: crate::hub::on_pick(hub_ref.clone()),
            hub_ref,
            on_hub,
            on_files,
            on_drop,
            on_url,
            url_ref,
            on_cancel,
            on_cpu: with(|e, d| actions::switch_device(e, d, DevicePreference::Cpu)),
            on_software_gpu: with(|e, d| {
                actions::switch_device(e, d, DevicePreference::AnyAdapter)
            }),
            on_delete_cached,
        }
    }
}
