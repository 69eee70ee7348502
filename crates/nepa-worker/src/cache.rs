//! Checkpoints downloaded by URL, kept in Cache Storage (cache `nepa-checkpoints`, keyed by
//! URL) so the next load of the same URL reads them instead of the network. A hub model is
//! two entries (its `config.json` and `model.safetensors` resolve URLs), listed as one.

use nepa_protocol::{CachedCheckpoint, HubModel, Reply, WebError};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::hub::{self, CONFIG_FILE, PREPROCESSOR_FILE, WEIGHTS_FILE};
use crate::platform::describe;

#[wasm_bindgen(inline_js = r#"
const NAME = 'nepa-checkpoints';
function open() {
  if (!globalThis.caches) throw new Error('Cache Storage is not available in this browser context');
  return globalThis.caches.open(NAME);
}
export async function cache_match(url) {
  if (!globalThis.caches) return null;
  return (await (await open()).match(url)) || null;
}
export async function cache_put(url, bytes) {
  const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) };
  await (await open()).put(url, new Response(bytes, { headers }));
}
export async function cache_list() {
  const cache = await open();
  const out = [];
  for (const request of await cache.keys()) {
    const response = await cache.match(request);
    let size = Number(response && response.headers.get('content-length'));
    if (!Number.isFinite(size) || size <= 0) size = response ? (await response.blob()).size : 0;
    out.push([request.url, size]);
  }
  return out;
}
export async function cache_delete(url) {
  await (await open()).delete(url);
}
"#)]
extern "C" {
    fn cache_match(url: &str) -> js_sys::Promise;
    fn cache_put(url: &str, bytes: &js_sys::Uint8Array) -> js_sys::Promise;
    fn cache_list() -> js_sys::Promise;
    fn cache_delete(url: &str) -> js_sys::Promise;
}

/// The kept bytes of `url` (in JS memory), if any (an unreadable cache counts as none);
/// `on_hit` runs before a kept entry is read.
pub async fn read(url: &str, on_hit: impl Fn()) -> Option<js_sys::Uint8Array> {
    let value = JsFuture::from(cache_match(url)).await.ok()?;
    let response = value.dyn_into::<web_sys::Response>().ok()?;
    on_hit();
    let buffer = JsFuture::from(response.array_buffer().ok()?).await.ok()?;
    Some(js_sys::Uint8Array::new(&buffer))
}

/// Keeps `bytes` for `url`; a failure is logged, not fatal.
pub async fn keep(url: &str, bytes: &js_sys::Uint8Array) {
    if let Err(e) = JsFuture::from(cache_put(url, bytes)).await {
        web_sys::console::warn_1(
            &format!(
                "nepa-worker: could not keep {url} in Cache Storage: {}",
                describe(&e)
            )
            .into(),
        );
    }
}

/// Forgets `url` (a broken entry); errors are ignored.
pub async fn forget(url: &str) {
    let _ = JsFuture::from(cache_delete(url)).await;
}

/// `ListCache`: the kept checkpoints and their sizes.
pub async fn list() -> Result<Reply, WebError> {
    let value = JsFuture::from(cache_list())
        .await
        .map_err(|e| WebError::storage(format!("Cache Storage: {}", describe(&e))))?;
    let entries = js_sys::Array::from(&value)
        .iter()
        .filter_map(|entry| {
            let pair = js_sys::Array::from(&entry);
            let url = pair.get(0).as_string()?;
            // A hub model's config.json and preprocessor_config.json go with its weights.
            if [CONFIG_FILE, PREPROCESSOR_FILE]
                .iter()
                .any(|file| HubModel::from_file_url(&url, file).is_some())
            {
                return None;
            }
            Some(CachedCheckpoint {
                hub: HubModel::from_file_url(&url, WEIGHTS_FILE).map(|m| m.label()),
                url,
                bytes: pair.get(1).as_f64().unwrap_or(0.0) as u64,
            })
        })
        .collect();
    Ok(Reply::Cache(entries))
}

/// `DeleteCached`: forgets one entry (a hub model's weights with its other files), answers
/// the new list.
pub async fn delete(url: &str) -> Result<Reply, WebError> {
    if let Some(model) = HubModel::from_file_url(url, WEIGHTS_FILE) {
        hub::forget(&model).await;
    }
    JsFuture::from(cache_delete(url)).await.map_err(|e| {
        WebError::storage(format!(
            "Cache Storage could not delete {url}: {}",
            describe(&e)
        ))
    })?;
    list().await
}
