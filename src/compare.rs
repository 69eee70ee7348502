//! The Compare tab: run the shared benchmark (`nepa::bench`) in the engine, drop in a report
//! made natively with `nepa bench --compare-run --report native.json`, and see both side by
//! side: step time and img/s with their ratio, the loss curves overlaid, and how far the two
//! output digests are apart. The engine only runs the benchmark; reading and comparing
//! reports is plain data (`nepa_types::report`), done here.

use std::rc::Rc;

use nepa_protocol::{DeviceInfo, Reply, Request};
use nepa_types::report::{Comparison, RunReport, compare};
use yew::prelude::*;

use crate::chart::{Chart, Series};
use crate::engine::EngineClient;
use crate::platform::files::{read_text, take_input_files};
use crate::platform::save::download_text;

/// A run report as the tab shows it: where it came from, the report, and its text (for the
/// export, byte for byte what the engine wrote).
#[derive(Clone, Debug, PartialEq)]
pub struct ReportView {
    /// "this browser" or the dropped file's name.
    name: String,
    report: RunReport,
    json: String,
}

impl ReportView {
    /// Reads a report's text; the error names the file and what is wrong with it.
    fn read(name: &str, json: String) -> Result<Self, String> {
        let report = RunReport::from_json(&json).map_err(|e| format!("{name}: {e}"))?;
        Ok(Self {
            name: name.into(),
            report,
            json,
        })
    }
}

#[derive(Clone, Default, PartialEq)]
pub struct CompareState {
    /// The report of the run in this browser.
    browser: Option<Rc<ReportView>>,
    /// A dropped report (native, or another browser's).
    other: Option<Rc<ReportView>>,
    progress: Option<String>,
    error: Option<String>,
}

pub enum CompareMsg {
    Progress(Option<String>),
    Browser(ReportView),
    Other(ReportView),
    Error(String),
}

impl Reducible for CompareState {
    type Action = CompareMsg;

    fn reduce(self: Rc<Self>, msg: CompareMsg) -> Rc<Self> {
        let mut s = Rc::unwrap_or_clone(self);
        match msg {
            CompareMsg::Progress(p) => s.progress = p,
            CompareMsg::Browser(r) => {
                s.browser = Some(Rc::new(r));
                s.error = None;
            }
            CompareMsg::Other(r) => {
                s.other = Some(Rc::new(r));
                s.error = None;
            }
            CompareMsg::Error(e) => s.error = Some(e),
        }
        Rc::new(s)
    }
}

type Dispatch = UseReducerDispatcher<CompareState>;

fn run_benchmark(engine: &EngineClient, dispatch: &Dispatch) {
    dispatch.dispatch(CompareMsg::Progress(Some("starting the benchmark…".into())));
    let d = dispatch.clone();
    engine.send(Request::Bench, None, move |reply, _| match reply {
        Reply::Progress(p) => d.dispatch(CompareMsg::Progress(Some(p.stage))),
        Reply::BenchReport { json } => {
            d.dispatch(CompareMsg::Progress(None));
            d.dispatch(match ReportView::read("this browser", json) {
                Ok(r) => CompareMsg::Browser(r),
                Err(e) => CompareMsg::Error(e),
            });
        }
        Reply::Failed(e) => {
            d.dispatch(CompareMsg::Progress(None));
            d.dispatch(CompareMsg::Error(e.message));
        }
        _ => d.dispatch(CompareMsg::Progress(None)),
    });
}

/// Reads a dropped report and checks it.
fn read_report(dispatch: &Dispatch, file: web_sys::File) {
    let d = dispatch.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let name = file.name();
        d.dispatch(match read_text(&file).await {
            Ok(text) => match ReportView::read(&name, text) {
                Ok(r) => CompareMsg::Other(r),
                Err(e) => CompareMsg::Error(e),
            },
            Err(e) => CompareMsg::Error(e.message),
        });
    });
}

#[derive(Properties, PartialEq)]
pub struct CompareProps {
    pub device: Option<Rc<DeviceInfo>>,
}

#[function_component(ComparePage)]
pub fn compare_page(props: &CompareProps) -> Html {
    let engine = use_context::<Rc<EngineClient>>().expect("the app provides the engine");
    let state = use_reducer(CompareState::default);
    let comparison = match (&state.browser, &state.other) {
        (Some(a), Some(b)) => Some(compare(&a.report, &b.report)),
        _ => None,
    };
    let on_run = {
        let (engine, dispatch) = (engine.clone(), state.dispatcher());
        Callback::from(move |_| run_benchmark(&engine, &dispatch))
    };
    let on_report = {
        let dispatch = state.dispatcher();
        Callback::from(move |e: Event| {
            if let Some(file) = take_input_files(&e).into_iter().next() {
                read_report(&dispatch, file);
            }
        })
    };
    let on_export = {
        let browser = state.browser.clone();
        Callback::from(move |_| {
            if let Some(b) = &browser {
                download_text("nepa-browser-report.json", &b.json, "application/json");
            }
        })
    };
    let backend = props
        .device
        .as_ref()
        .map_or("starting…".to_string(), |d| d.backend.clone());
    let description = props
        .device
        .as_ref()
        .map_or(String::new(), |d| d.compare_description.clone());
    html! {
        <section id="compare" class="compare">
            <h2>{ "Compare a browser run with a native run" }</h2>
            <p class="hint">{ description }
                <code>{ "nepa bench --compare-run --device flex --report native.json" }</code></p>
            <div class="inputs">
                <button id="run-bench" onclick={on_run} disabled={state.progress.is_some() || props.device.is_none()}>{ format!("Run the benchmark here ({backend})") }</button>
                <label class="button">{ "Drop in a native report…" }
                    <input id="native-report" type="file" accept=".json,application/json" onchange={on_report} />
                </label>
                <button id="export-report" onclick={on_export} disabled={state.browser.is_none()}>{ "Export the browser report" }</button>
            </div>
            if let Some(p) = &state.progress { <p id="bench-progress" class="busy">{ p.clone() }</p> }
            if let Some(e) = &state.error { <p id="compare-error" class="error">{ e.clone() }</p> }
            { table(&state) }
            if let Some(c) = &comparison { { comparison_view(c) } }
            { curves(&state) }
        </section>
    }
}

fn fmt(v: Option<f64>, unit: &str) -> String {
    v.map_or("—".into(), |v| format!("{v:.2}{unit}"))
}

fn table(state: &CompareState) -> Html {
    let reports: Vec<&Rc<ReportView>> = [&state.browser, &state.other]
        .into_iter()
        .flatten()
        .collect();
    if reports.is_empty() {
        return html! {};
    }
    let row = |f: &dyn Fn(&ReportView) -> String| {
        reports
            .iter()
            .map(|r| html! { <td>{ f(r) }</td> })
            .collect::<Html>()
    };
    html! {
        <table id="compare-table" class="compare-table">
            <tr><th></th>{ for reports.iter().map(|r| html! {
                <td><div>{ format!("{} ({})", r.name, r.report.tool) }</div><div class="adapter">{ format!("{} — {}", r.report.backend, r.report.adapter) }</div></td>
            }) }</tr>
            <tr><th>{ "train step (median)" }</th>{ row(&|r| fmt(r.report.step_ms_median(), " ms")) }</tr>
            <tr><th>{ "train img/s" }</th>{ row(&|r| fmt(r.report.train_images_per_sec(), "")) }</tr>
            <tr><th>{ "inference (median)" }</th>{ row(&|r| fmt(r.report.inference_ms_median(), " ms")) }</tr>
            <tr><th>{ "loss at last step" }</th>{ row(&|r| r.report.loss_curve().last().map_or("—".into(), |l| format!("{l:.5}"))) }</tr>
        </table>
    }
}

fn comparison_view(c: &Comparison) -> Html {
    html! {
        <div id="comparison">
            <p id="step-ratio">{ format!("browser / other step time: {}× · inference: {}×",
                fmt(c.step_time_ratio, ""), fmt(c.inference_time_ratio, "")) }</p>
            <p id="loss-diff">{ match c.max_loss_diff {
                Some(d) => format!("max |Δloss| over {} steps: {d:.3e}", c.common_steps),
                None => "no common steps".into(),
            } }</p>
            <p id="digest-diff">{ match (c.digest_max_abs_diff, c.digest_cosine) {
                (Some(d), Some(cos)) => format!("output digest (ẑ on the probe image, before training): max |Δẑ| {d:.3e}, cosine {cos:.6}"),
                _ => "the output digests are not comparable".into(),
            } }</p>
            if c.same_run {
                <p id="same-run">{ "same model config, seed and batch: the curves should coincide" }</p>
            } else {
                <p id="same-run" class="warning">{ format!("not the same run ({}): compare speed only", c.mismatch.join(", ")) }</p>
            }
        </div>
    }
}

fn curves(state: &CompareState) -> Html {
    let mut series = vec![];
    if let Some(b) = &state.browser {
        series.push(Series {
            label: format!("browser ({})", b.report.backend),
            color: "#1d4ed8",
            values: b.report.loss_curve(),
            dashed: false,
        });
    }
    if let Some(o) = &state.other {
        series.push(Series {
            label: format!("{} ({})", o.name, o.report.backend),
            color: "#dc2626",
            values: o.report.loss_curve(),
            dashed: true,
        });
    }
    if series.is_empty() {
        return html! {};
    }
    html! { <Chart id="compare-chart" title="NEPA loss per step (warm-up included)" series={series} width={520.0} height={220.0} /> }
}
