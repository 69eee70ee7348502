//! The Compare tab: run the shared benchmark (`nepa::bench`) in the browser, drop in a report
//! made natively with `nepa bench --compare-run --report native.json`, and see both side by
//! side: step time and img/s with their ratio, the loss curves overlaid, and how far the two
//! output digests are apart.

use std::rc::Rc;

use nepa::bench::{BenchRun, HostDetails, HostInfo, RunReport, compare, compare_run};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use crate::app::{file_bytes, take_input_files};
use crate::chart::{Chart, Series};
use crate::gpu::ComputeDevice;
use crate::platform;

#[derive(Clone, PartialEq)]
struct Loaded {
    name: String,
    text: Rc<String>,
    report: Rc<RunReport>,
}

#[derive(Properties)]
pub struct CompareProps {
    pub device: Rc<ComputeDevice>,
}

impl PartialEq for CompareProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.device, &other.device)
    }
}

fn report_backend(device: &ComputeDevice) -> &'static str {
    if device.fallback_reason.is_some() {
        "browser-flex"
    } else {
        "webgpu"
    }
}

async fn run_benchmark(
    device: Rc<ComputeDevice>,
    progress: UseStateHandle<Option<String>>,
) -> Result<Loaded, String> {
    let show = |line: String| progress.set(Some(line));
    let (config, settings) = compare_run();
    let autodiff = device.device.clone().autodiff();
    show("preparing the seeded model and batch…".into());
    platform::sleep(16).await;
    let mut run = BenchRun::new(config, settings, &autodiff, None)
        .await
        .map_err(|e| e.to_string())?;
    while !run.train_done() {
        let r = run.train_step().await.map_err(|e| e.to_string())?;
        show(format!(
            "training step {}/{}: {:.1} ms, loss {:.5}{}",
            r.step + 1,
            run.total_train_steps(),
            r.ms,
            r.loss,
            if r.warmup { " (warm-up)" } else { "" }
        ));
        platform::sleep(0).await;
    }
    while !run.inference_done() {
        let ms = run.inference_run().await.map_err(|e| e.to_string())?;
        show(format!(
            "inference run {}/{}: {ms:.1} ms",
            run.inference_ms.len(),
            run.total_inference_runs()
        ));
        platform::sleep(0).await;
    }
    let memory = device.device.memory_pool_usage();
    let user_agent = web_sys::window()
        .and_then(|w| w.navigator().user_agent().ok())
        .unwrap_or_default();
    let host = HostInfo {
        tool: "browser".into(),
        created_unix: platform::now_unix(),
        backend: report_backend(&device).into(),
        adapter: device.adapter.clone(),
        // The wasm build is single-threaded.
        threads: device.fallback_reason.as_ref().map(|_| 1),
        peak_memory_bytes: memory.map(|m| m.bytes_reserved),
        peak_memory_kind: memory.map(|_| "burn-memory-pool-reserved".into()),
        host: HostDetails {
            user_agent: Some(user_agent),
            ..HostDetails::default()
        },
        command: "web app, Compare tab".into(),
    };
    let report = run.report(&host);
    Ok(Loaded {
        name: "this browser".into(),
        text: Rc::new(report.to_json_pretty()),
        report: Rc::new(report),
    })
}

/// What the Compare run is, from its definition (`nepa::bench::compare_run`).
fn run_description() -> String {
    let (c, s) = compare_run();
    format!(
        "Both sides run the same benchmark: a host-seeded model (D {}, {} blocks, {} heads, {}×{} px / patch {}), \
         one seeded batch of {}, {} warm-up + {} timed NEPA training steps (lr {}), then {} inference runs. Native: ",
        c.hidden_size,
        c.num_hidden_layers,
        c.num_attention_heads,
        c.image_size[0],
        c.image_size[1],
        c.patch_size,
        s.batch,
        s.warmup,
        s.steps,
        s.lr,
        s.runs
    )
}

fn fmt(v: Option<f64>, unit: &str) -> String {
    v.map_or("—".into(), |v| format!("{v:.2}{unit}"))
}

#[function_component(ComparePage)]
pub fn compare_page(props: &CompareProps) -> Html {
    // Separate handles: the benchmark and a dropped report update independently.
    let browser = use_state(|| None::<Loaded>);
    let other = use_state(|| None::<Loaded>);
    let progress = use_state(|| None::<String>);
    let error = use_state(|| None::<String>);
    let running = progress.is_some();

    let on_run = {
        let (browser, progress, error) = (browser.clone(), progress.clone(), error.clone());
        let device = props.device.clone();
        Callback::from(move |_| {
            let (browser, progress, error) = (browser.clone(), progress.clone(), error.clone());
            let device = device.clone();
            spawn_local(async move {
                let result = run_benchmark(device, progress.clone()).await;
                progress.set(None);
                match result {
                    Ok(loaded) => {
                        browser.set(Some(loaded));
                        error.set(None);
                    }
                    Err(e) => error.set(Some(format!("benchmark failed: {e}"))),
                }
            });
        })
    };
    let on_report = {
        let (other, error) = (other.clone(), error.clone());
        Callback::from(move |e: Event| {
            let Some(file) = take_input_files(&e).into_iter().next() else {
                return;
            };
            let (other, error) = (other.clone(), error.clone());
            spawn_local(async move {
                let parsed = file_bytes(&file)
                    .await
                    .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8 text".to_string()))
                    .and_then(|text| {
                        let report = RunReport::from_json(&text).map_err(|e| e.to_string())?;
                        Ok((text, report))
                    });
                match parsed {
                    Ok((text, report)) => {
                        other.set(Some(Loaded {
                            name: file.name(),
                            text: Rc::new(text),
                            report: Rc::new(report),
                        }));
                        error.set(None);
                    }
                    Err(e) => error.set(Some(format!("{}: {e}", file.name()))),
                }
            });
        })
    };
    let on_export = {
        let browser = (*browser).clone();
        Callback::from(move |_| {
            if let Some(b) = &browser {
                platform::download(
                    "nepa-browser-report.json",
                    b.text.as_bytes(),
                    "application/json",
                );
            }
        })
    };

    let column = |l: &Loaded| {
        let s = &l.report;
        html! {
            <td>
                <div>{ format!("{} ({})", l.name, s.tool) }</div>
                <div class="adapter">{ format!("{} — {}", s.backend, s.adapter) }</div>
            </td>
        }
    };
    let rows = |f: &dyn Fn(&RunReport) -> String| {
        [&*browser, &*other]
            .into_iter()
            .flatten()
            .map(|l| html! { <td>{ f(&l.report) }</td> })
            .collect::<Html>()
    };
    let comparison = match (&*browser, &*other) {
        (Some(a), Some(b)) => Some(compare(&a.report, &b.report)),
        _ => None,
    };
    let mut curves = vec![];
    if let Some(b) = &*browser {
        curves.push(Series {
            label: format!("browser ({})", b.report.backend),
            color: "#1d4ed8",
            values: b.report.loss_curve(),
            dashed: false,
        });
    }
    if let Some(o) = &*other {
        curves.push(Series {
            label: format!("{} ({})", o.name, o.report.backend),
            color: "#dc2626",
            values: o.report.loss_curve(),
            dashed: true,
        });
    }

    html! {
        <section id="compare" class="compare">
            <h2>{ "Compare a browser run with a native run" }</h2>
            <p class="hint">{ run_description() }
                <code>{ "nepa bench --compare-run --device flex --report native.json" }</code></p>
            <div class="inputs">
                <button id="run-bench" onclick={on_run} disabled={running}>{ format!("Run the benchmark here ({})", props.device.backend) }</button>
                <label class="button">{ "Drop in a native report…" }
                    <input id="native-report" type="file" accept=".json,application/json" onchange={on_report} />
                </label>
                <button id="export-report" onclick={on_export} disabled={browser.is_none()}>{ "Export the browser report" }</button>
            </div>
            if let Some(p) = &*progress { <p id="bench-progress" class="busy">{ p.clone() }</p> }
            if let Some(e) = &*error { <p id="compare-error" class="error">{ e.clone() }</p> }
            if browser.is_some() || other.is_some() {
                <table id="compare-table" class="compare-table">
                    <tr><th></th>{ for [&*browser, &*other].into_iter().flatten().map(column) }</tr>
                    <tr><th>{ "train step (median)" }</th>{ rows(&|s| fmt(s.step_ms_median(), " ms")) }</tr>
                    <tr><th>{ "train img/s" }</th>{ rows(&|s| fmt(s.train_images_per_sec(), "")) }</tr>
                    <tr><th>{ "inference (median)" }</th>{ rows(&|s| fmt(s.inference_ms_median(), " ms")) }</tr>
                    <tr><th>{ "loss at last step" }</th>{ rows(&|s| s.loss_curve().last().map_or("—".into(), |l| format!("{l:.5}"))) }</tr>
                </table>
            }
            if let Some(c) = &comparison {
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
            if !curves.is_empty() {
                <Chart id="compare-chart" title="NEPA loss per step (warm-up included)" series={curves} width={520.0} height={220.0} />
            }
        </section>
    }
}
