//! The Fine-tune tab's sections: class cards, run controls, progress, the trained model.

use std::rc::Rc;

use nepa_protocol::{Prediction, TrainProgress, TrainedInfo};
use nepa_types::finetune::FinetuneMode;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::chart::{Chart, Series};
use crate::engine::EngineClient;
use crate::finetune::actions;
use crate::finetune::callbacks::Callbacks;
use crate::finetune::state::{FinetuneMsg, FinetuneState, RunSettings};
use crate::picture::Canvas;
use crate::platform::files::take_input_files;

type State = UseReducerHandle<FinetuneState>;

pub fn errors(state: &State) -> Html {
    if state.errors.is_empty() {
        return html! {};
    }
    let d = state.dispatcher();
    html! {
        <div id="finetune-errors" class="errors">
            { for state.errors.iter().map(|e| html! { <p class="error">{ e }</p> }) }
            <button onclick={Callback::from(move |_| d.dispatch(FinetuneMsg::DismissErrors))}>{ "dismiss" }</button>
        </div>
    }
}

pub fn class_cards(engine: &Rc<EngineClient>, state: &State) -> Html {
    let running = state.running();
    html! {
        { for state.classes.iter().enumerate().map(|(i, class)| {
            let (engine, dispatch) = (engine.clone(), state.dispatcher());
            let on_files = Callback::from(move |e: Event| actions::add_images(&engine, &dispatch, i, take_input_files(&e)));
            let dispatch = state.dispatcher();
            let remove = Callback::from(move |_| dispatch.dispatch(FinetuneMsg::RemoveClass(i)));
            html! {
                <div class="class-card">
                    <strong>{ format!("{} ({} images)", class.name, class.images.len()) }</strong>
                    <label class="button small">{ "add images…" }
                        <input class="class-input" type="file" multiple=true accept="image/*" onchange={on_files} />
                    </label>
                    <button onclick={remove} disabled={running}>{ "remove" }</button>
                    <div class="class-thumbs">
                        { for class.images.iter().take(12).map(|u| html! { <Canvas picture={u.thumb.clone()} /> }) }
                        if class.images.len() > 12 { <span>{ format!("+{}", class.images.len() - 12) }</span> }
                    </div>
                </div>
            }
        }) }
    }
}

pub fn run_controls(s: &RunSettings, running: bool, paused: bool, cb: &Callbacks) -> Html {
    let mode = s.mode.clone();
    let on_mode = Callback::from(move |e: Event| {
        let select: web_sys::HtmlSelectElement = e.target_unchecked_into();
        let value = select.value();
        mode.set(FinetuneMode::parse(&value).unwrap_or_default());
    });
    let number = |handle: UseStateHandle<usize>, lo: usize, hi: usize| {
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            if let Ok(v) = input.value().parse::<usize>() {
                handle.set(v.clamp(lo, hi));
            }
        })
    };
    html! {
        <div class="inputs">
            <label>{ "mode: " }
                <select id="mode" onchange={on_mode} disabled={running}>
                    { for FinetuneMode::ALL.iter().map(|m| html! { <option value={m.name()} selected={*s.mode == *m}>{ m.label() }</option> }) }
                </select>
            </label>
            <label>{ " steps: " }<input id="steps" type="number" min="1" max="5000" value={s.steps.to_string()} size="5" onchange={number(s.steps.clone(), 1, 5000)} disabled={running} /></label>
            <label>{ " batch: " }<input id="batch" type="number" min="1" max="64" value={s.batch.to_string()} size="3" onchange={number(s.batch.clone(), 1, 64)} disabled={running} /></label>
            <button id="train" onclick={cb.on_train.clone()} disabled={running}>{ "Train" }</button>
            <button id="pause" onclick={cb.on_pause.clone()} disabled={!running}>{ if paused { "Resume" } else { "Pause" } }</button>
            <button id="stop" onclick={cb.on_stop.clone()} disabled={!running}>{ "Stop" }</button>
        </div>
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

pub fn progress(p: &TrainProgress) -> Html {
    let last_loss = p.losses.last().copied();
    let window = p.batch_accuracy.len().min(10);
    let recent_acc = (window > 0).then(|| {
        p.batch_accuracy[p.batch_accuracy.len() - window..]
            .iter()
            .sum::<f64>()
            / window as f64
    });
    html! {
        <div class="train-progress">
            <progress id="train-progress" max={p.total.max(1).to_string()} value={p.step.to_string()} />
            <span id="train-status" data-losses={serde_json::to_string(&p.losses).unwrap_or_default()}>
                { format!("step {}/{}", p.step, p.total) }
                if let Some(l) = last_loss { { format!(" · loss {l:.4}") } }
                if let Some(r) = p.images_per_sec { { format!(" · {r:.1} img/s") } }
                if let Some(eta) = p.eta_s.filter(|_| p.running) { { format!(" · ETA {eta:.0} s") } }
                if p.paused { { " · paused" } }
                if !p.running { { " · finished" } }
            </span>
            if let Some(acc) = recent_acc {
                <p id="train-accuracy">{ format!("training-batch accuracy (last {window} steps): {:.1}%", 100.0 * acc) }</p>
            }
            if let (Some(first), Some(last)) = (p.memory.first(), p.memory.last()) {
                <p id="memory">{ format!("device memory in use: {} after step 1, {} now (reserved {} → {})",
                    mib(first.0), mib(last.0), mib(first.1), mib(last.1)) }</p>
            }
            <div class="charts">
                <Chart id="loss-chart" title="training loss (cross-entropy, label smoothing 0.1)"
                    series={vec![Series { label: "loss".into(), color: "#1d4ed8", values: p.losses.clone(), dashed: false }]} />
                <Chart id="accuracy-chart" title="training-batch accuracy" y_range={Some((0.0, 1.0))}
                    series={vec![Series { label: "accuracy".into(), color: "#059669", values: p.batch_accuracy.clone(), dashed: false }]} />
            </div>
        </div>
    }
}

pub fn trained(t: &Rc<TrainedInfo>, predictions: &[Prediction], cb: &Callbacks) -> Html {
    html! {
        <div id="trained" class="trained">
            <p id="trained-summary">{ t.summary.clone() }</p>
            <button id="download-model" onclick={cb.on_download.clone()}>{ "Download fine-tuned model (.safetensors, official keys)" }</button>
            <label class="button">{ "Classify images…" }
                <input id="classify-input" type="file" multiple=true accept="image/*" onchange={cb.on_classify.clone()} />
            </label>
            <div id="predictions">
                { for predictions.iter().map(|p| html! {
                    <div class="prediction">
                        <strong>{ p.name.clone() }</strong>
                        if let Some(e) = &p.error { <p class="error">{ e.message.clone() }</p> }
                        { for p.probabilities.iter().zip(&t.classes).map(|(prob, class)| html! {
                            <div class="prob"><span class="prob-label">{ class.clone() }</span>
                                <span class="prob-bar" style={format!("width:{:.0}px", 150.0 * prob)}></span>
                                <span>{ format!("{:.1}%", 100.0 * prob) }</span></div>
                        }) }
                    </div>
                }) }
            </div>
        </div>
    }
}
