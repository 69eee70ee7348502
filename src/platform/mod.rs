//! Browser services of the page that web-sys does not give in one call: the page's URL
//! flags, test hooks, and globals exposed to JS. Files and downloads are in the submodules.

pub mod files;
pub mod save;

use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function url_has_flag(flag) {
  return new URLSearchParams(location.search).has(flag);
}
export function url_param(name) {
  return new URLSearchParams(location.search).get(name) ?? undefined;
}
export function hook_field(name, field) {
  const o = globalThis[name];
  return o == null ? undefined : o[field];
}
export function set_global(name, value) { globalThis[name] = value; }
"#)]
extern "C" {
    fn url_has_flag(flag: &str) -> bool;
    #[wasm_bindgen(js_name = url_param)]
    fn url_param_js(name: &str) -> Option<String>;
    fn hook_field(name: &str, field: &str) -> JsValue;
    fn set_global(name: &str, value: &JsValue);
}

/// Whether the page URL has `?flag` (e.g. `?cpu`).
pub fn has_flag(flag: &str) -> bool {
    url_has_flag(flag)
}

/// The value of `?name=value` in the page's URL.
pub fn url_param(name: &str) -> Option<String> {
    url_param_js(name)
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
