//! Models from a hub by id (docs/web-architecture.md, "Models from a hub"): `config.json`,
//! `preprocessor_config.json` (when the repository has one) and `model.safetensors` from
//! `{hub}/{id}/resolve/{revision}/…` (fetch follows the hub's redirect to its file host), all
//! kept in Cache Storage under their resolve URLs, so the next load of the same id and
//! revision asks the network nothing.

use std::cell::Cell;
use std::rc::Rc;

use burn::tensor::Device;
use nepa::checkpoint::{
    HubPreprocessor, load_classifier, parse_hf_config, parse_hf_preprocessor_config,
};
use nepa::{LoadOptions, NepaConfig, NepaError};
use nepa_protocol::{DownloadLimits, HubModel, Reply, WebError};
use web_time::Instant;

use crate::bridge::{ByteProgress, Responder};
use crate::state::{ComputeDevice, Engine, HubClassifier, HubFiles, LoadedModel};
use crate::tasks::Control;
use crate::{cache, fetch, models};

pub const CONFIG_FILE: &str = "config.json";
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";
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

/// The classifier's preprocessing: `preprocessor_config.json` as written, else (a repository
/// without one) `ViTImageProcessor`'s defaults, which are the official transform.
fn preprocessor(files: &HubFiles, config: &NepaConfig) -> Result<HubPreprocessor, NepaError> {
    match &files.preprocessor {
        Some(json) => parse_hf_preprocessor_config(json, config),
        None => Ok(HubPreprocessor::official(config)),
    }
}

/// Builds a hub model: the architecture from its `config.json`; a classifier (head, class
/// names and preprocessing) when the config has `id2label` and the file a head, else the
/// backbone.
pub fn build(
    bytes: &[u8],
    name: &str,
    files: &Rc<HubFiles>,
    device: &Device,
) -> Result<LoadedModel, WebError> {
    let hub = parse_hf_config(&files.config)
        .map_err(|e| WebError::from(e).context(format!("{name}: {CONFIG_FILE}")))?;
    let Some(classes) = hub.classes.filter(|_| has_head(bytes)) else {
        let mut loaded = models::build(bytes, name, hub.config, device)?;
        loaded.hub_files = Some(files.clone());
        return Ok(loaded);
    };
    let config = hub.config;
    let preprocessor = preprocessor(files, &config).map_err(|e| WebError::from(e).context(name))?;
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
        hub_files: Some(files.clone()),
        classifier: Some(Rc::new(HubClassifier {
            model: classifier,
            classes,
            preprocessor,
        })),
    })
}

/// A hub text file (`config.json`, `preprocessor_config.json`) under the limits (and a cap
/// of its own); `None` for an optional file the repository does not have (HTTP 404).
async fn fetch_text(
    model: &HubModel,
    file: &str,
    optional: bool,
    limits: DownloadLimits,
    control: &Control,
) -> Result<Option<String>, WebError> {
    let url = model.file_url(file);
    let limits = DownloadLimits {
        cap_bytes: limits.cap_bytes.min(MAX_CONFIG_BYTES),
        ..limits
    };
    let absent = Cell::new(false);
    let fetched = fetch::fetch_chunks_or(
        &url,
        limits,
        control,
        |_, _| {},
        |status, code| {
            absent.set(optional && status == 404);
            refused(model, file, status, code)
        },
    )
    .await;
    let chunks = match fetched {
        Err(_) if absent.get() => return Ok(None),
        fetched => fetched?,
    };
    let bytes = fetch::into_wasm_memory(&url, &chunks, MAX_CONFIG_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        WebError::bad_input(format!(
            "{}: {file} is not UTF-8 text; {KEPT}",
            model.label()
        ))
    })?;
    Ok(Some(text))
}

/// The model from Cache Storage, when its files are kept there; a kept model that does not
/// load is forgotten (and downloaded again).
async fn from_cache(
    engine: &Engine,
    r: &Responder,
    model: &HubModel,
    device: &ComputeDevice,
    started: Instant,
) -> Option<Reply> {
    let text = |bytes: js_sys::Uint8Array| String::from_utf8(bytes.to_vec()).ok();
    let config = text(cache::read(&model.file_url(CONFIG_FILE), || {}).await?)?;
    // Kept whenever the repository had one.
    let preprocessor = match cache::read(&model.file_url(PREPROCESSOR_FILE), || {}).await {
        Some(bytes) => Some(text(bytes)?),
        None => None,
    };
    let files = Rc::new(HubFiles {
        config,
        preprocessor,
    });
    let weights_url = model.file_url(WEIGHTS_FILE);
    let bytes = cache::read(&weights_url, || r.stage("reading from the browser cache")).await?;
    let name = model.label();
    match models::load_staged(engine, r, vec![bytes], &name, Some(&files), &device.device).await {
        Ok(loaded) => Some(Reply::ModelReady(models::install(
            engine,
            loaded,
            Some(started.elapsed().as_secs_f64() * 1e3),
            true,
        ))),
        Err(_) => {
            forget(model).await;
            None
        }
    }
}

/// Forgets every file of `model` kept in Cache Storage.
pub async fn forget(model: &HubModel) {
    for file in [CONFIG_FILE, PREPROCESSOR_FILE, WEIGHTS_FILE] {
        cache::forget(&model.file_url(file)).await;
    }
}

/// `LoadHub`: from Cache Storage when kept there; else `config.json` and
/// `preprocessor_config.json` (both checked before the weights are downloaded), then
/// `model.safetensors` with progress, then all are kept.
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
    let unusable = |what: String, e: NepaError| {
        let e = WebError::from(e).context(what);
        WebError::new(e.kind, format!("{}; {KEPT}", e.message))
    };
    r.stage(format!("{name}: reading {CONFIG_FILE}"));
    let config = fetch_text(&model, CONFIG_FILE, false, limits, &control)
        .await?
        .unwrap_or_default();
    let hub =
        parse_hf_config(&config).map_err(|e| unusable(format!("{name}: {CONFIG_FILE}"), e))?;
    r.stage(format!("{name}: reading {PREPROCESSOR_FILE}"));
    let preprocessor = fetch_text(&model, PREPROCESSOR_FILE, true, limits, &control).await?;
    let files = Rc::new(HubFiles {
        config,
        preprocessor,
    });
    if hub.classes.is_some() {
        // Its errors name the file.
        self::preprocessor(&files, &hub.config).map_err(|e| unusable(name.clone(), e))?;
    }
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
        models::load_staged(&engine, &r, chunks, &name, Some(&files), &device.device).await?;
    let load_ms = Some(started.elapsed().as_secs_f64() * 1e3);
    let info = models::install(&engine, loaded, load_ms, false);
    if let Some(source) = engine.model()?.source.clone() {
        let keep_text = |file: &str, text: &str| {
            let url = model.file_url(file);
            let bytes = js_sys::Uint8Array::from(text.as_bytes());
            async move { cache::keep(&url, &bytes).await }
        };
        keep_text(CONFIG_FILE, &files.config).await;
        if let Some(json) = &files.preprocessor {
            keep_text(PREPROCESSOR_FILE, json).await;
        }
        cache::keep(&weights_url, &source).await;
    }
    Ok(Reply::ModelReady(info))
}
