//! Hands bytes to the user as a file download.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function download_blob(name, bytes, mime) {
  const url = URL.createObjectURL(new Blob([bytes], { type: mime }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
"#)]
extern "C" {
    fn download_blob(name: &str, bytes: &JsValue, mime: &str);
}

/// Downloads bytes that live in JS (a payload from the engine: never copied into the page).
pub fn download_js(name: &str, bytes: &js_sys::Uint8Array, mime: &str) {
    download_blob(name, bytes, mime);
}

/// Downloads text made by the page (a run report).
pub fn download_text(name: &str, text: &str, mime: &str) {
    download_blob(name, &JsValue::from_str(text), mime);
}
