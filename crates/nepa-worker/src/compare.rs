//! The Compare tab's benchmark (`nepa::bench::compare_run`) on the engine's device. The page
//! reads and compares reports itself (`nepa_types::report`).

use std::rc::Rc;

use nepa::bench::{BenchRun, HostDetails, HostInfo, compare_run};
use nepa_protocol::{ErrorKind, Reply, WebError};

use crate::bridge::Responder;
use crate::platform;
use crate::state::{ComputeDevice, Engine};
use crate::tasks::Control;

/// What the Compare run is, from its definition (`nepa::bench::compare_run`).
pub fn run_description() -> String {
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

fn host(device: &ComputeDevice) -> HostInfo {
    let memory = device.device.memory_pool_usage();
    HostInfo {
        tool: "browser".into(),
        created_unix: platform::now_unix(),
        backend: if device.fallback_reason.is_some() {
            "browser-flex"
        } else {
            "webgpu"
        }
        .into(),
        adapter: device.adapter.clone(),
        // The wasm build is single-threaded.
        threads: device.fallback_reason.as_ref().map(|_| 1),
        peak_memory_bytes: memory.map(|m| m.bytes_reserved),
        peak_memory_kind: memory.map(|_| "burn-memory-pool-reserved".into()),
        host: HostDetails {
            user_agent: Some(platform::user_agent()),
            ..HostDetails::default()
        },
        command: "web app, Compare tab".into(),
    }
}

fn failed(e: impl std::fmt::Display) -> WebError {
    WebError::model(format!("benchmark failed: {e}"))
}

async fn checkpoint(control: &Control) -> Result<(), WebError> {
    platform::sleep(0).await;
    if control.cancelled() {
        return Err(WebError::new(ErrorKind::Cancelled, "benchmark cancelled"));
    }
    Ok(())
}

/// `Bench`: the run with a progress line per step; cancellable between steps.
pub async fn bench(
    engine: Rc<Engine>,
    r: Responder,
    control: Rc<Control>,
) -> Result<Reply, WebError> {
    let device = engine.ready_device().await?;
    let (config, settings) = compare_run();
    let autodiff = device.device.clone().autodiff();
    r.stage("preparing the seeded model and batch…");
    checkpoint(&control).await?;
    let mut run = BenchRun::new(config, settings, &autodiff, None)
        .await
        .map_err(failed)?;
    while !run.train_done() {
        checkpoint(&control).await?;
        let s = run.train_step().await.map_err(failed)?;
        r.stage(format!(
            "training step {}/{}: {:.1} ms, loss {:.5}{}",
            s.step + 1,
            run.total_train_steps(),
            s.ms,
            s.loss,
            if s.warmup { " (warm-up)" } else { "" }
        ));
    }
    while !run.inference_done() {
        checkpoint(&control).await?;
        let ms = run.inference_run().await.map_err(failed)?;
        r.stage(format!(
            "inference run {}/{}: {ms:.1} ms",
            run.inference_ms.len(),
            run.total_inference_runs()
        ));
    }
    let report = run.report(&host(&device));
    Ok(Reply::BenchReport {
        json: report.to_json_pretty(),
    })
}
