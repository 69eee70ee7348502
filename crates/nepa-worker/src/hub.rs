//! Models from a hub by id (docs/web-architecture.md, "Models from a hub"): `config.json`
//! and `model.safetensors` from `{hub}/{id}/resolve/{revision}/…` (fetch follows the hub's
//! redirect to its file host), both kept in Cache Storage under their resolve URLs, so the
//! next load of the same id and revision asks the network nothing.

use std::rc::Rc;

use burn::tensor::Device;
use nepa::LoadOptions;
use nepa::checkpoint::{load_classifier, parse_hf_config};
use nepa_protocol::{DownloadLimits, HubModel, Reply, WebError};
use web_time::Instant;

use crate::bridge::{ByteProgress, Responder};
use crate::state::{ComputeDevice, Engine, HubClassifier, LoadedModel};
use crate::tasks::Control;
use crate::{cache, fetch, models};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// A `config.json` over this size is not one (21,841 ImageNet-21k labels take about 1 MB).
const MAX_CONFIG_BYTES: u64 = 16 << 20;
const KEPT: &str = "nothing was loaded; the current model is kept";

/// The message for a file the hub refused, from its status and `X-Error-Code`.
fn refused(model: &HubModel, file: &str, status: u16, code: Option<String>) -> WebError {
    let (id, rev, hub) = (&model.id, &model.revision, &model.hub);
    let message = match (code.as_deref(), status) {
        (Some("RepoNotFound"), _) | (None, 401) => format!(
            "there is no model `{id}` on {hub} (HTTP {status}); check the id (private and gated \
             models cannot be loaded here)"
        ),
        (Some("RevisionNotFound"), _) => {
            format!("`{id}` has no revision `{rev}` on {hub} (HTTP {status})")
        }
        (Some("GatedRepo"), _) | (None, 403) => {
            format!("`{id}` is gated or private on {hub} (HTTP {status}); the page cannot sign in")
        }
        (Some("EntryNotFound") | None, 404) if file == CONFIG_FILE => format!(
            "`{id}@{rev}` has no config.json on {hub} (HTTP 404); the page needs it for the \
             architecture and the class names"
        ),
        (Some("EntryNotFound") | None, 404) => format!(
            "`{id}@{rev}` has no model.safetensors on {hub} (HTTP 404); the page reads \
             safetensors weights only"
        ),
        (code, _) => format!(
            "{}: {file}: HTTP {status}{}",
            model.label(),
            code.map_or(String::new(), |c| format!(" ({c})"))
        ),
    };
    WebError::network(format!("{message}; {KEPT}"))
}

/// Whether a safetensors file holds a classifier head (`classifier.weight` in its header).
fn has_head(bytes: &[u8]) -> bool {
    let Some(len) = bytes.get(..8).map(|b| {
        let mut n = [0u8; 8];
        n.copy_from_slice(b);
        u64::from_le_bytes(n) as usize
    }) else {
        return false;
    };
    bytes
        .get(8..8usize.saturating_add(len))
        .is_some_and(|header| String::from_utf8_lossy(header).contains("\"classifier.weight\""))
}

/// Builds a hub model: the architecture from its `config.json`; a classifier (head and
/// class names) when the config has `id2label` and the file a head, else the backbone.
pub fn build(
    bytes: &[u8],
    name: &str,
    json: &Rc<str>,
    device: &Device,
) -> Result<LoadedModel, WebError> {
    let hub = parse_hf_config(json)
        .map_err(|e| WebError::from(e).context(format!("{name}: config.json")))?;
    let Some(classes) = hub.classes.filter(|_| has_head(bytes)) else {
        let mut loaded = models::build(bytes, name, hub.config, device)?;
        loaded.hub_config = Some(json.clone());
        return Ok(loaded);
    };
    let config = hub.config;
    let (classifier, report) = load_classifier(
        bytes,
        &config,
        Some(classes.len()),
        device,
        LoadOptions::default(),
    )
    .map_err(|e| WebError::from(e).context(name))?;
    let label = format!(
        "{} · classifier, {} classes",
        models::shape_label(name, &config, report.unused_keys.len()),
        classes.len()
    );
    Ok(LoadedModel {
        model: classifier.vit_nepa.clone(),
        config,
        label,
        trained: true,
        source: Some(js_sys::Uint8Array::from(bytes)),
        name: name.to_string(),
        hub_config: Some(json.clone()),
        classifier: Some(Rc::new(HubClassifier {
            model: classifier,
            classes,
        })),
    })
}

/// `config.json` as text, under the limits (and a cap of its own).
async fn fetch_config(
    model: &HubModel,
    limits: DownloadLimits,
    control: &Control,
) -> Result<String, WebError> {
    let url = model.file_url(CONFIG_FILE);
    let limits = DownloadLimits {
        cap_bytes: limits.cap_bytes.min(MAX_CONFIG_BYTES),
        ..limits
    };
    let chunks = fetch::fetch_chunks_or(
        &url,
        limits,
        control,
        |_, _| {},
        |status, code| refused(model, CONFIG_FILE, status, code),
    )
    .await?;
    let bytes = fetch::into_wasm_memory(&url, &chunks, MAX_CONFIG_BYTES)?;
    String::from_utf8(bytes).map_err(|_| {
        WebError::bad_input(format!(
            "{}: config.json is not UTF-8 text; {KEPT}",
            model.label()
        ))
    })
}

/// The model from Cache Storage, when both its files are kept there; a kept model that
/// does not load is forgotten (and downloaded again).
async fn from_cache(
    engine: &Engine,
    r: &Responder,
    model: &HubModel,
    device: &ComputeDevice,
    started: Instant,
) -> Option<Reply> {
    let (config_url, weights_url) = (model.file_url(CONFIG_FILE), model.file_url(WEIGHTS_FILE));
    let config = cache::read(&config_url, || {}).await?;
    let config: Rc<str> = String::from_utf8(config.to_vec()).ok()?.into();
    let bytes = cache::read(&weights_url, || r.stage("reading from the browser cache")).await?;
    let name = model.label();
    match models::load_staged(engine, r, vec![bytes], &name, Some(&config), &device.device).await {
        Ok(loaded) => Some(Reply::ModelReady(models::install(
            engine,
            loaded,
            Some(started.elapsed().as_secs_f64() * 1e3),
            true,
        ))),
        Err(_) => {
            cache::forget(&weights_url).await;
            cache::forget(&config_url).await;
            None
        }
    }
}

/// `LoadHub`: from Cache Storage when kept there; else `config.json` (checked before the
/// weights are downloaded), then `model.safetensors` with progress, then both are kept.
pub async fn load_hub(
    engine: Rc<Engine>,
    r: Responder,
    model: HubModel,
    limits: DownloadLimits,
    control: Rc<Control>,
) -> Result<Reply, WebError> {
    let started = Instant::now();
    let device = engine.ready_device().await?;
    if let Some(reply) = from_cache(&engine, &r, &model, &device, started).await {
        return Ok(reply);
    }
    let name = model.label();
    r.stage(format!("{name}: reading config.json"));
    let config: Rc<str> = fetch_config(&model, limits, &control).await?.into();
    parse_hf_config(&config).map_err(|e| {
        let e = WebError::from(e).context(format!("{name}: config.json"));
        WebError::new(e.kind, format!("{}; {KEPT}", e.message))
    })?;
    let weights_url = model.file_url(WEIGHTS_FILE);
    let progress = ByteProgress::new(r, "downloading");
    let chunks = fetch::fetch_chunks_or(
        &weights_url,
        limits,
        &control,
        |done, total| progress.update(done, total),
        |status, code| refused(&model, WEIGHTS_FILE, status, code),
    )
    .await?;
    let loaded =
        models::load_staged(&engine, &r, chunks, &name, Some(&config), &device.device).await?;
    let load_ms = Some(started.elapsed().as_secs_f64() * 1e3);
    let info = models::install(&engine, loaded, load_ms, false);
    if let Some(source) = engine.model()?.source.clone() {
        let config_bytes = js_sys::Uint8Array::from(config.as_bytes());
        cache::keep(&model.file_url(CONFIG_FILE), &config_bytes).await;
        cache::keep(&weights_url, &source).await;
    }
    Ok(Reply::ModelReady(info))
}
