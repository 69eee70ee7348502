//! The NEPA web app: a Yew page, built by trunk for `wasm32-unknown-unknown`.
//!
//! Natively this binary only explains how to build the page; the native tools live in
//! `crates/nepa-cli`.

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod chart;
#[cfg(target_arch = "wasm32")]
mod compare_page;
#[cfg(target_arch = "wasm32")]
mod download;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod finetune_page;
#[cfg(target_arch = "wasm32")]
mod gpu;
#[cfg(target_arch = "wasm32")]
mod platform;
#[cfg(target_arch = "wasm32")]
mod views;

#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    // A wasm "command" module re-runs every static constructor (cubecl/burn register many
    // `inventory` items) on each export call unless the constructors run once up front:
    // 3–4× slower otherwise (docs/feasibility.md §5.2).
    fn __wasm_call_ctors();
}

#[cfg(target_arch = "wasm32")]
fn main() {
    // SAFETY: called once, first thing, before any other wasm export runs.
    unsafe { __wasm_call_ctors() };
    console_error_panic_hook::set_once();
    yew::Renderer::<app::App>::new().render();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!(
        "nepa-web is the browser app: build and serve it with `trunk serve` \
         (see README.md). The native tools are in crates/nepa-cli."
    );
}
