//! The Explore view's components: thumbnails, canvases and the five interactive NEPA maps.

use std::rc::Rc;

use nepa::image::resize_bilinear;
use nepa::viz::{
    self, HeadSel, LayerSel, RgbBuffer, attention_display, heatmap_panel, similarity_display,
};
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlInputElement, ImageData};
use yew::prelude::*;

use crate::app::{Action, State, Upload};
use crate::engine::Analysis;

/// Side of the rendered panels in pixels.
const PANEL: usize = 256;

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
    let small = resize_bilinear(img, w, h);
    html! { <Canvas image={Rc::new(RgbBuffer { width: w, height: h, data: small.pixels })} /> }
}

#[derive(Properties)]
pub struct CanvasProps {
    pub image: Rc<RgbBuffer>,
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

/// Draws an RGB buffer into a `<canvas>`.
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
    pub query: (usize, usize),
    pub layer: Option<usize>,
    pub head: Option<usize>,
    pub softmax: bool,
    pub dispatch: UseReducerDispatcher<State>,
}

impl PartialEq for ViewsProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.analysis, &other.analysis)
            && (self.query, self.layer, self.head, self.softmax)
                == (other.query, other.layer, other.head, other.softmax)
    }
}

/// One map: its canvas id, title, picture, colour-bar ends and per-patch values (for the
/// hover readout).
struct Panel {
    id: &'static str,
    title: String,
    image: RgbBuffer,
    scale: (&'static str, String),
    values: Vec<f32>,
}

/// Renders a panel with its colour bar; hovering shows the patch value.
fn panel(
    p: Panel,
    grid: viz::Grid,
    onclick: Callback<(f64, f64)>,
    hover: UseStateHandle<String>,
) -> Html {
    let Panel {
        id,
        title,
        image,
        scale,
        values,
    } = p;
    let image = Rc::new(image);
    let onhover = {
        let hover = hover.clone();
        Callback::from(move |(x, y): (f64, f64)| {
            let (r, c) = (
                (y * grid.rows as f64) as usize,
                (x * grid.cols as f64) as usize,
            );
            if let Some(v) = values.get(r * grid.cols + c) {
                hover.set(format!(
                    "{title_short} patch ({r}, {c}): {v:.4}",
                    title_short = id
                ));
            }
        })
    };
    html! {
        <figure class="panel">
            <figcaption>{ title }</figcaption>
            <Canvas id={AttrValue::from(id)} image={image} onclick={Some(onclick)} onhover={Some(onhover)} />
            if !scale.1.is_empty() {
                <div class="colorbar"><span>{ scale.0 }</span><span class="jet"></span><span>{ scale.1 }</span></div>
            }
        </figure>
    }
}

/// An analysis compared by identity, as a memo key.
struct AnalysisKey(Rc<Analysis>);

impl PartialEq for AnalysisKey {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

#[function_component(Views)]
pub fn views(props: &ViewsProps) -> Html {
    let hover = use_state(String::new);
    let a = &props.analysis;
    let grid = a.maps.grid();
    let (row, col) = props.query;
    let query = grid.token_of(row.min(grid.rows - 1), col.min(grid.cols - 1));
    // The enlarged image and the PCA depend only on the analysis; hovering re-renders this
    // component on every mouse move, so compute them once per analysis.
    let per_analysis = use_memo(AnalysisKey(a.clone()), |key| {
        let a = &key.0;
        let longest = a.display.width.max(a.display.height);
        let big = resize_bilinear(
            &a.display,
            PANEL * a.display.width / longest,
            PANEL * a.display.height / longest,
        );
        let base = RgbBuffer {
            width: big.width,
            height: big.height,
            data: big.pixels,
        };
        (base, a.maps.embedding_pca_rgb())
    });
    let (base, (pca_z, pca_z_hat)) = &*per_analysis;
    let base = base.clone();
    let onclick = {
        let dispatch = props.dispatch.clone();
        Callback::from(move |(x, y): (f64, f64)| {
            dispatch.dispatch(Action::Query(
                (y * grid.rows as f64) as usize,
                (x * grid.cols as f64) as usize,
            ))
        })
    };
    let layers = props.layer.map_or(LayerSel::All, LayerSel::Layer);
    let heads = props.head.map_or(HeadSel::Mean, HeadSel::Head);
    let attention = match a.maps.attention_map(query, layers, heads) {
        Ok(m) => m,
        Err(e) => return html! { <p class="error">{ e.to_string() }</p> },
    };
    let similarity = a.maps.similarity_map(query).unwrap_or_default();
    let predictability = a.maps.predictability_map();
    let cell = base.width / grid.cols;

    let mut query_view = base.clone();
    viz::outline_patch(
        &mut query_view,
        grid,
        (row, col),
        viz::QUERY_COLOR,
        viz::OUTLINE_THICKNESS,
    );
    if let Some(next) = grid.next_patch(query) {
        viz::outline_patch(
            &mut query_view,
            grid,
            next,
            viz::NEXT_COLOR,
            viz::OUTLINE_THICKNESS,
        );
    }
    let similarity_shown = if props.softmax {
        similarity_display(&similarity)
    } else {
        similarity.iter().map(|c| (c + 1.0) / 2.0).collect()
    };
    let predictability_shown: Vec<f32> = predictability.iter().map(|c| (c + 1.0) / 2.0).collect();
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
    let max_attention = attention.patches.iter().cloned().fold(0.0, f32::max);
    let panels = vec![
        Panel {
            id: "query",
            title: "(a) query and next patch".into(),
            image: query_view,
            scale: ("", String::new()),
            values: vec![],
        },
        Panel {
            id: "attention",
            title: "(b) attention (γ 0.25; zeros = causal mask)".into(),
            image: heatmap_panel(
                &base,
                grid,
                &attention_display(&attention.patches),
                Some(query),
            ),
            scale: ("0", format!("{max_attention:.3}")),
            values: attention.patches.clone(),
        },
        Panel {
            id: "similarity",
            title: format!(
                "(c) cos(ẑ_t, z_j) — {}",
                if props.softmax {
                    "softmax, γ 10 (paper)"
                } else {
                    "raw"
                }
            ),
            image: heatmap_panel(&base, grid, &similarity_shown, Some(query)),
            scale: if props.softmax {
                ("low", "high".into())
            } else {
                ("−1", "1".into())
            },
            values: similarity,
        },
        Panel {
            id: "predictability",
            // The mean is what "Adapt to my images" should raise.
            title: format!(
                "(d) predictability cos(ẑ_{{t−1}}, z_t) — mean {:.3}",
                predictability.iter().sum::<f32>() / predictability.len().max(1) as f32
            ),
            image: heatmap_panel(&base, grid, &predictability_shown, None),
            scale: ("−1", "1".into()),
            values: predictability,
        },
        Panel {
            id: "pca-z",
            title: "(e) PCA of z (shared basis)".into(),
            image: viz::upsample_nearest(pca_z, grid, cell),
            scale: ("", String::new()),
            values: vec![],
        },
        Panel {
            id: "pca-z-hat",
            title: "(e) PCA of ẑ (same basis)".into(),
            image: viz::upsample_nearest(pca_z_hat, grid, cell),
            scale: ("", String::new()),
            values: vec![],
        },
    ];

    html! {
        <section id="views" class="views">
            <p class="hint">{ format!("Query patch ({row}, {col}) = token {query} (red); ẑ there predicts the next patch (magenta). Click any map to move the query. CLS attention weight: {:.3}", attention.cls) }</p>
            <div class="controls">
                <label>{ format!("layer: {}", props.layer.map_or("mean of layers".to_string(), |l| l.to_string())) }
                    <input id="layer" type="range" min="0" max={props.layers.to_string()} value={layer_value.to_string()} oninput={on_layer} />
                </label>
                <label>{ "head: " }
                    <select id="head" onchange={on_head}>
                        <option value="mean" selected={props.head.is_none()}>{ "mean of heads" }</option>
                        { for (0..a.heads).map(|h| html! { <option value={h.to_string()} selected={props.head == Some(h)}>{ format!("head {h}") }</option> }) }
                    </select>
                </label>
                <button id="similarity-mode" onclick={on_toggle}>{ if props.softmax { "similarity: softmax/γ (paper)" } else { "similarity: raw cosine" } }</button>
            </div>
            <div class="panels">
                { for panels.into_iter().map(|p| panel(p, grid, onclick.clone(), hover.clone())) }
            </div>
            <p id="hover" class="hover">{ (*hover).clone() }</p>
        </section>
    }
}
