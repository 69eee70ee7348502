//! The app's own parts of the page: header, device problems, errors, inputs, gallery, tabs.

use yew::prelude::*;

use crate::app::Callbacks;
use crate::app::state::{AppMsg, AppState, Tab};
use crate::picture::Canvas;

type State = UseReducerHandle<AppState>;

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn header(state: &State) -> Html {
    let device_line = match &state.device {
        None => html! { <span id="device">{ "starting the compute device…" }</span> },
        Some(d) => html! {
            <span id="device">
                { format!("Compute: {} — {}", d.backend, d.adapter) }
                if let Some(reason) = &d.fallback_reason {
                    <span class="warning">{ format!(" (CPU fallback: {reason})") }</span>
                }
            </span>
        },
    };
    let model_line = match &state.model {
        None => html! { <span id="model">{ "loading the model…" }</span> },
        Some(m) => html! {
            <span id="model" data-version={m.version.to_string()}>
                if !m.trained { <span class="badge">{ "untrained" }</span>{ " " } }
                { m.label.clone() }
                if let Some(ms) = m.load_ms {
                    <span id="model-load" class="note">{ format!(" · loaded in {:.1} s{}, engine memory {}",
                        ms / 1e3, if m.from_cache { " from the browser cache" } else { "" }, mb(m.wasm_memory_bytes)) }</span>
                }
            </span>
        },
    };
    html! {
        <header>
            <h1>{ "NEPA — next-embedding prediction" }</h1>
            <p class="status">{ device_line }</p>
            <p class="status">{ model_line }</p>
        </header>
    }
}

/// A lost device (reload or continue on the CPU), or a software adapter passed over.
pub fn device_problems(state: &State, callbacks: &Callbacks) -> Html {
    let lost = state.device_lost.as_ref().map(|reason| html! {
        <div id="device-lost" class="errors">
            <p class="error">{ format!("The GPU device was lost ({reason}). Results computed so far are kept; the model must be loaded again.") }</p>
            <button id="reload" onclick={Callback::from(|_| { if let Some(w) = web_sys::window() { let _ = w.location().reload(); } })}>{ "Reload the page" }</button>
            { " " }
            <button id="use-cpu" onclick={callbacks.on_cpu.clone()}>{ "Continue on the CPU" }</button>
        </div>
    });
    let software = state
        .device
        .as_ref()
        .and_then(|d| d.software_adapter.clone())
        .map(|name| {
            html! {
                <p class="note">
                    <button id="use-software-gpu" onclick={callbacks.on_software_gpu.clone()}>
                        { format!("Use the software WebGPU adapter anyway ({name})") }
                    </button>
                </p>
            }
        });
    // One node each, present or not: a stable child count (docs/web-architecture.md, "Rendering").
    html! { <>{ lost.unwrap_or_default() }{ software.unwrap_or_default() }</> }
}

pub fn errors(state: &State) -> Html {
    if state.errors.is_empty() {
        return html! {};
    }
    let d = state.dispatcher();
    html! {
        <div id="errors" class="errors">
            { for state.errors.iter().map(|e| html! { <p class="error">{ e }</p> }) }
            <button onclick={Callback::from(move |_| d.dispatch(AppMsg::DismissErrors))}>{ "dismiss" }</button>
        </div>
    }
}

/// The model load in progress: a bar with bytes when they can be counted, else the stage.
fn loading(state: &State, callbacks: &Callbacks) -> Html {
    let Some(l) = &state.loading else {
        return html! {};
    };
    let p = &l.progress;
    let bar = match (p.done, p.total) {
        (Some(done), total) => html! {
            <>
                <progress id="download" max={total.unwrap_or(0).max(done).max(1).to_string()} value={done.to_string()} />
                <span>{ format!("{} {} / {}", p.stage, mb(done), total.map_or("?".into(), mb)) }</span>
            </>
        },
        (None, _) => html! { <><progress id="parse" /><span>{ format!("{}…", p.stage) }</span></> },
    };
    html! {
        <span id="loading">
            { bar }
            <button id="cancel-download" onclick={callbacks.on_cancel.clone()}>{ "Cancel" }</button>
        </span>
    }
}

fn cache_list(state: &State, callbacks: &Callbacks) -> Html {
    if state.cache.is_empty() {
        return html! {};
    }
    html! {
        <details id="cache" class="note">
            <summary>{ format!("{} checkpoint(s) kept in this browser (loaded by URL or hub id; reused instead of downloading again)", state.cache.len()) }</summary>
            <ul>
                { for state.cache.iter().map(|c| {
                    let (url, delete) = (c.url.clone(), callbacks.on_delete_cached.clone());
                    html! {
                        <li class="cached">{ format!("{} ({}) ", c.hub.as_ref().unwrap_or(&c.url), mb(c.bytes)) }
                            <button class="delete-cached" onclick={Callback::from(move |_| delete.emit(url.clone()))}>{ "delete" }</button>
                        </li>
                    }
                }) }
            </ul>
        </details>
    }
}

pub fn inputs(state: &State, callbacks: &Callbacks) -> Html {
    html! {
        <section class="inputs">
            <label class="button">{ "Add images or a .safetensors model…" }
                <input id="file-input" type="file" multiple=true onchange={callbacks.on_files.clone()} />
            </label>
            <span>{ "or drop files anywhere · model URL: " }</span>
            <input ref={callbacks.url_ref.clone()} id="model-url" type="url" placeholder="https://…/model.safetensors" size="40" />
            <button id="load-url" onclick={callbacks.on_url.clone()}>{ "load" }</button>
            { crate::hub::picker(&callbacks.hub_ref, &callbacks.on_pick, &callbacks.on_hub) }
            { loading(state, callbacks) }
            { cache_list(state, callbacks) }
        </section>
    }
}

pub fn gallery(state: &State) -> Html {
    html! {
        <section id="gallery" class="gallery">
            { for state.images.iter().enumerate().map(|(i, image)| {
                let d = state.dispatcher();
                let selected = state.selected == Some(i);
                html! {
                    <button class={classes!("thumb", selected.then_some("selected"))} title={image.name.clone()}
                        onclick={Callback::from(move |_| d.dispatch(AppMsg::Select(i)))}>
                        <Canvas picture={image.thumb.clone()} />
                        <span>{ image.name.clone() }</span>
                    </button>
                }
            }) }
        </section>
    }
}

pub fn tabs(state: &State) -> Html {
    let button = |tab: Tab, label: &'static str, id: &'static str| {
        let d = state.dispatcher();
        html! {
            <button id={id} class={classes!("tab", (state.tab == tab).then_some("active"))}
                onclick={Callback::from(move |_| d.dispatch(AppMsg::Tab(tab)))}>{ label }</button>
        }
    };
    html! {
        <nav class="tabs">
            { button(Tab::Explore, "Explore", "tab-explore") }
            { button(Tab::Finetune, "Fine-tune", "tab-finetune") }
            { button(Tab::Compare, "Compare", "tab-compare") }
        </nav>
    }
}
