//! The Fine-tune tab's component: its settings, its buttons and its sections.

use std::rc::Rc;

use nepa_protocol::{DeviceInfo, ModelInfo};
use nepa_types::finetune::FinetuneMode;
use yew::prelude::*;

use crate::engine::EngineClient;
use crate::finetune::actions;
use crate::finetune::callbacks::Callbacks;
use crate::finetune::state::{FinetuneState, RunSettings};
use crate::finetune::view;

#[derive(Properties, PartialEq)]
pub struct FinetuneProps {
    pub device: Option<Rc<DeviceInfo>>,
    pub model: Option<Rc<ModelInfo>>,
}

#[function_component(FinetunePage)]
pub fn finetune_page(props: &FinetuneProps) -> Html {
    let engine = use_context::<Rc<EngineClient>>().expect("the app provides the engine");
    let state = use_reducer(FinetuneState::default);
    let settings = RunSettings {
        mode: use_state(FinetuneMode::default),
        steps: use_state(|| 40usize),
        batch: use_state(|| 8usize),
    };
    let class_name = use_node_ref();
    // Restore the last trained model once the device is known (and again on a new one).
    {
        let (engine, dispatch) = (engine.clone(), state.dispatcher());
        let backend = props.device.as_ref().map(|d| d.backend.clone());
        use_effect_with(backend, move |backend| {
            if backend.is_some() {
                actions::restore(&engine, &dispatch);
            }
        });
    }
    let cb = Callbacks::new(&engine, &state, &settings, &class_name);
    let running = state.running();
    let model_label = props
        .model
        .as_ref()
        .map_or("none yet".to_string(), |m| m.label.clone());
    html! {
        <section id="finetune" class="finetune">
            <h2>{ "Fine-tune on your images" }</h2>
            <p class="hint">{ format!("Starts from the loaded model ({model_label}) with a new head; attention becomes bidirectional, as in the paper's fine-tuning.") }</p>
            { view::errors(&state) }
            <div class="inputs">
                <input ref={class_name} id="class-name" placeholder="class name" size="14" />
                <button id="add-class" onclick={cb.on_add_class.clone()} disabled={running}>{ "Add class" }</button>
                <button id="load-sample" onclick={cb.on_sample.clone()} disabled={running}>{ "Load sample set (Fashion-MNIST, 4 classes)" }</button>
            </div>
            <div id="classes" class="classes">{ view::class_cards(&engine, &state) }</div>
            { view::run_controls(&settings, running, state.paused(), &cb) }
            if let Some(m) = &state.message { <p class="busy">{ m.clone() }</p> }
            // `if`, not `for` over an Option: a section's child count must not change, or Yew
            // (matching unkeyed children from the end) re-creates every card and thumbnail
            // above when a run starts (docs/web-architecture.md, "Rendering").
            if let Some(p) = &state.progress { { view::progress(p) } }
            if let Some(t) = &state.trained { { view::trained(t, &state.predictions, &cb) } }
        </section>
    }
}
