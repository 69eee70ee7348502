//! Fine-tuning on the page's classes with the crate's driver (`nepa::finetune::FinetuneRun`,
//! the one `nepa finetune` runs), step by step with Pause and Stop; a completed run's model
//! is kept in browser storage (OPFS).

use std::rc::Rc;

use nepa::checkpoint::{classifier_tensors, classifier_to_safetensors_async};
use nepa::data::ImageSet;
use nepa::finetune::{FinetuneMode, FinetuneRun, FinetuneSettings, evaluate};
use nepa::{NepaError, StepOutcome};
use nepa_protocol::{ErrorKind, FinetuneRequest, Reply, TrainProgress, WebError};
use web_time::Instant;

use crate::bridge::Responder;
use crate::state::{ComputeDevice, Engine, Trained};
use crate::tasks::Control;
use crate::trained::{self, OLD_STORED_INFO, STORED_MODEL, install};
use crate::{platform, storage};

/// The share of each run's images held out for the accuracy shown afterwards (a seeded
/// split, the crate's, as `nepa finetune --val-fraction 0.2`), when there are 10 or more.
const HELD_OUT_FRACTION: f64 = 0.2;
/// The page's preset peak learning rate.
const DEFAULT_LR: f64 = 1e-3;
const STORAGE_UNCHANGED: &str = "the model in browser storage is unchanged";

/// How a training run ended.
enum Ending {
    Completed,
    /// The user pressed Stop.
    Stopped,
    /// A step's loss or gradient norm was not finite: the driver's message.
    Diverged(String),
}

fn model_error(e: impl std::fmt::Display) -> WebError {
    WebError::model(format!("training stopped: {e}"))
}

/// The classes as the crate's labelled image set (label i = class i), checked.
fn image_set(engine: &Engine, request: &FinetuneRequest) -> Result<ImageSet, WebError> {
    if request.classes.len() < 2 {
        return Err(WebError::bad_input("make at least two classes"));
    }
    let mut pairs = vec![];
    for (label, class) in request.classes.iter().enumerate() {
        if class.images.is_empty() {
            return Err(WebError::bad_input(format!(
                "class \"{}\" has no images",
                class.name
            )));
        }
        for &id in &class.images {
            pairs.push((engine.image(id)?.image.clone(), label));
        }
    }
    let names = request.classes.iter().map(|c| c.name.clone()).collect();
    ImageSet::labelled(pairs, names, "your images").map_err(WebError::from)
}

fn settings(request: &FinetuneRequest) -> Result<FinetuneSettings, WebError> {
    let mode = request.mode;
    let lr = request
        .lr
        .filter(|lr| lr.is_finite() && *lr > 0.0)
        .unwrap_or(DEFAULT_LR);
    let mut settings =
        FinetuneSettings::quick(mode, request.steps.max(1), request.batch.max(1), lr);
    // One non-finite step stops the run: LoRA's optimizer moments cannot be rolled back, and
    // a page run is short enough to start again.
    settings.max_bad_steps = 1;
    Ok(settings)
}

/// Waits while paused (reporting it at most every 500 ms); whether the user pressed Stop.
async fn wait_unless_stopped(
    r: &Responder,
    control: &Control,
    progress: &mut TrainProgress,
) -> bool {
    platform::sleep(0).await;
    let mut waited = 0;
    while control.paused() && !control.cancelled() {
        if waited % 5 == 0 {
            progress.paused = true;
            r.reply(Reply::TrainStep(progress.clone()));
        }
        waited += 1;
        platform::sleep(100).await;
    }
    if progress.paused {
        progress.paused = false;
        r.reply(Reply::TrainStep(progress.clone()));
    }
    control.cancelled()
}

/// Runs the steps; how it ended. `progress` holds the losses and rates.
async fn run_steps(
    r: &Responder,
    run: &mut FinetuneRun,
    control: &Control,
    device: &ComputeDevice,
    batch: usize,
    progress: &mut TrainProgress,
) -> Result<Ending, WebError> {
    let total = progress.total;
    let mut step_seconds = vec![];
    while !run.is_done() {
        if wait_unless_stopped(r, control, progress).await {
            return Ok(Ending::Stopped);
        }
        let start = Instant::now();
        let record = run.step().await.map_err(model_error)?;
        if let StepOutcome::Diverged(message) = record.outcome {
            return Ok(Ending::Diverged(message));
        }
        step_seconds.push(start.elapsed().as_secs_f64());
        // The first step compiles shaders: leave it out of the rate.
        let warm = step_seconds
            .get(1..)
            .filter(|w| !w.is_empty())
            .unwrap_or(&step_seconds);
        let mean = warm.iter().sum::<f64>() / warm.len().max(1) as f64;
        progress.step = record.step + 1;
        progress.losses.push(record.loss as f64);
        progress.batch_accuracy.push(record.batch_accuracy);
        progress.images_per_sec = Some(batch as f64 / mean.max(1e-9));
        progress.eta_s = Some(mean * total.saturating_sub(record.step + 1) as f64);
        if let Some(m) = device.device.memory_pool_usage() {
            progress.memory.push((m.bytes_in_use, m.bytes_reserved));
        }
        r.reply(Reply::TrainStep(progress.clone()));
    }
    Ok(Ending::Completed)
}

/// `Finetune`: `TrainStep`s, then `Trained` (or `Failed` when nothing was trained).
pub async fn finetune(
    engine: Rc<Engine>,
    r: Responder,
    request: FinetuneRequest,
    control: Rc<Control>,
) -> Result<Reply, WebError> {
    let base = engine.model()?;
    let device = engine.ready_device().await?;
    let settings = settings(&request)?;
    let all = image_set(&engine, &request)?;
    let fraction = if all.len() >= 10 {
        HELD_OUT_FRACTION
    } else {
        0.0
    };
    let (train_set, held_out) = all
        .split_validation(fraction, settings.seed)
        .map_err(WebError::from)?;
    let batch = settings.batch_size.min(train_set.len());
    let mode = settings.mode;
    let autodiff = device.device.clone().autodiff();
    let mut run = FinetuneRun::new(
        base.model.clone(),
        &base.config,
        train_set,
        settings,
        &autodiff,
    )
    .map_err(model_error)?;
    let mut progress = TrainProgress {
        total: run.total_steps(),
        running: true,
        ..TrainProgress::default()
    };
    r.reply(Reply::TrainStep(progress.clone()));
    let ending = run_steps(&r, &mut run, &control, &device, batch, &mut progress).await?;
    progress.running = false;
    r.reply(Reply::TrainStep(progress.clone()));
    let done = Done {
        steps: progress.step,
        total: progress.total,
        mode,
        ending,
    };
    finish(&engine, &r, run, &device, held_out, done).await
}

/// Where a run stopped.
struct Done {
    steps: usize,
    total: usize,
    mode: FinetuneMode,
    ending: Ending,
}

fn nothing_trained(ending: &Ending) -> WebError {
    match ending {
        Ending::Diverged(message) => WebError::model(format!(
            "{message} Nothing was trained; {STORAGE_UNCHANGED}."
        )),
        _ => WebError::new(
            ErrorKind::Cancelled,
            format!("stopped before the first step: nothing was trained; {STORAGE_UNCHANGED}."),
        ),
    }
}

fn accuracy_text(accuracy: f64, held_out: usize) -> String {
    if held_out == 0 {
        return "no held-out images (10+ images needed)".to_string();
    }
    let correct = (accuracy * held_out as f64).round() as usize;
    format!(
        "held-out accuracy {:.1}% ({correct}/{held_out})",
        100.0 * accuracy
    )
}

/// Evaluates, serialises and (for a completed run) stores the model; answers `Trained`.
async fn finish(
    engine: &Engine,
    r: &Responder,
    run: FinetuneRun,
    device: &ComputeDevice,
    held_out: ImageSet,
    done: Done,
) -> Result<Reply, WebError> {
    if done.steps == 0 {
        return Err(nothing_trained(&done.ending));
    }
    r.stage("evaluating and saving…");
    platform::sleep(0).await;
    let model = run.model();
    let config = run.config().clone();
    let names: Vec<String> = run.classes().to_vec();
    // Refuses non-finite weights: such a model is neither kept nor stored.
    let bytes =
        match classifier_to_safetensors_async(&classifier_tensors(&model), &config, &names).await {
            Ok(bytes) => bytes,
            Err(e @ NepaError::NonFinite { .. }) => {
                let why = match &done.ending {
                    Ending::Diverged(message) => format!("{message} "),
                    _ => String::new(),
                };
                return Err(WebError::model(format!(
                    "{why}The trained model is not kept: {e}; {STORAGE_UNCHANGED}."
                )));
            }
            Err(e) => return Err(model_error(e)),
        };
    let accuracy = evaluate(&model, &config, &held_out, 16, &device.device)
        .await
        .map_err(model_error)?;
    let summary = format!(
        "{} · {} steps · {} classes ({}) · {}",
        done.mode.label(),
        done.steps,
        names.len(),
        names.join(", "),
        accuracy_text(accuracy, held_out.len())
    );
    let (summary, ending) = ending_note(done, summary, &bytes).await;
    let trained = Trained {
        model,
        config,
        classes: names,
        bytes: Rc::new(bytes),
        summary,
    };
    Ok(install(engine, trained, ending))
}

/// The summary's tail and the status or error for how the run ended; only a completed run
/// replaces the stored model (a stopped or diverged one stays on the page, where it can be
/// downloaded).
async fn ending_note(done: Done, mut summary: String, bytes: &[u8]) -> (String, trained::Ending) {
    let (steps, total) = (done.steps, done.total);
    let not_stored = format!(
        "kept on this page only, not in browser storage ({STORAGE_UNCHANGED}): download it to \
         keep it"
    );
    let ending = match done.ending {
        Ending::Completed => {
            let stored = async {
                storage::store(STORED_MODEL, bytes).await?;
                // The old two-file layout's class list, if any, would only mislead.
                storage::remove(OLD_STORED_INFO).await
            }
            .await;
            trained::Ending {
                status: None,
                error: stored.err().map(|e| {
                    format!(
                        "{e} — the model is still here until you leave the page; download it \
                         to keep it"
                    )
                }),
            }
        }
        Ending::Stopped => {
            summary.push_str(&format!(" · stopped at step {steps}/{total}"));
            trained::Ending {
                status: Some(format!(
                    "stopped at step {steps}/{total}: the partly trained model is {not_stored}."
                )),
                error: None,
            }
        }
        Ending::Diverged(message) => {
            summary.push_str(&format!(" · diverged after step {steps}/{total}"));
            trained::Ending {
                status: None,
                error: Some(format!(
                    "{message} The model from step {steps} is {not_stored}."
                )),
            }
        }
    };
    (summary, ending)
}
