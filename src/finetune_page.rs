//! The Fine-tune tab: classes of the user's images (or the bundled Fashion-MNIST sample),
//! training on the page's device with live progress, Pause/Stop, classification of new
//! images, download as safetensors, and the last trained model kept in browser storage.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use nepa::checkpoint::{
    classes_from_metadata, classifier_tensors, classifier_to_safetensors_async, infer_config,
    load_classifier,
};
use nepa::data::ImageSet;
use nepa::finetune::{FinetuneMode, FinetuneRun, FinetuneSettings, class_probabilities, evaluate};
use nepa::image::decode;
use nepa::{LoadOptions, NepaClassifier, NepaConfig, NepaError, StepOutcome};
use wasm_bindgen_futures::spawn_local;
use web_sys::HtmlInputElement;
use web_time::Instant;
use yew::prelude::*;

use crate::app::{Upload, decode_upload, file_bytes, take_input_files};
use crate::chart::{Chart, Series};
use crate::download::fetch_bytes;
use crate::engine::LoadedModel;
use crate::gpu::ComputeDevice;
use crate::platform;
use crate::views::Thumbnail;

/// Where the last trained model is kept (OPFS) so a reload loses nothing: one file, whose
/// metadata carries the config and the class names, so weights and labels cannot disagree.
const STORED_MODEL: &str = "nepa-finetuned.safetensors";
/// The class list of the old two-file layout; removed when a new model is stored.
const OLD_STORED_INFO: &str = "nepa-finetuned.json";
const SAMPLE_MANIFEST: &str = "samples/fashion-mnist/manifest.json";

#[derive(Clone)]
pub struct ClassData {
    pub name: String,
    pub images: Vec<Rc<Upload>>,
}

/// A trained (or restored) classifier, ready for inference and download.
pub struct Trained {
    pub model: NepaClassifier,
    pub config: NepaConfig,
    pub classes: Vec<String>,
    pub bytes: Rc<Vec<u8>>,
    pub summary: String,
}

#[derive(Clone, Default, PartialEq)]
pub struct Progress {
    pub step: usize,
    pub total: usize,
    pub losses: Vec<f64>,
    /// Accuracy of each training batch (before the update).
    pub batch_accuracy: Vec<f64>,
    pub images_per_sec: Option<f64>,
    pub eta_s: Option<f64>,
    /// Device memory (in use, reserved) after each step, where the backend reports it.
    pub memory: Vec<(u64, u64)>,
    pub running: bool,
    pub paused: bool,
}

#[derive(Default)]
pub struct PageState {
    classes: Vec<ClassData>,
    progress: Option<Progress>,
    trained: Option<Rc<Trained>>,
    predictions: Vec<(String, Vec<f32>)>,
    message: Option<String>,
    errors: Vec<String>,
}

pub enum Msg {
    AddClass(String),
    AddImages(usize, Vec<Rc<Upload>>),
    RemoveClass(usize),
    SetClasses(Vec<ClassData>),
    Progress(Progress),
    Trained(Rc<Trained>),
    Predictions(Vec<(String, Vec<f32>)>),
    Message(Option<String>),
    Error(String),
    DismissErrors,
}

impl Reducible for PageState {
    type Action = Msg;

    fn reduce(self: Rc<Self>, msg: Msg) -> Rc<Self> {
        let mut s = PageState {
            classes: self.classes.clone(),
            progress: self.progress.clone(),
            trained: self.trained.clone(),
            predictions: self.predictions.clone(),
            message: self.message.clone(),
            errors: self.errors.clone(),
        };
        match msg {
            Msg::AddClass(name) => s.classes.push(ClassData {
                name,
                images: vec![],
            }),
            Msg::AddImages(i, mut images) => {
                if let Some(c) = s.classes.get_mut(i) {
                    c.images.append(&mut images);
                }
            }
            Msg::RemoveClass(i) => {
                if i < s.classes.len() {
                    s.classes.remove(i);
                }
            }
            Msg::SetClasses(classes) => s.classes = classes,
            Msg::Progress(p) => s.progress = Some(p),
            Msg::Trained(t) => {
                s.trained = Some(t);
                s.predictions.clear();
            }
            Msg::Predictions(p) => s.predictions = p,
            Msg::Message(m) => s.message = m,
            Msg::Error(e) => s.errors.push(e),
            Msg::DismissErrors => s.errors.clear(),
        }
        Rc::new(s)
    }
}

/// Pause and Stop, read by the training loop between steps.
#[derive(Default)]
pub struct Control {
    paused: Cell<bool>,
    stop: Cell<bool>,
}

#[derive(Properties)]
pub struct FinetuneProps {
    pub device: Rc<ComputeDevice>,
    pub model: Rc<LoadedModel>,
}

impl PartialEq for FinetuneProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.device, &other.device) && Rc::ptr_eq(&self.model, &other.model)
    }
}

async fn read_files(files: Vec<web_sys::File>) -> (Vec<Rc<Upload>>, Vec<String>) {
    let (mut images, mut errors) = (vec![], vec![]);
    for file in files {
        let bytes = match file_bytes(&file).await {
            Ok(bytes) => bytes,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match decode_upload(&file.name(), &bytes) {
            Ok((image, warnings)) => {
                errors.extend(warnings);
                images.push(Rc::new(Upload {
                    name: file.name(),
                    image,
                }));
            }
            Err(e) => errors.push(e),
        }
    }
    (images, errors)
}

/// The bundled Fashion-MNIST sample: `manifest.json` maps class names to PNG files. Classes
/// come sorted by name, the order `nepa eval` gives a folder of class folders.
async fn load_sample_set() -> Result<Vec<ClassData>, String> {
    let manifest = fetch_bytes(SAMPLE_MANIFEST).await?;
    let manifest: BTreeMap<String, Vec<String>> =
        serde_json::from_slice::<serde_json::Value>(&manifest)
            .ok()
            .and_then(|v| serde_json::from_value(v["classes"].clone()).ok())
            .ok_or("the sample manifest is malformed")?;
    let base = SAMPLE_MANIFEST.trim_end_matches("manifest.json");
    let mut classes = vec![];
    for (name, files) in manifest {
        let mut images = vec![];
        for file in files {
            let bytes = fetch_bytes(&format!("{base}{file}")).await?;
            let image = decode(&bytes).map_err(|e| format!("{file}: {e}"))?;
            images.push(Rc::new(Upload { name: file, image }));
        }
        classes.push(ClassData { name, images });
    }
    Ok(classes)
}

/// Restores the last trained model from browser storage, if there is one. What is read is
/// checked before it is used: it parses, its config is valid, it names its classes and they
/// match its head. A bad entry is reported (naming the file and the fault) and left in place;
/// the next completed training run replaces it.
async fn restore(device: &ComputeDevice) -> Result<Option<Trained>, String> {
    let Some(bytes) = platform::load(STORED_MODEL).await? else {
        return Ok(None);
    };
    let bad = |what: String| {
        format!(
            "the model kept in browser storage (OPFS file {STORED_MODEL}, {} bytes) is not \
             usable: {what}. It was not loaded, and it is left in storage until the next \
             completed training run replaces it.",
            bytes.len()
        )
    };
    let config = infer_config(&bytes).map_err(|e| bad(e.to_string()))?;
    config.validate().map_err(|e| bad(e.to_string()))?;
    let classes = match classes_from_metadata(&bytes) {
        Ok(Some(classes)) if !classes.is_empty() => classes,
        Ok(_) => return Err(bad("it names no classes".into())),
        Err(e) => return Err(bad(e.to_string())),
    };
    let loaded = load_classifier(
        &bytes,
        &config,
        Some(classes.len()),
        &device.device,
        LoadOptions::default(),
    );
    let model = match loaded {
        Ok((model, _)) => model,
        Err(NepaError::ShapeMismatch { key, found, .. }) if key == "classifier.weight" => {
            return Err(bad(format!(
                "it names {} classes ({}) but its head has {} outputs",
                classes.len(),
                classes.join(", "),
                found.first().copied().unwrap_or(0)
            )));
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let summary = format!(
        "restored from browser storage: {} classes ({}) · D {}, {} layers",
        classes.len(),
        classes.join(", "),
        config.hidden_size,
        config.num_hidden_layers
    );
    Ok(Some(Trained {
        model,
        config,
        classes,
        bytes: Rc::new(bytes),
        summary,
    }))
}

/// The share of each run's images held out for the accuracy shown afterwards (a seeded
/// split, the crate's, as `nepa finetune --val-fraction 0.2`).
const HELD_OUT_FRACTION: f64 = 0.2;

/// The classes as the crate's labelled image set (label i = class i).
fn image_set(classes: &[ClassData]) -> Result<ImageSet, String> {
    let pairs = classes
        .iter()
        .enumerate()
        .flat_map(|(label, class)| class.images.iter().map(move |u| (u.image.clone(), label)))
        .collect();
    let names = classes.iter().map(|c| c.name.clone()).collect();
    ImageSet::labelled(pairs, names, "your images").map_err(|e| e.to_string())
}

struct TrainRequest {
    classes: Vec<ClassData>,
    settings: FinetuneSettings,
}

/// How a training run ended.
enum Ending {
    Completed,
    /// The user pressed Stop.
    Stopped,
    /// A step's loss or gradient norm was not finite: the driver's message.
    Diverged(String),
}

/// Waits while paused; returns whether the user pressed Stop.
async fn wait_unless_stopped(
    control: &Control,
    progress: &mut Progress,
    dispatch: &UseReducerDispatcher<PageState>,
) -> bool {
    // Lets the page paint (the progress bar, Pause and Stop enabled) and handle a click
    // before each step's work: Stop right after Train stops before step 1.
    platform::sleep(0).await;
    while control.paused.get() && !control.stop.get() {
        progress.paused = true;
        dispatch.dispatch(Msg::Progress(progress.clone()));
        platform::sleep(100).await;
    }
    progress.paused = false;
    control.stop.get()
}

/// Trains with the crate's fine-tuning driver (`nepa::finetune::FinetuneRun`, the one `nepa
/// finetune` runs), step by step, yielding to the browser between steps.
async fn train(
    dispatch: UseReducerDispatcher<PageState>,
    device: Rc<ComputeDevice>,
    base: Rc<LoadedModel>,
    request: TrainRequest,
    control: Rc<Control>,
) -> Result<(), String> {
    let TrainRequest { classes, settings } = request;
    let all = image_set(&classes)?;
    let fraction = if all.len() >= 10 {
        HELD_OUT_FRACTION
    } else {
        0.0
    };
    let (train_set, held_out) = all
        .split_validation(fraction, settings.seed)
        .map_err(|e| e.to_string())?;
    let batch = settings.batch_size.min(train_set.len());
    let mode = settings.mode;
    let autodiff = device.device.clone().autodiff();
    let mut run = FinetuneRun::new(
        base.model.clone(),
        &base.config,
        train_set,
        settings,
        &autodiff,
    )
    .map_err(|e| e.to_string())?;
    let total = run.total_steps();
    let mut progress = Progress {
        total,
        running: true,
        ..Progress::default()
    };
    let mut ending = Ending::Completed;
    let mut step_seconds = vec![];
    while !run.is_done() {
        if wait_unless_stopped(&control, &mut progress, &dispatch).await {
            ending = Ending::Stopped;
            break;
        }
        let start = Instant::now();
        let record = run.step().await.map_err(|e| e.to_string())?;
        if let StepOutcome::Diverged(message) = record.outcome {
            ending = Ending::Diverged(message);
            break;
        }
        step_seconds.push(start.elapsed().as_secs_f64());
        // The first step compiles shaders: leave it out of the rate.
        let warm = step_seconds
            .get(1..)
            .filter(|w| !w.is_empty())
            .unwrap_or(step_seconds.as_slice());
        let mean = warm.iter().sum::<f64>() / warm.len().max(1) as f64;
        progress.step = record.step + 1;
        progress.losses.push(record.loss as f64);
        progress.batch_accuracy.push(record.batch_accuracy);
        progress.images_per_sec = Some(batch as f64 / mean);
        progress.eta_s = Some(mean * (total - record.step - 1) as f64);
        if let Some(m) = device.device.memory_pool_usage() {
            progress.memory.push((m.bytes_in_use, m.bytes_reserved));
        }
        dispatch.dispatch(Msg::Progress(progress.clone()));
    }
    progress.running = false;
    dispatch.dispatch(Msg::Progress(progress.clone()));

    let done = progress.step;
    const STORAGE_UNCHANGED: &str = "the model in browser storage is unchanged";
    if done == 0 {
        // Nothing was trained: keep whatever the page and the storage hold.
        match ending {
            Ending::Diverged(message) => dispatch.dispatch(Msg::Error(format!(
                "{message} Nothing was trained; {STORAGE_UNCHANGED}."
            ))),
            _ => dispatch.dispatch(Msg::Message(Some(format!(
                "stopped before the first step: nothing was trained; {STORAGE_UNCHANGED}."
            )))),
        }
        return Ok(());
    }
    dispatch.dispatch(Msg::Message(Some("evaluating and saving…".into())));

    let model = run.model();
    let config = run.config().clone();
    let names: Vec<String> = run.classes().to_vec();
    // Refuses non-finite weights: such a model is neither kept nor stored.
    let bytes =
        match classifier_to_safetensors_async(&classifier_tensors(&model), &config, &names).await {
            Ok(bytes) => bytes,
            Err(e @ NepaError::NonFinite { .. }) => {
                let why = match &ending {
                    Ending::Diverged(message) => format!("{message} "),
                    _ => String::new(),
                };
                dispatch.dispatch(Msg::Error(format!(
                    "{why}The trained model is not kept: {e}; {STORAGE_UNCHANGED}."
                )));
                dispatch.dispatch(Msg::Message(None));
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
    let held_out_accuracy = evaluate(&model, &config, &held_out, 16, &device.device)
        .await
        .map_err(|e| e.to_string())?;
    let accuracy = if held_out.is_empty() {
        "no held-out images (10+ images needed)".to_string()
    } else {
        let n = held_out.len();
        let correct = (held_out_accuracy * n as f64).round() as usize;
        format!(
            "held-out accuracy {:.1}% ({correct}/{n})",
            100.0 * held_out_accuracy
        )
    };
    let mut summary = format!(
        "{} · {done} steps · {} classes ({}) · {accuracy}",
        mode.label(),
        names.len(),
        names.join(", ")
    );
    // Only a completed run replaces the stored model; a stopped or diverged one stays on the
    // page, where it can be downloaded.
    let not_stored = format!(
        "kept on this page only, not in browser storage ({STORAGE_UNCHANGED}): download it to \
         keep it"
    );
    match &ending {
        Ending::Completed => {
            let stored = async {
                platform::store(STORED_MODEL, &bytes).await?;
                // The old two-file layout's class list, if any, would only mislead.
                platform::remove(OLD_STORED_INFO).await
            }
            .await;
            if let Err(e) = stored {
                dispatch.dispatch(Msg::Error(format!(
                    "{e} — the model is still here until you leave the page; download it to keep it"
                )));
            }
            dispatch.dispatch(Msg::Message(None));
        }
        Ending::Stopped => {
            summary.push_str(&format!(" · stopped at step {done}/{total}"));
            dispatch.dispatch(Msg::Message(Some(format!(
                "stopped at step {done}/{total}: the partly trained model is {not_stored}."
            ))));
        }
        Ending::Diverged(message) => {
            summary.push_str(&format!(" · diverged after step {done}/{total}"));
            dispatch.dispatch(Msg::Error(format!(
                "{message} The model from step {done} is {not_stored}."
            )));
            dispatch.dispatch(Msg::Message(None));
        }
    }
    dispatch.dispatch(Msg::Trained(Rc::new(Trained {
        model,
        config,
        classes: names,
        bytes: Rc::new(bytes),
        summary,
    })));
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

#[function_component(FinetunePage)]
pub fn finetune_page(props: &FinetuneProps) -> Html {
    let state = use_reducer(PageState::default);
    let control = use_mut_ref(|| Rc::new(Control::default()));
    let mode = use_state(|| FinetuneMode::Lora);
    let steps = use_state(|| 40usize);
    let batch = use_state(|| 8usize);
    let class_name = use_node_ref();

    // Restore the last trained model once the device is known.
    {
        let dispatch = state.dispatcher();
        let device = props.device.clone();
        use_effect_with(device.backend, move |_| {
            spawn_local(async move {
                match restore(&device).await {
                    Ok(Some(t)) => dispatch.dispatch(Msg::Trained(Rc::new(t))),
                    Ok(None) => {}
                    // The message names the stored file and what is wrong with it.
                    Err(e) => dispatch.dispatch(Msg::Error(e)),
                }
            });
        });
    }

    let running = state.progress.as_ref().is_some_and(|p| p.running);
    let on_add_class = {
        let dispatch = state.dispatcher();
        let input = class_name.clone();
        let count = state.classes.len();
        Callback::from(move |_| {
            let Some(input) = input.cast::<HtmlInputElement>() else {
                return;
            };
            let name = input.value().trim().to_string();
            let name = if name.is_empty() {
                format!("class {}", count + 1)
            } else {
                name
            };
            input.set_value("");
            dispatch.dispatch(Msg::AddClass(name));
        })
    };
    let on_sample = {
        let dispatch = state.dispatcher();
        Callback::from(move |_| {
            let dispatch = dispatch.clone();
            dispatch.dispatch(Msg::Message(Some("loading the sample set…".into())));
            spawn_local(async move {
                match load_sample_set().await {
                    Ok(classes) => dispatch.dispatch(Msg::SetClasses(classes)),
                    Err(e) => dispatch.dispatch(Msg::Error(format!("sample set: {e}"))),
                }
                dispatch.dispatch(Msg::Message(None));
            });
        })
    };
    let on_train = {
        let dispatch = state.dispatcher();
        let device = props.device.clone();
        let model = props.model.clone();
        let classes = state.classes.clone();
        let control = control.clone();
        let (mode, steps, batch) = (*mode, *steps, *batch);
        Callback::from(move |_| {
            if classes.len() < 2 {
                dispatch.dispatch(Msg::Error("make at least two classes".into()));
                return;
            }
            if let Some(c) = classes.iter().find(|c| c.images.is_empty()) {
                dispatch.dispatch(Msg::Error(format!("class \"{}\" has no images", c.name)));
                return;
            }
            let fresh = Rc::new(Control::default());
            *control.borrow_mut() = fresh.clone();
            // The page's preset lives in the crate (`nepa finetune` can ask for the same).
            let mut lr = 1e-3;
            // Test hook: `window.nepaFinetuneOverrides = {lr}` sets both peak rates (the
            // end-to-end test makes a run diverge with an absurd one).
            if let Some(hook) = platform::hook_number("nepaFinetuneOverrides", "lr") {
                lr = hook;
            }
            let mut settings = FinetuneSettings::quick(mode, steps, batch, lr);
            // One non-finite step stops the run: LoRA's optimizer moments cannot be rolled
            // back, and a page run is short enough to start again.
            settings.max_bad_steps = 1;
            let request = TrainRequest {
                classes: classes.clone(),
                settings,
            };
            let (dispatch, device, model) = (dispatch.clone(), device.clone(), model.clone());
            dispatch.dispatch(Msg::Message(None));
            dispatch.dispatch(Msg::Progress(Progress {
                total: steps,
                running: true,
                ..Progress::default()
            }));
            spawn_local(async move {
                if let Err(e) = train(dispatch.clone(), device, model, request, fresh).await {
                    dispatch.dispatch(Msg::Error(format!("training stopped: {e}")));
                    dispatch.dispatch(Msg::Message(None));
                }
            });
        })
    };
    let on_pause = {
        let control = control.clone();
        Callback::from(move |_| {
            let c = control.borrow().clone();
            c.paused.set(!c.paused.get());
        })
    };
    let on_stop = {
        let control = control.clone();
        Callback::from(move |_| control.borrow().stop.set(true))
    };
    let on_classify = {
        let dispatch = state.dispatcher();
        let trained = state.trained.clone();
        let device = props.device.clone();
        Callback::from(move |e: Event| {
            let files = take_input_files(&e);
            let (Some(trained), dispatch, device) =
                (trained.clone(), dispatch.clone(), device.clone())
            else {
                return;
            };
            spawn_local(async move {
                let (images, errors) = read_files(files).await;
                for e in errors {
                    dispatch.dispatch(Msg::Error(e));
                }
                let mut out = vec![];
                for upload in images {
                    match class_probabilities(
                        &trained.model,
                        &trained.config,
                        &upload.image,
                        &device.device,
                    )
                    .await
                    {
                        Ok(p) => out.push((upload.name.clone(), p)),
                        Err(e) => dispatch.dispatch(Msg::Error(e.to_string())),
                    }
                }
                dispatch.dispatch(Msg::Predictions(out));
            });
        })
    };
    let on_download = {
        let trained = state.trained.clone();
        Callback::from(move |_| {
            if let Some(t) = &trained {
                platform::download(
                    "nepa-finetuned.safetensors",
                    &t.bytes,
                    "application/octet-stream",
                );
            }
        })
    };

    let class_cards = state.classes.iter().enumerate().map(|(i, class)| {
        let dispatch = state.dispatcher();
        let on_files = Callback::from(move |e: Event| {
            let files = take_input_files(&e);
            let dispatch = dispatch.clone();
            spawn_local(async move {
                let (images, errors) = read_files(files).await;
                for e in errors {
                    dispatch.dispatch(Msg::Error(e));
                }
                dispatch.dispatch(Msg::AddImages(i, images));
            });
        });
        let remove = {
            let dispatch = state.dispatcher();
            Callback::from(move |_| dispatch.dispatch(Msg::RemoveClass(i)))
        };
        html! {
            <div class="class-card">
                <strong>{ format!("{} ({} images)", class.name, class.images.len()) }</strong>
                <label class="button small">{ "add images…" }
                    <input class="class-input" type="file" multiple=true accept="image/*" onchange={on_files} />
                </label>
                <button onclick={remove} disabled={running}>{ "remove" }</button>
                <div class="class-thumbs">
                    { for class.images.iter().take(12).map(|u| html! { <Thumbnail image={u.clone()} /> }) }
                    if class.images.len() > 12 { <span>{ format!("+{}", class.images.len() - 12) }</span> }
                </div>
            </div>
        }
    });

    let on_mode = {
        let mode = mode.clone();
        Callback::from(move |e: Event| {
            let select: web_sys::HtmlSelectElement = e.target_unchecked_into();
            mode.set(match select.value().as_str() {
                "full" => FinetuneMode::Full,
                "head" => FinetuneMode::HeadOnly,
                _ => FinetuneMode::Lora,
            });
        })
    };
    let number = |handle: UseStateHandle<usize>, lo: usize, hi: usize| {
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            if let Ok(v) = input.value().parse::<usize>() {
                handle.set(v.clamp(lo, hi));
            }
        })
    };

    let progress_view = state.progress.as_ref().map(|p| {
        let last_loss = p.losses.last().copied();
        let window = p.batch_accuracy.len().min(10);
        let recent_acc = (window > 0).then(|| {
            p.batch_accuracy[p.batch_accuracy.len() - window..].iter().sum::<f64>() / window as f64
        });
        html! {
            <div class="train-progress">
                <progress id="train-progress" max={p.total.max(1).to_string()} value={p.step.to_string()} />
                <span id="train-status" data-losses={serde_json::to_string(&p.losses).unwrap_or_default()}>
                    { format!("step {}/{}", p.step, p.total) }
                    if let Some(l) = last_loss { { format!(" · loss {l:.4}") } }
                    if let Some(r) = p.images_per_sec { { format!(" · {r:.1} img/s") } }
                    if let Some(eta) = p.eta_s.filter(|_| p.running) { { format!(" · ETA {eta:.0} s") } }
                    if p.paused { { " · paused" } }
                    if !p.running { { " · finished" } }
                </span>
                if let Some(acc) = recent_acc {
                    <p id="train-accuracy">{ format!("training-batch accuracy (last {window} steps): {:.1}%", 100.0 * acc) }</p>
                }
                if let (Some(first), Some(last)) = (p.memory.first(), p.memory.last()) {
                    <p id="memory">{ format!("device memory in use: {} after step 1, {} now (reserved {} → {})",
                        mib(first.0), mib(last.0), mib(first.1), mib(last.1)) }</p>
                }
                <div class="charts">
                    <Chart id="loss-chart" title="training loss (cross-entropy, label smoothing 0.1)"
                        series={vec![Series { label: "loss".into(), color: "#1d4ed8", values: p.losses.clone(), dashed: false }]} />
                    <Chart id="accuracy-chart" title="training-batch accuracy" y_range={Some((0.0, 1.0))}
                        series={vec![Series { label: "accuracy".into(), color: "#059669", values: p.batch_accuracy.clone(), dashed: false }]} />
                </div>
            </div>
        }
    });

    html! {
        <section id="finetune" class="finetune">
            <h2>{ "Fine-tune on your images" }</h2>
            <p class="hint">{ format!("Starts from the loaded model ({}) with a new head; attention becomes bidirectional, as in the paper's fine-tuning.", props.model.label) }</p>
            if !state.errors.is_empty() {
                <div id="finetune-errors" class="errors">
                    { for state.errors.iter().map(|e| html! { <p class="error">{ e }</p> }) }
                    <button onclick={ let d = state.dispatcher(); Callback::from(move |_| d.dispatch(Msg::DismissErrors)) }>{ "dismiss" }</button>
                </div>
            }
            <div class="inputs">
                <input ref={class_name} id="class-name" placeholder="class name" size="14" />
                <button id="add-class" onclick={on_add_class} disabled={running}>{ "Add class" }</button>
                <button id="load-sample" onclick={on_sample} disabled={running}>{ "Load sample set (Fashion-MNIST, 4 classes)" }</button>
            </div>
            <div id="classes" class="classes">{ for class_cards }</div>
            <div class="inputs">
                <label>{ "mode: " }
                    <select id="mode" onchange={on_mode} disabled={running}>
                        { for FinetuneMode::ALL.iter().map(|m| {
                            let value = match m { FinetuneMode::Lora => "lora", FinetuneMode::Full => "full", FinetuneMode::HeadOnly => "head" };
                            html! { <option value={value} selected={*mode == *m}>{ m.label() }</option> }
                        }) }
                    </select>
                </label>
                <label>{ " steps: " }<input id="steps" type="number" min="1" max="5000" value={steps.to_string()} size="5" onchange={number(steps.clone(), 1, 5000)} disabled={running} /></label>
                <label>{ " batch: " }<input id="batch" type="number" min="1" max="64" value={batch.to_string()} size="3" onchange={number(batch.clone(), 1, 64)} disabled={running} /></label>
                <button id="train" onclick={on_train} disabled={running}>{ "Train" }</button>
                <button id="pause" onclick={on_pause} disabled={!running}>{ if state.progress.as_ref().is_some_and(|p| p.paused) { "Resume" } else { "Pause" } }</button>
                <button id="stop" onclick={on_stop} disabled={!running}>{ "Stop" }</button>
            </div>
            if let Some(m) = &state.message { <p class="busy">{ m.clone() }</p> }
            { for progress_view }
            if let Some(t) = &state.trained {
                <div id="trained" class="trained">
                    <p id="trained-summary">{ t.summary.clone() }</p>
                    <button id="download-model" onclick={on_download}>{ "Download fine-tuned model (.safetensors, official keys)" }</button>
                    <label class="button">{ "Classify images…" }
                        <input id="classify-input" type="file" multiple=true accept="image/*" onchange={on_classify} />
                    </label>
                    <div id="predictions">
                        { for state.predictions.iter().map(|(name, probs)| html! {
                            <div class="prediction">
                                <strong>{ name.clone() }</strong>
                                { for probs.iter().zip(&t.classes).map(|(p, class)| html! {
                                    <div class="prob"><span class="prob-label">{ class.clone() }</span>
                                        <span class="prob-bar" style={format!("width:{:.0}px", 150.0 * p)}></span>
                                        <span>{ format!("{:.1}%", 100.0 * p) }</span></div>
                                }) }
                            </div>
                        }) }
                    </div>
                </div>
            }
        </section>
    }
}
