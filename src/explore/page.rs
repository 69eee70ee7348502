//! The Explore tab's component: asks the engine for the view of (model, image, selection)
//! whenever one of them changes, and runs "adapt to my images".

use std::rc::Rc;

use nepa_protocol::{ModelInfo, Reply, Request, ViewKey};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::engine::EngineClient;
use crate::explore::state::{ExploreMsg, ExploreState, ShownView};
use crate::explore::views::Views;
use crate::picture::GalleryImage;

#[derive(Properties, PartialEq, Clone)]
pub struct ExploreProps {
    pub model: Option<Rc<ModelInfo>>,
    pub image: Option<Rc<GalleryImage>>,
    pub images: Vec<Rc<GalleryImage>>,
    /// The model changed here (adaptation): the app shows it.
    pub on_model: Callback<ModelInfo>,
    pub on_error: Callback<String>,
}

type Dispatch = UseReducerDispatcher<ExploreState>;

/// Asks for the view of `key`; the reducer drops it if another was asked for meanwhile.
fn request_view(engine: &EngineClient, dispatch: &Dispatch, key: ViewKey) {
    dispatch.dispatch(ExploreMsg::Want(key));
    let d = dispatch.clone();
    engine.send(
        Request::Render { key },
        None,
        move |reply, payload| match reply {
            Reply::Rendered(view) => {
                let forward_ms = view.forward_ms;
                let bytes = payload.map(|p| p.to_vec()).unwrap_or_default();
                match ShownView::new(view, &bytes) {
                    Some(view) => d.dispatch(ExploreMsg::Rendered(Rc::new(view), forward_ms)),
                    None => d.dispatch(ExploreMsg::Failed(
                        key,
                        "the engine sent a view without its pictures".into(),
                    )),
                }
            }
            Reply::Failed(e) => d.dispatch(ExploreMsg::Failed(key, e.message)),
            _ => {}
        },
    );
}

/// Runs NEPA steps on the gallery; the model (and so the maps) update as it learns.
fn adapt(engine: &EngineClient, dispatch: &Dispatch, props: &ExploreProps, steps: usize) {
    let images = props.images.iter().map(|i| i.id).collect();
    let (d, on_model, on_error) = (
        dispatch.clone(),
        props.on_model.clone(),
        props.on_error.clone(),
    );
    d.dispatch(ExploreMsg::AdaptStatus("adapting: starting…".into()));
    engine.send(
        Request::Adapt { steps, images },
        None,
        move |reply, _| match reply {
            Reply::Progress(p) => d.dispatch(ExploreMsg::AdaptStatus(p.stage)),
            Reply::ModelUpdated(model) | Reply::ModelReady(model) => on_model.emit(model),
            Reply::Failed(e) => {
                on_error.emit(e.message);
                d.dispatch(ExploreMsg::AdaptEnded);
            }
            _ => d.dispatch(ExploreMsg::AdaptEnded),
        },
    );
}

#[function_component(ExplorePage)]
pub fn explore_page(props: &ExploreProps) -> Html {
    let engine = use_context::<Rc<EngineClient>>().expect("the app provides the engine");
    let state = use_reducer(ExploreState::default);
    {
        let dispatch = state.dispatcher();
        let shape = props.model.as_ref().map(|m| (m.layers, m.heads));
        use_effect_with(shape, move |shape| {
            if let Some((layers, heads)) = *shape {
                dispatch.dispatch(ExploreMsg::ModelShape { layers, heads });
            }
        });
    }
    let key = match (&props.model, &props.image) {
        (Some(model), Some(image)) => Some(ViewKey {
            model_version: model.version,
            image: image.id,
            selection: state.selection,
        }),
        _ => None,
    };
    {
        let (engine, dispatch) = (engine.clone(), state.dispatcher());
        use_effect_with(key, move |key| {
            if let Some(key) = key {
                request_view(&engine, &dispatch, *key);
            }
        });
    }
    let steps_ref = use_node_ref();
    let on_adapt = {
        let (engine, dispatch, steps_ref) = (engine.clone(), state.dispatcher(), steps_ref.clone());
        let props = props.clone();
        Callback::from(move |_| {
            let steps = steps_ref
                .cast::<HtmlInputElement>()
                .and_then(|i| i.value().parse().ok())
                .unwrap_or(20usize)
                .clamp(1, 1000);
            adapt(&engine, &dispatch, &props, steps);
        })
    };
    let running = state.adapting.as_ref().is_some_and(|a| a.running);
    let layers = props.model.as_ref().map_or(0, |m| m.layers);
    let heads = props.model.as_ref().map_or(0, |m| m.heads);
    html! {
        <>
            <section class="adapt">
                <button id="adapt" disabled={running || props.images.is_empty() || props.model.is_none()} onclick={on_adapt}>{ "Adapt to my images" }</button>
                <label>{ " NEPA steps: " }<input ref={steps_ref} id="adapt-steps" type="number" min="1" max="1000" value="20" size="4" /></label>
                <span class="note">{ " continues next-embedding pretraining on the gallery (random crops); the maps update as it learns" }</span>
                if let Some(a) = state.adapting.as_ref().filter(|a| !a.status.is_empty()) { <p id="adapt-status" class="busy">{ a.status.clone() }</p> }
            </section>
            <p class="status">
                <span id="latency">
                    if let Some(first) = state.first_ms { { format!("first run (incl. shader compilation): {first:.0} ms") } }
                    if let Some(last) = state.last_ms { { format!(" · warm: {last:.0} ms") } }
                </span>
                if state.waiting() {
                    <span id="busy" class="busy">{ props.image.as_ref().map_or(String::new(), |i| format!(" running the model on {}…", i.name)) }</span>
                }
            </p>
            if let Some(e) = &state.error { <p id="explore-error" class="error">{ e.clone() }</p> }
            if let Some(view) = &state.view {
                <Views view={view.clone()} {layers} {heads} selection={state.selection} dispatch={state.dispatcher()}
                    image_name={props.images.iter().find(|i| i.id == view.key.image).map_or(String::new(), |i| i.name.clone())} />
            }
        </>
    }
}
