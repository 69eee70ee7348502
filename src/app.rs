//! The page: device status, model loading, image gallery and the interactive NEPA views.

use std::rc::Rc;

use burn::module::Module;
use nepa::StepOutcome;
use nepa::data::ImageSet;
use nepa::image::{RgbImage, decode_with_warnings};
use nepa::pretrain::Pretrainer;
use nepa::viz::{Analysis, analyse, display_scale};
use wasm_bindgen::closure::Closure;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::compare_page::ComparePage;
use crate::download::{self, Cancel, fetch_bytes, fetch_with_progress};
use crate::engine::{DEMO_CHECKPOINT, LoadedModel, load_checkpoint, untrained_model};
use crate::finetune_page::FinetunePage;
use crate::gpu::{self, ComputeDevice, init_device};
use crate::platform;
use crate::views::{Thumbnail, Views};

/// Bundled CC0 / public-domain photos (static/photos/LICENSES.txt).
const BUNDLED: [&str; 3] = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tab {
    #[default]
    Explore,
    Finetune,
    Compare,
}

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
    /// The Cancel button's handle while a download runs.
    download_cancel: Option<Rc<Cancel>>,
    /// Size of a checkpoint being parsed and uploaded to the device.
    parsing: Option<u64>,
    first_ms: Option<f64>,
    last_ms: Option<f64>,
    /// Why the GPU device was lost, until the user picks reload or CPU.
    device_lost: Option<String>,
    tab: Tab,
    /// "Adapt to my images" progress line.
    adapt_status: Option<String>,
    adapting: bool,
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
    /// A download started (its Cancel handle) or ended (`None`).
    DownloadCancel(Option<Rc<Cancel>>),
    Parsing(Option<u64>),
    /// The backbone changed in place (adaptation): keep the query and view settings.
    ModelUpdated(Rc<LoadedModel>),
    DeviceLost(String),
    Tab(Tab),
    Adapt(Option<String>, bool),
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
            Action::DownloadCancel(c) => s.download_cancel = c,
            Action::Parsing(p) => s.parsing = p,
            Action::ModelUpdated(m) => {
                s.model = Some(m);
                s.model_version += 1;
            }
            Action::DeviceLost(reason) => {
                s.device_lost = Some(reason);
                s.busy = None;
            }
            Action::Tab(t) => s.tab = t,
            Action::Adapt(status, running) => {
                s.adapt_status = status;
                s.adapting = running;
            }
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
            download_cancel: self.download_cancel.clone(),
            parsing: self.parsing,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
            device_lost: self.device_lost.clone(),
            tab: self.tab,
            adapt_status: self.adapt_status.clone(),
            adapting: self.adapting,
        }
    }
}

/// Decodes an uploaded image. Damage the decoder worked around (a truncated JPEG, its missing
/// part grey) comes back as warnings naming the file: the image is still usable, but the user
/// must know it is not what the file was meant to hold.
pub(crate) fn decode_upload(name: &str, bytes: &[u8]) -> Result<(RgbImage, Vec<String>), String> {
    let (image, warnings) = decode_with_warnings(bytes).map_err(|e| format!("{name}: {e}"))?;
    let warnings = warnings
        .into_iter()
        .map(|w| format!("{name}: {w} (the image was added)"))
        .collect();
    Ok((image, warnings))
}

/// Reads a browser `File` into bytes. Files over the download cap are refused before reading:
/// copying them into wasm memory could fail to allocate, which aborts the page.
pub(crate) async fn file_bytes(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let cap = download::MAX_DOWNLOAD_BYTES;
    if file.size() > cap as f64 {
        return Err(format!(
            "{}: the file is too large ({:.1} MB); the page accepts at most {} GiB (the \
             browser's wasm32 memory, 4 GiB at most, must also hold the parsed model)",
            file.name(),
            file.size() / 1e6,
            cap >> 30
        ));
    }
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| format!("{}: cannot read the file ({e:?})", file.name()))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Downloads a checkpoint with the progress bar and the Cancel button shown meanwhile.
async fn download_checkpoint(
    dispatch: &UseReducerDispatcher<State>,
    url: &str,
) -> Result<Vec<u8>, String> {
    let cancel = Rc::new(Cancel::new());
    dispatch.dispatch(Action::DownloadCancel(Some(cancel.clone())));
    let progress = {
        let dispatch = dispatch.clone();
        move |received: u64, total: u64| {
            dispatch.dispatch(Action::Download(Some((received, total))))
        }
    };
    let fetched = fetch_with_progress(url, cancel, progress).await;
    dispatch.dispatch(Action::Download(None));
    dispatch.dispatch(Action::DownloadCancel(None));
    fetched
}

/// A safetensors file starts with a little-endian header length and a JSON object.
fn looks_like_safetensors(name: &str, bytes: &[u8]) -> bool {
    name.ends_with(".safetensors")
        || (bytes.len() > 9 && bytes[8] == b'{' && bytes[..8].iter().rev().take(4).all(|&b| b == 0))
}

/// Parses a checkpoint and uploads it to the device, with the parse shown as a stage of
/// its own (the page paints the indicator before the synchronous parse starts).
async fn load_with_indicator(
    dispatch: &UseReducerDispatcher<State>,
    bytes: Vec<u8>,
    name: &str,
    device: &ComputeDevice,
) -> Result<LoadedModel, String> {
    dispatch.dispatch(Action::Parsing(Some(bytes.len() as u64)));
    platform::sleep(16).await;
    let loaded = load_checkpoint(Rc::new(bytes), name, &device.device);
    dispatch.dispatch(Action::Parsing(None));
    loaded
}

/// Decodes uploads: images go to the gallery, safetensors files load as the model;
/// anything else is an error naming the file. Nothing already loaded is lost.
async fn ingest(
    dispatch: UseReducerDispatcher<State>,
    device: Option<Rc<ComputeDevice>>,
    files: Vec<(String, Vec<u8>)>,
) {
    let mut images = vec![];
    for (name, bytes) in files {
        if looks_like_safetensors(&name, &bytes) {
            match &device {
                Some(d) => match load_with_indicator(&dispatch, bytes, &name, d).await {
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
        match decode_upload(&name, &bytes) {
            Ok((image, warnings)) => {
                for warning in warnings {
                    dispatch.dispatch(Action::Error(warning));
                }
                images.push(Rc::new(Upload { name, image }));
            }
            Err(e) => dispatch.dispatch(Action::Error(e)),
        }
    }
    if !images.is_empty() {
        dispatch.dispatch(Action::AddImages(images));
    }
}

/// The files of a picker or a drop, in order.
pub(crate) fn file_list(list: Option<web_sys::FileList>) -> Vec<web_sys::File> {
    list.map(|list| (0..list.length()).filter_map(|i| list.get(i)).collect())
        .unwrap_or_default()
}

/// The files a file input's change event carries; the input is cleared so that picking the
/// same files again fires another change.
pub(crate) fn take_input_files(e: &Event) -> Vec<web_sys::File> {
    let input: HtmlInputElement = e.target_unchecked_into();
    let files = file_list(input.files());
    input.set_value("");
    files
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
        ingest(dispatch, device, read).await;
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
                let lost = dispatch.clone();
                platform::expose(
                    gpu::DEVICE_LOST_HOOK,
                    Closure::new(move |reason: wasm_bindgen::JsValue| {
                        lost.dispatch(Action::DeviceLost(
                            reason
                                .as_string()
                                .unwrap_or_else(|| "unknown reason".into()),
                        ))
                    }),
                );
                let device = Rc::new(init_device().await);
                dispatch.dispatch(Action::DeviceReady(device.clone()));
                // The bundled pretrained demo model; the random init if it cannot be had.
                let fetched = download_checkpoint(&dispatch, DEMO_CHECKPOINT).await;
                let demo = match fetched {
                    Ok(bytes) => {
                        load_with_indicator(&dispatch, bytes, DEMO_CHECKPOINT, &device).await
                    }
                    Err(e) => Err(e),
                };
                match demo {
                    Ok(m) => dispatch.dispatch(Action::ModelLoaded(Rc::new(m))),
                    Err(e) => {
                        dispatch.dispatch(Action::Error(format!(
                            "the bundled demo model did not load ({e}); showing an untrained model"
                        )));
                        match untrained_model(&device.device) {
                            Ok(m) => dispatch.dispatch(Action::ModelLoaded(Rc::new(m))),
                            Err(e) => dispatch.dispatch(Action::Error(e)),
                        }
                    }
                }
                let mut files = vec![];
                for name in BUNDLED {
                    match fetch_bytes(&format!("photos/{name}")).await {
                        Ok(bytes) => files.push((name.to_string(), bytes)),
                        Err(e) => dispatch.dispatch(Action::Error(e)),
                    }
                }
                ingest(dispatch, Some(device), files).await;
            });
        });
    }

    // Analyse the selected image whenever it or the model changes.
    {
        let dispatch = state.dispatcher();
        let model = state.model.clone();
        let device = state.device.clone();
        let image = state.selected.and_then(|i| state.images.get(i).cloned());
        let lost = state.device_lost.as_ref().is_some_and(|r| !r.is_empty());
        use_effect_with((state.model_version, state.selected), move |_| {
            if lost {
                return;
            }
            if let (Some(model), Some(device), Some(upload)) = (model, device, image) {
                dispatch.dispatch(Action::Busy(Some(format!(
                    "running the model on {}…",
                    upload.name
                ))));
                spawn_local(async move {
                    match analyse(&model.model, &model.config, &upload.image, &device.device).await
                    {
                        Ok(a) => dispatch.dispatch(Action::Analysed(Rc::new(a))),
                        Err(e) => dispatch.dispatch(Action::Error(e.to_string())),
                    }
                });
            }
        });
    }

    let on_files = {
        let dispatch = state.dispatcher();
        let device = state.device.clone();
        Callback::from(move |e: Event| {
            read_and_ingest(take_input_files(&e), dispatch.clone(), device.clone());
        })
    };
    let on_drop = {
        let dispatch = state.dispatcher();
        let device = state.device.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            let files = file_list(e.data_transfer().and_then(|d| d.files()));
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
                let fetched = download_checkpoint(&dispatch, &url).await;
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
                        ingest(dispatch.clone(), device, vec![(name, bytes)]).await;
                        dispatch.dispatch(Action::Busy(None));
                    }
                    Err(e) => dispatch.dispatch(Action::Error(e)),
                }
            });
        })
    };

    // "Adapt to my images": NEPA steps on the gallery, the maps refreshed as it learns.
    let on_adapt = {
        let dispatch = state.dispatcher();
        let model = state.model.clone();
        let device = state.device.clone();
        let images = state.images.clone();
        let steps_ref = use_node_ref();
        let steps_input = steps_ref.clone();
        (
            Callback::from(move |_| {
                let (Some(model), Some(device)) = (model.clone(), device.clone()) else {
                    return;
                };
                let steps: usize = steps_input
                    .cast::<HtmlInputElement>()
                    .and_then(|i| i.value().parse().ok())
                    .unwrap_or(20)
                    .clamp(1, 1000);
                let images = images.clone();
                let dispatch = dispatch.clone();
                spawn_local(async move {
                    adapt(dispatch, model, device, images, steps).await;
                });
            }),
            steps_ref,
        )
    };
    let on_cpu = {
        let dispatch = state.dispatcher();
        let model = state.model.clone();
        Callback::from(move |_| {
            let cpu = Rc::new(gpu::flex("the GPU device was lost".into()));
            dispatch.dispatch(Action::DeviceReady(cpu.clone()));
            if let Some(model) = &model {
                match model.reload_on(&cpu.device) {
                    Ok(m) => dispatch.dispatch(Action::ModelLoaded(Rc::new(m))),
                    Err(e) => dispatch.dispatch(Action::Error(e)),
                }
            }
            dispatch.dispatch(Action::DeviceLost(String::new()));
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
        None => html! { <span id="model">{ "loading the model…" }</span> },
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
    let tab_button = |tab: Tab, label: &'static str, id: &'static str| {
        let d = state.dispatcher();
        html! {
            <button id={id} class={classes!("tab", (state.tab == tab).then_some("active"))}
                onclick={Callback::from(move |_| d.dispatch(Action::Tab(tab)))}>{ label }</button>
        }
    };
    let device_lost = state.device_lost.as_ref().filter(|r| !r.is_empty());

    html! {
        <main ondragover={Callback::from(|e: DragEvent| e.prevent_default())} ondrop={on_drop}>
            <header>
                <h1>{ "NEPA — next-embedding prediction" }</h1>
                <p class="status">{ device_line }</p>
                <p class="status">{ model_line }</p>
                <p class="status">{ timing }</p>
            </header>
            if let Some(reason) = device_lost {
                <div id="device-lost" class="errors">
                    <p class="error">{ format!("The GPU device was lost ({reason}). Results computed so far are kept; the model must be loaded again.") }</p>
                    <button id="reload" onclick={Callback::from(|_| { if let Some(w) = web_sys::window() { let _ = w.location().reload(); } })}>{ "Reload the page" }</button>
                    { " " }
                    <button id="use-cpu" onclick={on_cpu}>{ "Continue on the CPU" }</button>
                </div>
            }
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
                    <span>{ format!("downloading {:.1} / {} MB", received as f64 / 1e6, if total > 0 { format!("{:.1}", total as f64 / 1e6) } else { "?".into() }) }</span>
                }
                if let Some(cancel) = &state.download_cancel {
                    <button id="cancel-download" onclick={ let c = cancel.clone(); Callback::from(move |_| c.cancel()) }>{ "Cancel" }</button>
                }
                if let Some(size) = state.parsing {
                    <progress id="parse" />
                    <span>{ format!("parsing {:.1} MB and uploading it to the device…", size as f64 / 1e6) }</span>
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
            <nav class="tabs">
                { tab_button(Tab::Explore, "Explore", "tab-explore") }
                { tab_button(Tab::Finetune, "Fine-tune", "tab-finetune") }
                { tab_button(Tab::Compare, "Compare", "tab-compare") }
            </nav>
            <div hidden={state.tab != Tab::Explore}>
                <section class="adapt">
                    <button id="adapt" disabled={state.adapting || state.images.is_empty() || state.model.is_none()} onclick={on_adapt.0}>{ "Adapt to my images" }</button>
                    <label>{ " NEPA steps: " }<input ref={on_adapt.1} id="adapt-steps" type="number" min="1" max="1000" value="20" size="4" /></label>
                    <span class="note">{ " continues next-embedding pretraining on the gallery (random crops); the maps update as it learns" }</span>
                    if let Some(status) = &state.adapt_status { <p id="adapt-status" class="busy">{ status.clone() }</p> }
                </section>
                if let (Some(analysis), Some(model)) = (&state.analysis, &state.model) {
                    <Views analysis={analysis.clone()} layers={model.config.num_hidden_layers} scale={display_scale(&model.config)}
                        query={state.query} layer={state.layer} head={state.head} softmax={state.softmax}
                        dispatch={state.dispatcher()} />
                }
            </div>
            if let (Some(device), Some(model)) = (&state.device, &state.model) {
                <div hidden={state.tab != Tab::Finetune}>
                    <FinetunePage device={device.clone()} model={model.clone()} />
                </div>
                <div hidden={state.tab != Tab::Compare}>
                    <ComparePage device={device.clone()} />
                </div>
            }
        </main>
    }
}

/// Runs `steps` NEPA pretraining steps on the gallery, replacing the shown model every few
/// steps so the predictability map follows the learning.
async fn adapt(
    dispatch: UseReducerDispatcher<State>,
    model: Rc<LoadedModel>,
    device: Rc<ComputeDevice>,
    images: Vec<Rc<Upload>>,
    steps: usize,
) {
    const REFRESH_EVERY: usize = 5;
    if images.is_empty() {
        dispatch.dispatch(Action::Error("add images to the gallery first".into()));
        return;
    }
    dispatch.dispatch(Action::Adapt(Some("adapting: starting…".into()), true));
    let gallery = ImageSet {
        images: images.iter().map(|u| u.image.clone()).collect(),
        source: "the gallery".into(),
        ..ImageSet::default()
    };
    let autodiff = device.device.clone().autodiff();
    // The crate's pretraining loop, as `nepa pretrain` runs it, with the adaptation preset.
    let (mut trainer, sampler) =
        match Pretrainer::adaptation(&model.model, &model.config, gallery.len(), &autodiff) {
            Ok(started) => started,
            Err(e) => {
                dispatch.dispatch(Action::Error(e.to_string()));
                dispatch.dispatch(Action::Adapt(None, false));
                return;
            }
        };
    let batch = sampler.batch_size();
    let mut first_loss = None;
    for step in 0..steps {
        let record = match trainer.step(&gallery, &sampler).await {
            Ok(record) => record,
            Err(e) => {
                dispatch.dispatch(Action::Error(e.to_string()));
                dispatch.dispatch(Action::Adapt(None, false));
                return;
            }
        };
        if let StepOutcome::Diverged(message) = &record.outcome {
            dispatch.dispatch(Action::Error(format!("adapting stopped: {message}")));
            dispatch.dispatch(Action::Adapt(None, false));
            return;
        }
        let loss = record.loss;
        let first = *first_loss.get_or_insert(loss);
        let done = step + 1;
        if done % REFRESH_EVERY == 0 || done == steps {
            let adapted = LoadedModel {
                model: trainer.model().valid(),
                config: model.config.clone(),
                label: format!("{} + adapted {done} NEPA steps on your images", model.label),
                trained: model.trained,
                source: model.source.clone(),
                name: model.name.clone(),
            };
            dispatch.dispatch(Action::ModelUpdated(Rc::new(adapted)));
        }
        dispatch.dispatch(Action::Adapt(
            Some(format!(
                "adapted {done}/{steps} steps · NEPA loss {first:.3} → {loss:.3} (batches of {batch} random crops)"
            )),
            done < steps,
        ));
        platform::sleep(0).await;
    }
}
