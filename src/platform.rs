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
export async function opfs_write(name, bytes) {
  const root = await navigator.storage.getDirectory();
  const handle = await root.getFileHandle(name, { create: true });
  const writable = await handle.createWritable();
  await writable.write(bytes);
  await writable.close();
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
export function url_has_flag(flag) {
  return new URLSearchParams(location.search).has(flag);
}
"#)]
extern "C" {
    fn yield_to_browser(ms: u32) -> js_sys::Promise;
    fn download_bytes(name: &str, bytes: &[u8], mime: &str);
    #[wasm_bindgen(catch)]
    fn opfs_write(name: &str, bytes: &[u8]) -> Result<js_sys::Promise, JsValue>;
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

/// Writes a file in the origin-private file system (persists across reloads).
pub async fn store(name: &str, bytes: &[u8]) -> Result<(), String> {
    let promise = opfs_write(name, bytes).map_err(|e| format!("{e:?}"))?;
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
