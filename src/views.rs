//! The Explore view's components: thumbnails, canvases and the five interactive NEPA maps.

use std::rc::Rc;

use nepa::image::{RgbImage, resize_bilinear};
use nepa::viz::{
    Analysis, Grid, HeadSel, LayerSel, Panel, Selection, SimilarityMode, render_panels,
};
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlInputElement, ImageData};
use yew::prelude::*;

use crate::app::{Action, State, Upload};

#[derive(Properties)]
pub struct ThumbnailProps {
    pub image: Rc<Upload>,
}

impl PartialEq for ThumbnailProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.image, &other.image)
    }
}

#[function_component(Thumbnail)]
pub fn thumbnail(props: &ThumbnailProps) -> Html {
    let img = &props.image.image;
    let scale = 64.0 / img.width.max(img.height) as f64;
    let (w, h) = (
        ((img.width as f64 * scale) as usize).max(1),
        ((img.height as f64 * scale) as usize).max(1),
    );
    html! { <Canvas image={Rc::new(resize_bilinear(img, w, h))} /> }
}

#[derive(Properties)]
pub struct CanvasProps {
    pub image: Rc<RgbImage>,
    #[prop_or_default]
    pub id: Option<AttrValue>,
    #[prop_or_default]
    pub onclick: Option<Callback<(f64, f64)>>,
    #[prop_or_default]
    pub onhover: Option<Callback<(f64, f64)>>,
}

impl PartialEq for CanvasProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.image, &other.image) && self.id == other.id
    }
}

/// Fraction (x, y) in [0, 1) of a mouse event over its target element.
fn relative(e: &MouseEvent) -> Option<(f64, f64)> {
    let target: web_sys::Element = e.target()?.dyn_into().ok()?;
    let rect = target.get_bounding_client_rect();
    Some((
        ((e.client_x() as f64 - rect.left()) / rect.width()).clamp(0.0, 0.999),
        ((e.client_y() as f64 - rect.top()) / rect.height()).clamp(0.0, 0.999),
    ))
}

/// Draws an RGB image into a `<canvas>`, one canvas pixel per image pixel.
#[function_component(Canvas)]
pub fn canvas(props: &CanvasProps) -> Html {
    let node = use_node_ref();
    {
        let node = node.clone();
        let image = props.image.clone();
        use_effect_with(image, move |image| {
            if let Some(canvas) = node.cast::<HtmlCanvasElement>() {
                canvas.set_width(image.width as u32);
                canvas.set_height(image.height as u32);
                let rgba = image.to_rgba();
                if let (Ok(Some(ctx)), Ok(data)) = (
                    canvas.get_context("2d"),
                    ImageData::new_with_u8_clamped_array_and_sh(
                        wasm_bindgen::Clamped(&rgba),
                        image.width as u32,
                        image.height as u32,
                    ),
                ) && let Ok(ctx) = ctx.dyn_into::<CanvasRenderingContext2d>()
                {
                    let _ = ctx.put_image_data(&data, 0.0, 0.0);
                }
            }
        });
    }
    let onclick = props.onclick.clone().map(|cb| {
        Callback::from(move |e: MouseEvent| {
            if let Some(p) = relative(&e) {
                cb.emit(p)
            }
        })
    });
    let onmousemove = props.onhover.clone().map(|cb| {
        Callback::from(move |e: MouseEvent| {
            if let Some(p) = relative(&e) {
                cb.emit(p)
            }
        })
    });
    html! { <canvas ref={node} id={props.id.clone()} {onclick} {onmousemove} /> }
}

#[derive(Properties)]
pub struct ViewsProps {
    pub analysis: Rc<Analysis>,
    pub layers: usize,
    /// The panels' upscale factor (`nepa::viz::display_scale` of the model).
    pub scale: usize,
    pub query: (usize, usize),
    pub layer: Option<usize>,
    pub head: Option<usize>,
    pub softmax: bool,
    pub dispatch: UseReducerDispatcher<State>,
}

impl PartialEq for ViewsProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.analysis, &other.analysis)
            && (self.scale, self.query, self.layer, self.head, self.softmax)
                == (
                    other.scale,
                    other.query,
                    other.layer,
                    other.head,
                    other.softmax,
                )
    }
}

/// A panel of `nepa::viz::render_panels` as the page keeps it: the picture shared with its
/// canvas (so that re-rendering on hover does not redraw it) and the values with the hover
/// readout.
struct PagePanel {
    id: &'static str,
    title: String,
    image: Rc<RgbImage>,
    colorbar: Option<(String, String)>,
    values: Rc<Vec<f32>>,
}

impl From<Panel> for PagePanel {
    fn from(p: Panel) -> Self {
        Self {
            id: p.id,
            title: p.title,
            image: Rc::new(p.image),
            colorbar: p.colorbar,
            values: Rc::new(p.values),
        }
    }
}

/// Renders a panel with its colour bar; hovering shows the patch value.
fn panel(
    p: &PagePanel,
    grid: Grid,
    onclick: Callback<(f64, f64)>,
    hover: UseStateHandle<String>,
) -> Html {
    let onhover = {
        let (id, values) = (p.id, p.values.clone());
        Callback::from(move |(x, y): (f64, f64)| {
            let (r, c) = (
                (y * grid.rows as f64) as usize,
                (x * grid.cols as f64) as usize,
            );
            if let Some(v) = values.get(r * grid.cols + c) {
                hover.set(format!("{id} patch ({r}, {c}): {v:.4}"));
            }
        })
    };
    html! {
        <figure class="panel">
            <figcaption>{ p.title.clone() }</figcaption>
            <Canvas id={AttrValue::from(p.id)} image={p.image.clone()} onclick={Some(onclick)} onhover={Some(onhover)} />
            if let Some((low, high)) = &p.colorbar {
                <div class="colorbar"><span>{ low.clone() }</span><span class="jet"></span><span>{ high.clone() }</span></div>
            }
        </figure>
    }
}

/// The memo key of the rendered panels: the analysis by identity, the selection and the scale.
struct PanelsKey(Rc<Analysis>, Selection, usize);

impl PartialEq for PanelsKey {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0) && (self.1, self.2) == (other.1, other.2)
    }
}

/// The panels of one selection plus the numbers of the hint line.
struct Rendered {
    panels: Vec<PagePanel>,
    query_token: usize,
    cls_attention: f32,
}

#[function_component(Views)]
pub fn views(props: &ViewsProps) -> Html {
    let hover = use_state(String::new);
    let a = &props.analysis;
    let grid = a.maps.grid();
    let (row, col) = (
        props.query.0.min(grid.rows - 1),
        props.query.1.min(grid.cols - 1),
    );
    let selection = Selection {
        query: (row, col),
        layer: props.layer.map_or(LayerSel::All, LayerSel::Layer),
        head: props.head.map_or(HeadSel::Mean, HeadSel::Head),
        similarity: if props.softmax {
            SimilarityMode::Softmax
        } else {
            SimilarityMode::Raw
        },
    };
    // Hovering re-renders this component on every mouse move: render the panels once per
    // analysis and selection.
    let rendered = use_memo(PanelsKey(a.clone(), selection, props.scale), |key| {
        render_panels(&key.0, &key.1, key.2)
            .map(|p| Rendered {
                query_token: p.query_token,
                cls_attention: p.cls_attention,
                panels: p.panels.into_iter().map(PagePanel::from).collect(),
            })
            .map_err(|e| e.to_string())
    });
    let rendered = match &*rendered {
        Ok(r) => r,
        Err(e) => return html! { <p class="error">{ e.clone() }</p> },
    };
    let onclick = {
        let dispatch = props.dispatch.clone();
        Callback::from(move |(x, y): (f64, f64)| {
            dispatch.dispatch(Action::Query(
                (y * grid.rows as f64) as usize,
                (x * grid.cols as f64) as usize,
            ))
        })
    };
    let query = rendered.query_token;
    html! {
        <section id="views" class="views">
            <p class="hint">{ format!("Query patch ({row}, {col}) = token {query} (red); ẑ there predicts the next patch (magenta). Click any map to move the query. CLS attention weight: {:.3}", rendered.cls_attention) }</p>
            { controls(props, a.maps.dims().heads) }
            <div class="panels">
                { for rendered.panels.iter().map(|p| panel(p, grid, onclick.clone(), hover.clone())) }
            </div>
            <p id="hover" class="hover">{ (*hover).clone() }</p>
        </section>
    }
}

/// The layer slider, the head menu and the similarity-mode button.
fn controls(props: &ViewsProps, heads: usize) -> Html {
    let layer_value = props.layer.map_or(props.layers, |l| l);
    let dispatch = props.dispatch.clone();
    let on_layer = Callback::from(move |e: InputEvent| {
        let input: HtmlInputElement = e.target_unchecked_into();
        let v: usize = input.value().parse().unwrap_or(0);
        dispatch.dispatch(Action::Layer(
            (v < input.max().parse().unwrap_or(0)).then_some(v),
        ));
    });
    let dispatch = props.dispatch.clone();
    let on_head = Callback::from(move |e: Event| {
        let input: web_sys::HtmlSelectElement = e.target_unchecked_into();
        dispatch.dispatch(Action::Head(input.value().parse().ok()));
    });
    let dispatch = props.dispatch.clone();
    let softmax = props.softmax;
    let on_toggle = Callback::from(move |_| dispatch.dispatch(Action::Softmax(!softmax)));
    html! {
        <div class="controls">
            <label>{ format!("layer: {}", props.layer.map_or("mean of layers".to_string(), |l| l.to_string())) }
                <input id="layer" type="range" min="0" max={props.layers.to_string()} value={layer_value.to_string()} oninput={on_layer} />
            </label>
            <label>{ "head: " }
                <select id="head" onchange={on_head}>
                    <option value="mean" selected={props.head.is_none()}>{ "mean of heads" }</option>
                    { for (0..heads).map(|h| html! { <option value={h.to_string()} selected={props.head == Some(h)}>{ format!("head {h}") }</option> }) }
                </select>
            </label>
            <button id="similarity-mode" onclick={on_toggle}>{ if props.softmax { "similarity: softmax/γ (paper)" } else { "similarity: raw cosine" } }</button>
        </div>
    }
}
