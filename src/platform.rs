//! Small browser services the page needs beyond web-sys: yielding to the event loop,
//! downloads, the origin-private file system (OPFS) for keeping the last trained model, and
//! a JS hook for the device-lost signal. Written as a few lines of JS (wasm-bindgen inline
//! snippets) because the web-sys bindings for OPFS are still behind unstable flags.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = r#"
export function yield_to_browser(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
export function download_bytes(name, bytes, mime) {
  const url = URL.createObjectURL(new Blob([bytes], { type: mime }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
// Writes `name` so that a crash or a full disk never leaves it half-written: the bytes go to
// a temporary entry first, which is then moved into place.
export async function opfs_write_atomic(name, bytes) {
  const root = await navigator.storage.getDirectory();
  const partial = name + '.partial';
  const tmp = await root.getFileHandle(partial, { create: true });
  const writable = await tmp.createWritable();
  try {
    await writable.write(bytes);
    await writable.close();
  } catch (e) {
    await writable.abort().catch(() => {});
    await root.removeEntry(partial).catch(() => {});
    throw e;
  }
  if (typeof tmp.move === 'function') {
    try {
      await tmp.move(name);
      return;
    } catch (e) {
      // Some versions refuse to move onto an existing entry: remove it, then move.
      if (e?.name !== 'InvalidModificationError' && e?.name !== 'NoModificationAllowedError') throw e;
    }
    await root.removeEntry(name).catch(() => {});
    await tmp.move(name);
    return;
  }
  // No move(): copy the complete temporary file over the target. createWritable() commits
  // only on close(), so the target is replaced whole or not at all.
  const target = await root.getFileHandle(name, { create: true });
  const out = await target.createWritable();
  await out.write(await tmp.getFile());
  await out.close();
  await root.removeEntry(partial);
}
export async function opfs_remove(name) {
  const root = await navigator.storage.getDirectory();
  await root.removeEntry(name).catch((e) => { if (e?.name !== 'NotFoundError') throw e; });
}
export async function opfs_read(name) {
  try {
    const root = await navigator.storage.getDirectory();
    const handle = await root.getFileHandle(name);
    return new Uint8Array(await (await handle.getFile()).arrayBuffer());
  } catch (e) {
    if (e && e.name === 'NotFoundError') return null;
    throw e;
  }
}
export function set_global(name, value) { globalThis[name] = value; }
export function call_global(name, arg) {
  const f = globalThis[name];
  if (typeof f === 'function') f(arg);
}
export function hook_field(name, field) {
  const o = globalThis[name];
  return o == null ? undefined : o[field];
}
export function url_has_flag(flag) {
  return new URLSearchParams(location.search).has(flag);
}
"#)]
extern "C" {
    fn yield_to_browser(ms: u32) -> js_sys::Promise;
    fn download_bytes(name: &str, bytes: &[u8], mime: &str);
    #[wasm_bindgen(catch)]
    fn opfs_write_atomic(name: &str, bytes: &[u8]) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch)]
    fn opfs_remove(name: &str) -> Result<js_sys::Promise, JsValue>;
    fn hook_field(name: &str, field: &str) -> JsValue;
    #[wasm_bindgen(catch)]
    fn opfs_read(name: &str) -> Result<js_sys::Promise, JsValue>;
    fn set_global(name: &str, value: &JsValue);
    fn call_global(name: &str, arg: &JsValue);
    fn url_has_flag(flag: &str) -> bool;
}

/// Lets the browser paint and handle input (a macrotask boundary), then resumes.
pub async fn sleep(ms: u32) {
    let _ = JsFuture::from(yield_to_browser(ms)).await;
}

/// Hands `bytes` to the browser as a file download.
pub fn download(name: &str, bytes: &[u8], mime: &str) {
    download_bytes(name, bytes, mime);
}

/// Writes a file in the origin-private file system (persists across reloads), through a
/// temporary entry moved into place, so the previous file stays whole if writing fails.
pub async fn store(name: &str, bytes: &[u8]) -> Result<(), String> {
    let promise = opfs_write_atomic(name, bytes).map_err(|e| format!("{e:?}"))?;
    JsFuture::from(promise)
        .await
        .map(|_| ())
        .map_err(|e| format!("browser storage (OPFS) refused to save {name}: {e:?}"))
}

/// Reads a file from the origin-private file system; `None` if there is none.
pub async fn load(name: &str) -> Result<Option<Vec<u8>>, String> {
    let promise = opfs_read(name).map_err(|e| format!("{e:?}"))?;
    let value = JsFuture::from(promise)
        .await
        .map_err(|e| format!("browser storage (OPFS) could not read {name}: {e:?}"))?;
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    Ok(Some(js_sys::Uint8Array::new(&value).to_vec()))
}

/// Removes a file from the origin-private file system (no error if there is none).
pub async fn remove(name: &str) -> Result<(), String> {
    let promise = opfs_remove(name).map_err(|e| format!("{e:?}"))?;
    JsFuture::from(promise)
        .await
        .map(|_| ())
        .map_err(|e| format!("browser storage (OPFS) could not remove {name}: {e:?}"))
}

/// `globalThis[hook][field]` as a finite positive number, if a test set it (test hooks such
/// as `window.nepaDownloadLimits`; a real user never has them).
pub fn hook_number(hook: &str, field: &str) -> Option<f64> {
    hook_field(hook, field)
        .as_f64()
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// Makes a Rust closure callable from JS (and from the end-to-end tests) as `globalThis[name]`.
pub fn expose(name: &str, f: Closure<dyn Fn(JsValue)>) {
    set_global(name, f.as_ref());
    // The page lives as long as the closure must.
    f.forget();
}

/// Calls `globalThis[name](arg)` if the page registered it.
pub fn signal(name: &str, arg: &str) {
    call_global(name, &JsValue::from_str(arg));
}

/// Whether the page URL has `?flag` (e.g. `?cpu`).
pub fn has_flag(flag: &str) -> bool {
    url_has_flag(flag)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    (js_sys::Date::now() / 1e3) as u64
}
