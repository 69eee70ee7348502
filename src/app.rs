//! The page: device status, model loading, image gallery and the interactive NEPA views.

use std::rc::Rc;

use nepa::image::{RgbImage, decode, resize_bilinear};
use nepa::viz::{
    self, HeadSel, LayerSel, RgbBuffer, attention_display, heatmap_panel, similarity_display,
};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlInputElement, ImageData};
use yew::prelude::*;

use crate::engine::{Analysis, LoadedModel, analyse, load_checkpoint, untrained_model};
use crate::gpu::{ComputeDevice, init_device};

/// Bundled CC0 / public-domain photos (static/photos/LICENSES.txt).
const BUNDLED: [&str; 3] = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"];
/// Side of the rendered panels in pixels.
const PANEL: usize = 256;

pub struct Upload {
    pub name: String,
    pub image: RgbImage,
}

#[derive(Default)]
pub struct State {
    device: Option<Rc<ComputeDevice>>,
    model: Option<Rc<LoadedModel>>,
    model_version: u32,
    images: Vec<Rc<Upload>>,
    selected: Option<usize>,
    analysis: Option<Rc<Analysis>>,
    query: (usize, usize),
    layer: Option<usize>,
    head: Option<usize>,
    softmax: bool,
    errors: Vec<String>,
    busy: Option<String>,
    download: Option<(u64, u64)>,
    first_ms: Option<f64>,
    last_ms: Option<f64>,
}

pub enum Action {
    DeviceReady(Rc<ComputeDevice>),
    ModelLoaded(Rc<LoadedModel>),
    AddImages(Vec<Rc<Upload>>),
    Select(usize),
    Analysed(Rc<Analysis>),
    Query(usize, usize),
    Layer(Option<usize>),
    Head(Option<usize>),
    Softmax(bool),
    Error(String),
    DismissErrors,
    Busy(Option<String>),
    /// Bytes received and expected of a download in progress (`None` when done).
    Download(Option<(u64, u64)>),
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = Rc::unwrap_or_clone(self);
        match action {
            Action::DeviceReady(d) => s.device = Some(d),
            Action::ModelLoaded(m) => {
                s.model = Some(m);
                s.model_version += 1;
                s.analysis = None;
                s.query = (0, 0);
                s.layer = None;
                s.head = None;
            }
            Action::AddImages(mut images) => {
                let first_new = s.images.len();
                s.images.append(&mut images);
                if s.selected.is_none() && s.images.len() > first_new {
                    s.selected = Some(first_new);
                }
            }
            Action::Select(i) => {
                if s.selected != Some(i) {
                    s.selected = Some(i);
                    s.analysis = None;
                }
            }
            Action::Analysed(a) => {
                if s.first_ms.is_none() {
                    s.first_ms = Some(a.forward_ms);
                } else {
                    s.last_ms = Some(a.forward_ms);
                }
                s.analysis = Some(a);
                s.busy = None;
            }
            Action::Query(r, c) => s.query = (r, c),
            Action::Layer(l) => s.layer = l,
            Action::Head(h) => s.head = h,
            Action::Softmax(b) => s.softmax = b,
            Action::Error(e) => {
                s.errors.push(e);
                s.busy = None;
            }
            Action::DismissErrors => s.errors.clear(),
            Action::Busy(b) => s.busy = b,
            Action::Download(d) => s.download = d,
        }
        Rc::new(s)
    }
}

impl Clone for State {
    fn clone(&self) -> Self {
        Self {
            device: self.device.clone(),
            model: self.model.clone(),
            model_version: self.model_version,
            images: self.images.clone(),
            selected: self.selected,
            analysis: self.analysis.clone(),
            query: self.query,
            layer: self.layer,
            head: self.head,
            softmax: self.softmax,
            errors: self.errors.clone(),
            busy: self.busy.clone(),
            download: self.download,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
        }
    }
}

/// Reads a browser `File` into bytes.
async fn file_bytes(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| format!("{}: cannot read the file ({e:?})", file.name()))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Fetches a URL's bytes (bundled photos, checkpoints by URL).
async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(|e| format!("{url}: download failed ({e:?})"))?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| "not a response")?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Fetches a URL while reporting `(received, total)` bytes (total from Content-Length, 0 if
/// unknown) after every chunk, reading the body as a stream.
async fn fetch_with_progress(url: &str, progress: impl Fn(u64, u64)) -> Result<Vec<u8>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(|e| format!("{url}: download failed ({e:?})"))?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| "not a response")?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let total: u64 = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let Some(body) = response.body() else {
        return fetch_bytes(url).await;
    };
    let reader: web_sys::ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|_| "the response body cannot be streamed")?;
    let mut bytes = Vec::with_capacity(total as usize);
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("{url}: download interrupted ({e:?})"))?;
        let done = js_sys::Reflect::get(&chunk, &"done".into())
            .map(|d| d.is_truthy())
            .unwrap_or(true);
        if done {
            break;
        }
        let value = js_sys::Reflect::get(&chunk, &"value".into()).map_err(|e| format!("{e:?}"))?;
        bytes.extend(js_sys::Uint8Array::new(&value).to_vec());
        progress(bytes.len() as u64, total);
    }
    Ok(bytes)
}

/// A safetensors file starts with a little-endian header length and a JSON object.
fn looks_like_safetensors(name: &str, bytes: &[u8]) -> bool {
    name.ends_with(".safetensors")
        || (bytes.len() > 9 && bytes[8] == b'{' && bytes[..8].iter().rev().take(4).all(|&b| b == 0))
}

/// Decodes uploads: images go to the gallery, safetensors files load as the model;
/// anything else is an error naming the file. Nothing already loaded is lost.
fn ingest(
    dispatch: UseReducerDispatcher<State>,
    device: Option<Rc<ComputeDevice>>,
    files: Vec<(String, Vec<u8>)>,
) {
    let mut images = vec![];
    for (name, bytes) in files {
        if looks_like_safetensors(&name, &bytes) {
            match &device {
                Some(d) => match load_checkpoint(&bytes, &name, &d.device) {
                    Ok(m) => dispatch.dispatch(Action::ModelLoaded(Rc::new(m))),
                    Err(e) => {
                        dispatch.dispatch(Action::Error(format!("checkpoint does not fit: {e}")))
                    }
                },
                None => dispatch.dispatch(Action::Error(format!(
                    "{name}: the compute device is not ready yet"
                ))),
            }
            continue;
        }
        match decode(&bytes) {
            Ok(image) => images.push(Rc::new(Upload { name, image })),
            Err(e) => dispatch.dispatch(Action::Error(format!("{name}: {e}"))),
        }
    }
    if !images.is_empty() {
        dispatch.dispatch(Action::AddImages(images));
    }
}

/// Reads picked or dropped files in the background, then ingests them.
fn read_and_ingest(
    files: Vec<web_sys::File>,
    dispatch: UseReducerDispatcher<State>,
    device: Option<Rc<ComputeDevice>>,
) {
    spawn_local(async move {
        let mut read = vec![];
        for file in files {
            match file_bytes(&file).await {
                Ok(bytes) => read.push((file.name(), bytes)),
                Err(e) => dispatch.dispatch(Action::Error(e)),
            }
        }
        ingest(dispatch, device, read);
    });
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(State::default);

    // Start-up: the device (WebGPU, else Flex), the default model and the bundled photos.
    {
        let dispatch = state.dispatcher();
        use_effect_with((), move |_| {
            spawn_local(async move {
                let device = Rc::new(init_device().await);
                dispatch.dispatch(Action::DeviceReady(device.clone()));
                match untrained_model(&device.device) {
                    Ok(m) => dispatch.dispatch(Action::ModelLoaded(Rc::new(m))),
                    Err(e) => dispatch.dispatch(Action::Error(e)),
                }
                let mut files = vec![];
                for name in BUNDLED {
                    match fetch_bytes(&format!("photos/{name}")).await {
                        Ok(bytes) => files.push((name.to_string(), bytes)),
                        Err(e) => dispatch.dispatch(Action::Error(e)),
                    }
                }
                ingest(dispatch, Some(device), files);
            });
        });
    }

    // Analyse the selected image whenever it or the model changes.
    {
        let dispatch = state.dispatcher();
        let model = state.model.clone();
        let device = state.device.clone();
        let image = state.selected.and_then(|i| state.images.get(i).cloned());
        use_effect_with((state.model_version, state.selected), move |_| {
            if let (Some(model), Some(device), Some(upload)) = (model, device, image) {
                dispatch.dispatch(Action::Busy(Some(format!(
                    "running the model on {}…",
                    upload.name
                ))));
                spawn_local(async move {
                    match analyse(&model, &upload.image, &device.device).await {
                        Ok(a) => dispatch.dispatch(Action::Analysed(Rc::new(a))),
                        Err(e) => dispatch.dispatch(Action::Error(e)),
                    }
                });
            }
        });
    }

    let on_files = {
        let dispatch = state.dispatcher();
        let device = state.device.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            let Some(list) = input.files() else { return };
            let files: Vec<web_sys::File> =
                (0..list.length()).filter_map(|i| list.get(i)).collect();
            input.set_value("");
            read_and_ingest(files, dispatch.clone(), device.clone());
        })
    };
    let on_drop = {
        let dispatch = state.dispatcher();
        let device = state.device.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            let Some(list) = e.data_transfer().and_then(|d| d.files()) else {
                return;
            };
            let files: Vec<web_sys::File> =
                (0..list.length()).filter_map(|i| list.get(i)).collect();
            read_and_ingest(files, dispatch.clone(), device.clone());
        })
    };
    let url_ref = use_node_ref();
    let on_url = {
        let dispatch = state.dispatcher();
        let device = state.device.clone();
        let url_ref = url_ref.clone();
        Callback::from(move |_| {
            let Some(input) = url_ref.cast::<HtmlInputElement>() else {
                return;
            };
            let url = input.value();
            let dispatch = dispatch.clone();
            let device = device.clone();
            dispatch.dispatch(Action::Busy(Some(format!("downloading {url}…"))));
            spawn_local(async move {
                let report = {
                    let dispatch = dispatch.clone();
                    move |received: u64, total: u64| {
                        dispatch.dispatch(Action::Download(Some((received, total))))
                    }
                };
                let fetched = fetch_with_progress(&url, report).await;
                dispatch.dispatch(Action::Download(None));
                match fetched {
                    Ok(bytes) => {
                        let name = url
                            .rsplit('/')
                            .next()
                            .unwrap_or("model.safetensors")
                            .to_string();
                        let name = if name.ends_with(".safetensors") {
                            name
                        } else {
                            format!("{name}.safetensors")
                        };
                        dispatch.dispatch(Action::Busy(Some("parsing the checkpoint…".into())));
                        ingest(dispatch.clone(), device, vec![(name, bytes)]);
                        dispatch.dispatch(Action::Busy(None));
                    }
                    Err(e) => dispatch.dispatch(Action::Error(e)),
                }
            });
        })
    };

    let device_line = match &state.device {
        None => html! { <span id="device">{ "starting the compute device…" }</span> },
        Some(d) => html! {
            <span id="device">
                { format!("Compute: {} — {}", d.backend, d.adapter) }
                if let Some(reason) = &d.fallback_reason {
                    <span class="warning">{ format!(" (CPU fallback: {reason})") }</span>
                }
            </span>
        },
    };
    let model_line = match &state.model {
        None => html! { <span>{ "no model" }</span> },
        Some(m) => html! {
            <span id="model">
                if !m.trained { <span class="badge">{ "untrained" }</span>{ " " } }
                { m.label.clone() }
            </span>
        },
    };
    let timing = html! {
        <span id="latency">
            if let Some(first) = state.first_ms { { format!("first run (incl. shader compilation): {first:.0} ms") } }
            if let Some(last) = state.last_ms { { format!(" · warm: {last:.0} ms") } }
        </span>
    };

    html! {
        <main ondragover={Callback::from(|e: DragEvent| e.prevent_default())} ondrop={on_drop}>
            <header>
                <h1>{ "NEPA — next-embedding prediction" }</h1>
                <p class="status">{ device_line }</p>
                <p class="status">{ model_line }</p>
                <p class="status">{ timing }</p>
            </header>
            if !state.errors.is_empty() {
                <div id="errors" class="errors">
                    { for state.errors.iter().map(|e| html! { <p class="error">{ e }</p> }) }
                    <button onclick={ let d = state.dispatcher(); Callback::from(move |_| d.dispatch(Action::DismissErrors)) }>{ "dismiss" }</button>
                </div>
            }
            <section class="inputs">
                <label class="button">{ "Add images or a .safetensors model…" }
                    <input id="file-input" type="file" multiple=true onchange={on_files} />
                </label>
                <span>{ "or drop files anywhere · model URL: " }</span>
                <input ref={url_ref} id="model-url" type="url" placeholder="https://…/model.safetensors" size="40" />
                <button onclick={on_url}>{ "load" }</button>
                if let Some(busy) = &state.busy { <span id="busy" class="busy">{ busy.clone() }</span> }
                if let Some((received, total)) = state.download {
                    <progress id="download" max={total.max(received).max(1).to_string()} value={received.to_string()} />
                    <span>{ format!("{:.1} / {} MB", received as f64 / 1e6, if total > 0 { format!("{:.1}", total as f64 / 1e6) } else { "?".into() }) }</span>
                }
            </section>
            <section id="gallery" class="gallery">
                { for state.images.iter().enumerate().map(|(i, up)| {
                    let d = state.dispatcher();
                    let selected = state.selected == Some(i);
                    html! {
                        <button class={classes!("thumb", selected.then_some("selected"))} title={up.name.clone()}
                            onclick={Callback::from(move |_| d.dispatch(Action::Select(i)))}>
                            <Thumbnail image={up.clone()} />
                            <span>{ up.name.clone() }</span>
                        </button>
                    }
                }) }
            </section>
            if let (Some(analysis), Some(model)) = (&state.analysis, &state.model) {
                <Views analysis={analysis.clone()} layers={model.config.num_hidden_layers}
                    query={state.query} layer={state.layer} head={state.head} softmax={state.softmax}
                    dispatch={state.dispatcher()} />
            }
        </main>
    }
}

#[derive(Properties)]
struct ThumbnailProps {
    image: Rc<Upload>,
}

impl PartialEq for ThumbnailProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.image, &other.image)
    }
}

#[function_component(Thumbnail)]
fn thumbnail(props: &ThumbnailProps) -> Html {
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
struct CanvasProps {
    image: Rc<RgbBuffer>,
    #[prop_or_default]
    id: Option<AttrValue>,
    #[prop_or_default]
    onclick: Option<Callback<(f64, f64)>>,
    #[prop_or_default]
    onhover: Option<Callback<(f64, f64)>>,
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
fn canvas(props: &CanvasProps) -> Html {
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
struct ViewsProps {
    analysis: Rc<Analysis>,
    layers: usize,
    query: (usize, usize),
    layer: Option<usize>,
    head: Option<usize>,
    softmax: bool,
    dispatch: UseReducerDispatcher<State>,
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
fn views(props: &ViewsProps) -> Html {
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
            title: "(d) predictability cos(ẑ_{t−1}, z_t)".into(),
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
