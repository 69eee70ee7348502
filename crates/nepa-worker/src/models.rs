//! The models: the bundled demo checkpoint, a checkpoint from a file or a URL (kept in Cache
//! Storage), or the random init; and loading the current one again on another device.

use std::rc::Rc;

use burn::tensor::Device;
use nepa::checkpoint::{infer_config, load_backbone};
use nepa::{LoadOptions, NepaConfig, NepaModel};
use nepa_protocol::{DownloadLimits, ModelInfo, Progress, Reply, WebError};
use wasm_bindgen::JsValue;
use web_time::Instant;

use crate::bridge::{self, ByteProgress, Responder};
use crate::state::{ComputeDevice, Engine, HubFiles, LoadedModel};
use crate::tasks::Control;
use crate::{cache, fetch, files, hub, platform};

/// The bundled demo checkpoint, next to the worker's script (the dist root).
pub const DEMO_CHECKPOINT: &str = "nepa-demo.safetensors";

/// The random-init model: small, so the first forward pass is quick.
pub fn untrained_model(device: &Device) -> Result<LoadedModel, WebError> {
    let config = NepaConfig::new(96, 4, 4)
        .with_image_size(64, 64)
        .with_patch_size(8)
        .with_layerscale(0.1);
    device.seed(0);
    let model = NepaModel::new(&config, device)?;
    Ok(LoadedModel {
        model,
        label: "untrained: random init, D 96, 4 layers, 64 px / patch 8".into(),
        config,
        trained: false,
        source: None,
        name: "untrained".into(),
        hub_files: None,
        classifier: None,
    })
}

/// How a loaded model is shown: its name and shape.
pub fn shape_label(name: &str, config: &NepaConfig, unused_tensors: usize) -> String {
    let mut label = format!(
        "{name}: D {}, {} layers, {} heads, {}×{} px / patch {}",
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.image_size[0],
        config.image_size[1],
        config.patch_size
    );
    if unused_tensors > 0 {
        label.push_str(&format!(" ({unused_tensors} unused tensors)"));
    }
    label
}

/// Builds the model of a checkpoint whose config is known (the upload to the device).
pub fn build(
    bytes: &[u8],
    name: &str,
    config: NepaConfig,
    device: &Device,
) -> Result<LoadedModel, WebError> {
    let (model, report) = load_backbone(bytes, &config, device, LoadOptions::default())
        .map_err(|e| WebError::from(e).context(name))?;
    let label = shape_label(name, &config, report.unused_keys.len());
    Ok(LoadedModel {
        model: model.set_causal(config.is_causal),
        config,
        label,
        trained: true,
        source: Some(js_sys::Uint8Array::from(bytes)),
        name: name.to_string(),
        hub_files: None,
        classifier: None,
    })
}

/// Loads a NEPA safetensors checkpoint: the architecture from its hub `config.json` when it
/// came with one, else from its metadata or shapes.
pub fn load_checkpoint(
    bytes: &[u8],
    name: &str,
    hub_files: Option<&Rc<HubFiles>>,
    device: &Device,
) -> Result<LoadedModel, WebError> {
    if let Some(files) = hub_files {
        return hub::build(bytes, name, files, device);
    }
    let config = infer_config(bytes).map_err(|e| WebError::from(e).context(name))?;
    build(bytes, name, config, device)
}

/// Checkpoints from this size on are loaded in place of the current model: it is freed
/// before the new one is built, so that two large models never share the wasm heap (4 GiB at
/// most, and it never shrinks). Smaller ones are built beside it.
const LARGE_CHECKPOINT_BYTES: usize = 64 << 20;

/// Frees the current model for a large load; gives back what it takes to rebuild it.
fn free_for(engine: &Engine, bytes: usize) -> Option<Previous> {
    if bytes < LARGE_CHECKPOINT_BYTES {
        return None;
    }
    let previous = engine.take_model()?;
    Some((
        previous.source.clone(),
        previous.name.clone(),
        previous.hub_files.clone(),
    ))
}

/// What it takes to build a freed model again: its bytes, name and hub files.
type Previous = (Option<js_sys::Uint8Array>, String, Option<Rc<HubFiles>>);

/// After a failed large load: the freed model again, from its checkpoint, same version.
fn rebuild(engine: &Engine, previous: Previous, device: &Device) -> String {
    let (source, name, hub_files) = previous;
    let rebuilt = match &source {
        Some(bytes) => load_checkpoint(&bytes.to_vec(), &name, hub_files.as_ref(), device),
        None => untrained_model(device),
    };
    match rebuilt {
        Ok(model) => {
            engine.restore_model(model);
            format!("; the previous model ({name}) was loaded again from its checkpoint")
        }
        Err(e) => format!("; the previous model could not be loaded again: {e}"),
    }
}

/// Copies a checkpoint into wasm memory, parses it and uploads it, with the stages reported
/// (yielding between them so other messages get in). A large one replaces the current model
/// in place: that is freed before the copy, and built again if the new one fails. A hub
/// model comes with its `config.json`.
pub async fn load_staged(
    engine: &Engine,
    r: &Responder,
    chunks: Vec<js_sys::Uint8Array>,
    name: &str,
    hub_files: Option<&Rc<HubFiles>>,
    device: &Device,
) -> Result<LoadedModel, WebError> {
    let size: u64 = chunks.iter().map(|c| u64::from(c.length())).sum();
    r.progress(Progress::counted("parsing", 0, Some(size)));
    platform::sleep(0).await;
    let freed = free_for(engine, size as usize);
    let loaded = parse_and_build(r, &chunks, name, hub_files, device).await;
    match (loaded, freed) {
        (Ok(model), _) => Ok(model),
        (Err(e), Some(previous)) => Err(WebError::new(
            e.kind,
            format!("{}{}", e.message, rebuild(engine, previous, device)),
        )),
        (Err(e), None) => Err(e),
    }
}

async fn parse_and_build(
    r: &Responder,
    chunks: &[js_sys::Uint8Array],
    name: &str,
    hub_files: Option<&Rc<HubFiles>>,
    device: &Device,
) -> Result<LoadedModel, WebError> {
    let bytes = fetch::into_wasm_memory(name, chunks, files::MAX_FILE_BYTES)?;
    // The model crate's error keeps its kind (a model over the memory budget is TooLarge).
    let bad = |e: WebError| e.context("checkpoint does not fit");
    r.stage("uploading to the device");
    platform::sleep(0).await;
    load_checkpoint(&bytes, name, hub_files, device).map_err(bad)
}

/// Makes `model` current and describes it.
pub fn install(
    engine: &Engine,
    model: LoadedModel,
    load_ms: Option<f64>,
    from_cache: bool,
) -> ModelInfo {
    let (label, trained) = (model.label.clone(), model.trained);
    let (layers, heads) = (
        model.config.num_hidden_layers,
        model.config.num_attention_heads,
    );
    let classes = model.classifier.as_ref().map_or(0, |c| c.classes.len());
    let version = engine.set_model(model);
    ModelInfo {
        version,
        label,
        trained,
        layers,
        heads,
        load_ms,
        wasm_memory_bytes: platform::wasm_memory_bytes(),
        from_cache,
        classes,
    }
}

/// Installs a changed model (adaptation, a new device, the demo's fallback) and announces it
/// to request `r` (`ModelUpdated`, not final).
pub fn announce(engine: &Engine, r: &Responder, model: LoadedModel) {
    let info = install(engine, model, None, false);
    r.reply(Reply::ModelUpdated(info));
}

fn elapsed_ms(started: Instant) -> Option<f64> {
    Some(started.elapsed().as_secs_f64() * 1e3)
}

/// `LoadDemo`: the bundled checkpoint. If it does not load, the untrained model is announced
/// (`ModelUpdated`), then the request fails with the reason.
pub async fn load_demo(engine: Rc<Engine>, r: Responder, control: Rc<Control>) {
    let started = Instant::now();
    let result = async {
        let device = engine.ready_device().await?;
        r.progress(Progress::counted("downloading", 0, None));
        let limits = DownloadLimits::default();
        let progress = ByteProgress::new(r, "downloading");
        let bytes = fetch::fetch_chunks(DEMO_CHECKPOINT, limits, &control, |done, total| {
            progress.update(done, total)
        })
        .await?;
        load_staged(&engine, &r, bytes, DEMO_CHECKPOINT, None, &device.device).await
    }
    .await;
    match result {
        Ok(model) => r.reply(Reply::ModelReady(install(
            &engine,
            model,
            elapsed_ms(started),
            false,
        ))),
        Err(e) => {
            let fallback = engine
                .ready_device()
                .await
                .and_then(|d| untrained_model(&d.device));
            match fallback {
                Ok(model) => announce(&engine, &r, model),
                Err(e) => bridge::event(Reply::Failed(e)),
            }
            r.fail(WebError::new(
                e.kind,
                format!(
                    "the bundled demo model did not load ({}); showing an untrained model",
                    e.message.trim_start_matches("checkpoint does not fit: ")
                ),
            ));
        }
    }
}

/// `LoadFile`: a checkpoint from the payload's `File`.
pub async fn load_file(
    engine: Rc<Engine>,
    r: Responder,
    name: String,
    payload: JsValue,
) -> Result<Reply, WebError> {
    let started = Instant::now();
    let device = engine.ready_device().await?;
    let file = files::from_payload(&payload)
        .into_iter()
        .next()
        .ok_or_else(|| WebError::internal(format!("{name}: the message carries no file")))?;
    let progress = ByteProgress::new(r, "reading");
    let bytes = files::read_chunks(&file, |done, total| progress.update(done, total)).await?;
    let model = load_staged(&engine, &r, bytes, &name, None, &device.device).await?;
    Ok(Reply::ModelReady(install(
        &engine,
        model,
        elapsed_ms(started),
        false,
    )))
}

/// The file name a URL's checkpoint is shown under.
fn url_name(url: &str) -> String {
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("model.safetensors");
    if name.ends_with(".safetensors") {
        name.to_string()
    } else {
        format!("{name}.safetensors")
    }
}

/// `LoadUrl`: from Cache Storage when kept there, else downloaded (and then kept).
pub async fn load_url(
    engine: Rc<Engine>,
    r: Responder,
    url: String,
    limits: DownloadLimits,
    control: Rc<Control>,
) -> Result<Reply, WebError> {
    let started = Instant::now();
    let device = engine.ready_device().await?;
    let name = url_name(&url);
    let on_hit = || r.stage("reading from the browser cache");
    if let Some(bytes) = cache::read(&url, on_hit).await {
        match load_staged(&engine, &r, vec![bytes], &name, None, &device.device).await {
            Ok(model) => {
                return Ok(Reply::ModelReady(install(
                    &engine,
                    model,
                    elapsed_ms(started),
                    true,
                )));
            }
            // A broken entry: forget it and download again.
            Err(_) => cache::forget(&url).await,
        }
    }
    let progress = ByteProgress::new(r, "downloading");
    let bytes = fetch::fetch_chunks(&url, limits, &control, |done, total| {
        progress.update(done, total)
    })
    .await?;
    let model = load_staged(&engine, &r, bytes, &name, None, &device.device).await?;
    let info = install(&engine, model, elapsed_ms(started), false);
    if let Some(source) = engine.model()?.source.clone() {
        cache::keep(&url, &source).await;
    }
    Ok(Reply::ModelReady(info))
}

/// After a device switch: the current model (and the fine-tuned classifier) again on the new
/// device, announced to `r` (`ModelUpdated`); an error is announced as `Failed` (`id: None`).
pub fn reload_on_device(engine: &Engine, r: &Responder, device: &ComputeDevice) {
    let Some(current) = engine.model.borrow().clone() else {
        return;
    };
    let reloaded = match &current.source {
        Some(bytes) => load_checkpoint(
            &bytes.to_vec(),
            &current.name,
            current.hub_files.as_ref(),
            &device.device,
        ),
        None => untrained_model(&device.device),
    };
    match reloaded {
        Ok(model) => announce(engine, r, model),
        Err(e) => bridge::event(Reply::Failed(WebError::device(e.message))),
    }
    crate::trained::reload_on_device(engine, device);
}
