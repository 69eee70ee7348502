//! The five maps with their controls. Hovering reads the values the page already holds
//! (nothing is asked of the engine); a click moves the query patch.

use std::rc::Rc;

use nepa_protocol::Selection;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::explore::state::{ExploreMsg, ExploreState, ShownPanel, ShownView};
use crate::picture::Canvas;

#[derive(Properties, PartialEq)]
pub struct ViewsProps {
    pub view: Rc<ShownView>,
    pub layers: usize,
    pub heads: usize,
    pub selection: Selection,
    /// The name of the image the view on screen shows.
    pub image_name: AttrValue,
    pub dispatch: UseReducerDispatcher<ExploreState>,
}

/// A panel with its colour bar; hovering shows the patch value.
fn panel(
    p: &ShownPanel,
    grid: (usize, usize),
    onclick: Callback<(f64, f64)>,
    hover: UseStateHandle<String>,
) -> Html {
    let onhover = {
        let (id, values) = (p.id.clone(), p.values.clone());
        Callback::from(move |(x, y): (f64, f64)| {
            let (r, c) = ((y * grid.0 as f64) as usize, (x * grid.1 as f64) as usize);
            if let Some(v) = values.get(r * grid.1 + c) {
                hover.set(format!("{id} patch ({r}, {c}): {v:.4}"));
            }
        })
    };
    html! {
        <figure class="panel">
            <figcaption>{ p.title.clone() }</figcaption>
            <Canvas id={AttrValue::from(p.id.clone())} picture={p.picture.clone()} onclick={Some(onclick)} onhover={Some(onhover)} />
            if let Some((low, high)) = &p.colorbar {
                <div class="colorbar"><span>{ low.clone() }</span><span class="jet"></span><span>{ high.clone() }</span></div>
            }
            <p class="caption">{ p.caption.clone() }</p>
        </figure>
    }
}

#[function_component(Views)]
pub fn views(props: &ViewsProps) -> Html {
    let hover = use_state(String::new);
    let view = &props.view;
    let grid = (view.grid_rows, view.grid_cols);
    let onclick = {
        let dispatch = props.dispatch.clone();
        Callback::from(move |(x, y): (f64, f64)| {
            dispatch.dispatch(ExploreMsg::Query(
                (y * grid.0 as f64) as usize,
                (x * grid.1 as f64) as usize,
            ))
        })
    };
    // The hint names the query of the view on screen (the one asked for may still be coming):
    // the engine's answer, which is the first view's choice until the visitor clicks.
    let patch = view.query_token.saturating_sub(1);
    let (row, col) = (patch / grid.1, patch % grid.1);
    let asked = view
        .key
        .selection
        .query
        .map_or("first".to_string(), |(r, c)| format!("r{r}c{c}"));
    let chosen = if view.key.selection.query.is_none() {
        " (the first view's choice: near the centre, unlike the border, predicted confidently)"
    } else {
        ""
    };
    html! {
        <section id="views" class="views" data-image={props.image_name.clone()}
            data-key={format!("v{}/i{}/{asked}", view.key.model_version, view.key.image)} data-query={format!("{row},{col}")}
            data-grid={format!("{}x{}", grid.0, grid.1)}>
            <p class="hint">{ format!("Query patch ({row}, {col}){chosen} = token {} (red); ẑ there predicts the next patch (magenta). Click any map to move the query. CLS attention weight: {:.3}", view.query_token, view.cls_attention) }</p>
            { controls(props) }
            <div class="panels">
                { for view.panels.iter().map(|p| panel(p, grid, onclick.clone(), hover.clone())) }
            </div>
            <p id="hover" class="hover">{ (*hover).clone() }</p>
        </section>
    }
}

/// The layer slider, the head menu and the similarity-mode button.
fn controls(props: &ViewsProps) -> Html {
    let selection = props.selection;
    let layer_value = selection.layer.unwrap_or(props.layers);
    let dispatch = props.dispatch.clone();
    let on_layer = Callback::from(move |e: InputEvent| {
        let input: HtmlInputElement = e.target_unchecked_into();
        let v: usize = input.value().parse().unwrap_or(0);
        dispatch.dispatch(ExploreMsg::Layer(
            (v < input.max().parse().unwrap_or(0)).then_some(v),
        ));
    });
    let dispatch = props.dispatch.clone();
    let on_head = Callback::from(move |e: Event| {
        let input: web_sys::HtmlSelectElement = e.target_unchecked_into();
        dispatch.dispatch(ExploreMsg::Head(input.value().parse().ok()));
    });
    let dispatch = props.dispatch.clone();
    let softmax = selection.softmax;
    let on_toggle = Callback::from(move |_| dispatch.dispatch(ExploreMsg::Softmax(!softmax)));
    html! {
        <div class="controls">
            <label>{ format!("layer: {}", selection.layer.map_or("mean of layers".to_string(), |l| l.to_string())) }
                <input id="layer" type="range" min="0" max={props.layers.to_string()} value={layer_value.to_string()} oninput={on_layer} />
            </label>
            <label>{ "head: " }
                <select id="head" onchange={on_head}>
                    <option value="mean" selected={selection.head.is_none()}>{ "mean of heads" }</option>
                    { for (0..props.heads).map(|h| html! { <option value={h.to_string()} selected={selection.head == Some(h)}>{ format!("head {h}") }</option> }) }
                </select>
            </label>
            <button id="similarity-mode" onclick={on_toggle}>{ if softmax { "similarity: softmax/γ (paper)" } else { "similarity: raw cosine" } }</button>
        </div>
    }
}
