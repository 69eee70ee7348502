//! Models from a Hugging Face-style hub: the picker (the official NEPA models and a field
//! for any `org/name[@revision]`) and the classes of a classifier beside the maps. The hub's
//! address is `https://huggingface.co` unless the page's URL says `?hub=…`.

mod classes;

pub use classes::TopClassesPanel;

use nepa_protocol::{DEFAULT_HUB, OFFICIAL_MODELS};
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::platform;

/// The hub ids are resolved on: `?hub=http://127.0.0.1:8080` (tests, mirrors) or the default.
pub fn hub_address() -> String {
    platform::url_param("hub")
        .map(|h| h.trim().trim_end_matches('/').to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HUB.to_string())
}

/// Picking an official model fills the id field.
pub fn on_pick(field: NodeRef) -> Callback<Event> {
    Callback::from(move |e: Event| {
        let picked = e
            .target_dyn_into::<HtmlSelectElement>()
            .map(|s| s.value())
            .unwrap_or_default();
        if let Some(input) = field.cast::<HtmlInputElement>()
            && !picked.is_empty()
        {
            input.set_value(&picked);
        }
    })
}

/// The picker: official models, an id field and its load button.
pub fn picker(field: &NodeRef, on_pick: &Callback<Event>, on_load: &Callback<MouseEvent>) -> Html {
    let hub = hub_address();
    html! {
        <p id="hub" class="hub">
            <span>{ "Model from the hub: " }</span>
            <select id="hub-model" onchange={on_pick.clone()}>
                <option value="">{ "the paper's models…" }</option>
                { for OFFICIAL_MODELS.iter().map(|m| html! {
                    <option value={m.id}>{ format!("{} — {} MB — {}", m.id, m.megabytes, m.about) }</option>
                }) }
            </select>
            <input ref={field.clone()} id="hub-id" type="text" placeholder="org/name or org/name@revision" size="40" />
            <button id="load-hub" onclick={on_load.clone()}>{ "load from the hub" }</button>
            <span class="note">{ format!(" ({hub})") }</span>
        </p>
    }
}
