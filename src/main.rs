//! The NEPA web app's page: a Yew UI built by trunk for `wasm32-unknown-unknown`. It holds
//! no model: every computation runs in the engine worker (`crates/nepa-worker`), reached
//! through the typed protocol of `crates/nepa-protocol` (docs/web-architecture.md).
//!
//! Natively this binary only explains how to build the page; the native tools live in
//! `crates/nepa-cli`.

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod chart;
#[cfg(target_arch = "wasm32")]
mod compare;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod explore;
#[cfg(target_arch = "wasm32")]
mod finetune;
#[cfg(target_arch = "wasm32")]
mod hub;
#[cfg(target_arch = "wasm32")]
mod picture;
#[cfg(target_arch = "wasm32")]
mod platform;

#[cfg(target_arch = "wasm32")]
fn main() {
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
