//! `nepa pretrain`: NEPA pretraining (docs/nepa.md §4) on an image folder or idx files.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use futures_lite::future::block_on;
use nepa::checkpoint::{backbone_tensors, load_backbone, to_safetensors};
use nepa::data::Sampler;
use nepa::guard::DEFAULT_MAX_CONSECUTIVE_NON_FINITE;
use nepa::image::Augment;
use nepa::pretrain::{PretrainOptions, PretrainSchedule, Pretrainer};
use nepa::train::{AdamW, AdamWConfig};
use nepa::{LoadOptions, LossOptions, NepaConfig, NepaModel, StepOutcome};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ckpt::{self, Sidecar};
use crate::compute::ComputeArgs;
use crate::data::{Dataset, Split};
use crate::device::{self, DeviceChoice};
use crate::prefetch::Prefetch;
use crate::run::{
    Metrics, ModelArgs, Progress, handle_outcome, interrupt_flag, skipped_note, stored_side,
};

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Image folder (recursive) or a folder of idx files (Fashion-MNIST/MNIST).
    #[arg(long)]
    pub data: PathBuf,
    /// Which idx split to read.
    #[arg(long, value_enum, default_value_t = Split::Train)]
    pub split: Split,
    /// Output folder for checkpoints and metrics.jsonl.
    #[arg(long, default_value = "runs/pretrain")]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub train: PretrainSettings,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Continue from a checkpoint (its .safetensors, .json, or the run folder), with the
    /// settings stored there. `--steps` or `--epochs` with it set a new length for the run
    /// (the total, counted from its start): the warmup and cosine schedule are recomputed over
    /// the new total, as for a fresh run of that length, so the learning rate continues
    /// from that schedule's value at the resumed step (higher than where a finished run's
    /// cosine ended). A run that has reached its length is refused with a message, not
    /// resumed to train nothing.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Start afresh in an --out that already holds a run, removing that run's files.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Save a checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    pub save_every: usize,
    /// Print a log line every N steps when output is not a terminal.
    #[arg(long, default_value_t = 50)]
    pub log_every: usize,
}

/// The settings a resumed run takes from its checkpoint.
#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct PretrainSettings {
    /// Images per optimizer step (the learning rate scales with it).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Split each step's batch into N forward/backward passes: the same update with the
    /// memory of batch/N images (gradient accumulation) [default: 1]. A resumed run keeps
    /// its own unless this is given.
    #[arg(long)]
    #[serde(default)]
    pub accumulate: Option<usize>,
    /// Number of optimizer steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Number of passes over the data [default: 1]. (An option, so that `--resume` can tell
    /// a new length from the default.)
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Peak learning rate; default: --blr × batch / 256 (docs/nepa.md §4).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Base learning rate per 256 images.
    #[arg(long, default_value_t = 3e-4)]
    pub blr: f64,
    /// Fraction of the steps spent in linear warmup.
    #[arg(long, default_value_t = 0.025)]
    pub warmup_ratio: f64,
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f64,
    /// Global gradient-norm clipping (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub clip_grad: f64,
    /// RandomResizedCrop minimum scale.
    #[arg(long, default_value_t = 0.08)]
    pub crop_min_scale: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ablation: let gradients flow into the target (the paper: collapse to loss −1).
    #[arg(long)]
    pub no_stop_grad: bool,
    /// Ablation: predict z_t instead of z_{t+1} (the paper: a trivial task).
    #[arg(long)]
    pub no_shift: bool,
    /// Ablation: bidirectional attention during pretraining.
    #[arg(long)]
    pub bidirectional: bool,
}

impl PretrainSettings {
    pub fn epochs(&self) -> usize {
        self.epochs.unwrap_or(1)
    }

    /// The run's length in optimizer steps: `--steps`, else `--epochs` passes.
    pub fn total_steps(&self, steps_per_epoch: usize) -> usize {
        self.steps
            .unwrap_or(self.epochs().saturating_mul(steps_per_epoch))
    }

    /// The stored settings with the length the command line gives, if it gives one
    /// (`--steps` wins over `--epochs`, as for a fresh run), and its `--accumulate`: how a
    /// step is split does not change the run, so a resumed run may split differently.
    fn with_length_of(mut self, args: &PretrainSettings) -> Self {
        if args.accumulate.is_some() {
            self.accumulate = args.accumulate;
        }
        if let Some(steps) = args.steps {
            self.steps = Some(steps);
        } else if let Some(epochs) = args.epochs {
            self.steps = None;
            self.epochs = Some(epochs);
        }
        self
    }

    pub fn peak_lr(&self) -> f64 {
        self.lr.unwrap_or(self.blr * self.batch_size as f64 / 256.0)
    }

    pub fn loss_options(&self) -> LossOptions {
        LossOptions {
            shift: !self.no_shift,
            stop_grad: !self.no_stop_grad,
        }
    }

    /// Refuses settings no run can use (from the command line or a sidecar).
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("the batch size must be at least 1");
        }
        let accumulate = self.accumulate.unwrap_or(1);
        if accumulate == 0 || accumulate > self.batch_size {
            bail!(
                "--accumulate must be in 1..={} (the batch size), got {accumulate}",
                self.batch_size
            );
        }
        if self.steps == Some(0) || (self.steps.is_none() && self.epochs() == 0) {
            bail!("the run needs at least one step (--steps or --epochs)");
        }
        let lr = self.peak_lr();
        if !(lr.is_finite() && lr > 0.0) {
            bail!("the learning rate must be a positive number, got {lr}");
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            bail!(
                "--warmup-ratio must be in [0, 1], got {}",
                self.warmup_ratio
            );
        }
        if !(self.crop_min_scale > 0.0 && self.crop_min_scale <= 1.0) {
            bail!(
                "--crop-min-scale must be in (0, 1], got {}",
                self.crop_min_scale
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("--weight-decay must be ≥ 0, got {}", self.weight_decay);
        }
        if !(self.clip_grad.is_finite() && self.clip_grad >= 0.0) {
            bail!(
                "--clip-grad must be ≥ 0 (0 disables it), got {}",
                self.clip_grad
            );
        }
        Ok(())
    }

    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            max_grad_norm: (self.clip_grad > 0.0).then_some(self.clip_grad),
            ..AdamWConfig::default()
        }
    }
}

/// Where a run starts: a fresh model, or a checkpoint's model, optimizer state and step.
struct Start {
    config: NepaConfig,
    settings: PretrainSettings,
    model: NepaModel,
    optim: AdamW,
    step: usize,
    /// A resumed run's length as its checkpoint recorded it.
    stored_total: Option<usize>,
}

/// A resumed run continues with the checkpoint's config and settings; `length` (the command
/// line's settings) may give it a new length.
fn resume(path: &Path, length: &PretrainSettings, device: &Device) -> Result<Start> {
    let loaded = ckpt::open(path)?;
    let sidecar = loaded
        .sidecar
        .clone()
        .context("--resume needs a checkpoint written by `nepa pretrain` (with a .json sidecar)")?;
    if sidecar.kind != "pretrain" {
        bail!(
            "{} is a {} checkpoint, not a pretraining one",
            path.display(),
            sidecar.kind
        );
    }
    let stored: PretrainSettings = serde_json::from_value(sidecar.settings.clone())
        .context("reading the run settings from the sidecar")?;
    stored
        .validate()
        .with_context(|| format!("the run settings stored in {}", path.display()))?;
    let settings = stored.with_length_of(length);
    settings.validate()?;
    let (model, _) = load_backbone(
        &loaded.model,
        &sidecar.config,
        device,
        LoadOptions::default(),
    )
    .with_context(|| format!("loading {}", loaded.path.display()))?;
    let optim = match loaded.read_optimizer()? {
        Some(bytes) => AdamW::load_state(settings.adamw(), &bytes, device)
            .with_context(|| format!("the optimizer state of {}", loaded.path.display()))?,
        None => AdamW::new(settings.adamw()),
    };
    // A state whose moments do not fit the model is refused now, not at step 1.
    optim.check_against(&model).with_context(|| {
        format!(
            "the optimizer state of {} does not fit its weights",
            loaded.path.display()
        )
    })?;
    println!(
        "resuming {} at step {}",
        loaded.path.display(),
        sidecar.step
    );
    Ok(Start {
        config: sidecar.config,
        settings,
        model,
        optim,
        step: sidecar.step,
        stored_total: Some(sidecar.total_steps),
    })
}

fn fresh(args: &PretrainArgs, device: &Device) -> Result<Start> {
    args.train.validate()?;
    ckpt::prepare_fresh_out(&args.out, args.overwrite)?;
    let config = args.model.config()?.with_causal(!args.train.bidirectional);
    device.seed(args.train.seed);
    let model = NepaModel::new(&config, device)?;
    Ok(Start {
        config,
        settings: args.train.clone(),
        model,
        optim: AdamW::new(args.train.adamw()),
        step: 0,
        stored_total: None,
    })
}

/// What the step loop needs besides the trainer: where to write, and how far to go.
struct RunOutput<'a> {
    out: &'a Path,
    config: &'a NepaConfig,
    settings: &'a PretrainSettings,
    total: usize,
}

impl RunOutput<'_> {
    /// Weights, optimizer state and sidecar of `trainer` after `step` steps.
    fn save(&self, trainer: &Pretrainer, step: usize, loss: Option<f32>) -> Result<PathBuf> {
        let weights = to_safetensors(&backbone_tensors(trainer.model(), true), self.config)?;
        let state = to_safetensors(&trainer.optimizer().state_tensors(), self.config)?;
        let sidecar = Sidecar {
            kind: "pretrain".into(),
            config: self.config.clone(),
            step,
            total_steps: self.total,
            seed: self.settings.seed,
            loss,
            classes: vec![],
            settings: serde_json::to_value(self.settings)?,
            model_file: String::new(),
            optimizer_file: None,
        };
        let name = format!("step-{step:07}");
        ckpt::save(self.out, &name, &weights, Some(&state), sidecar)
    }
}

pub fn run(args: PretrainArgs) -> Result<()> {
    let selected = device::select(args.device)?;
    let device = args.compute.training_device(&selected.device)?;
    let start = match &args.resume {
        Some(path) => resume(path, &args.train, &device)?,
        None => fresh(&args, &device)?,
    };
    let Start {
        config,
        settings,
        model,
        optim,
        step,
        stored_total,
    } = start;

    let data = Dataset::load(&args.data, args.split, stored_side(&config))?;
    let sampler = Sampler::new(data.len(), settings.batch_size, settings.seed)?;
    let total = settings.total_steps(sampler.steps_per_epoch());
    if let Some(path) = &args.resume
        && step >= total
    {
        bail!(
            "the run of {} is at step {step} and its length is {total} steps: nothing left to \
             train. Give a longer length with --steps or --epochs (the total from the run's \
             start; the learning-rate schedule is recomputed over it)",
            path.display()
        );
    }
    if let Some(stored) = stored_total
        && stored != total
    {
        println!(
            "the run's length is now {total} steps (was {stored}): warmup and cosine schedule \
             recomputed over {total} steps"
        );
    }
    let schedule = PretrainSchedule {
        total_steps: total,
        warmup_steps: ((total as f64) * settings.warmup_ratio).round() as usize,
        peak_lr: settings.peak_lr(),
        min_lr: 0.0,
        weight_decay: settings.weight_decay,
    };
    println!(
        "pretraining on {} ({}, {}): {} images ({} unreadable skipped), {:.2} M params, {} steps of {} images, peak lr {:.2e}",
        selected.backend,
        selected.adapter,
        args.compute.describe(),
        data.len(),
        data.skipped.len(),
        config.num_params() as f64 / 1e6,
        total,
        settings.batch_size,
        schedule.peak_lr,
    );
    let options = PretrainOptions {
        schedule,
        loss: settings.loss_options(),
        augment: Augment {
            scale: (settings.crop_min_scale, 1.0),
            ..Augment::default()
        },
        seed: settings.seed,
        max_bad_steps: DEFAULT_MAX_CONSECUTIVE_NON_FINITE,
        accumulate: settings.accumulate.unwrap_or(1),
    };
    let model = model.with_precision(args.compute.precision());
    let mut trainer = Pretrainer::new(model, &config, optim, options, step, &device);
    let output = RunOutput {
        out: &args.out,
        config: &config,
        settings: &settings,
        total,
    };
    let loader = Loader {
        data: &data,
        sampler: &sampler,
    };
    if let LoopEnd::Finished { last_loss } = train_loop(&args, &output, &mut trainer, loader)? {
        let path = output.save(&trainer, total, last_loss)?;
        println!("saved {}", path.display());
    }
    Ok(())
}

struct Loader<'a> {
    data: &'a Dataset,
    sampler: &'a Sampler,
}

enum LoopEnd {
    Finished {
        last_loss: Option<f32>,
    },
    /// Stopped by Ctrl-C; the checkpoint is written.
    Interrupted,
}

/// Runs the steps left, with batches prefetched on worker threads; logs every step to the
/// progress bar and metrics.jsonl, saves every `--save-every` steps and on Ctrl-C.
fn train_loop(
    args: &PretrainArgs,
    output: &RunOutput,
    trainer: &mut Pretrainer,
    loader: Loader,
) -> Result<LoopEnd> {
    let total = output.total;
    let batch_size = output.settings.batch_size;
    let metrics = Metrics::new(&args.out)?;
    let interrupted = interrupt_flag();
    let progress = Progress::new(total, trainer.step, args.log_every);
    let mut last_loss = None;
    let mut window = Instant::now();
    let mut window_steps = 0usize;
    let options = trainer.options().clone();
    std::thread::scope(|scope| -> Result<LoopEnd> {
        let mut batches = Prefetch::start(
            scope,
            loader.data,
            loader.sampler,
            output.config,
            options,
            (trainer.step, total),
        );
        while trainer.step < total {
            let step = trainer.step;
            if interrupted.load(Ordering::SeqCst) {
                let path = output.save(trainer, step, last_loss)?;
                progress.println(format!("saved {} after {step} steps", path.display()));
                return Ok(LoopEnd::Interrupted);
            }
            let batch = batches.next()?;
            let record = block_on(trainer.step_prepared(batch))?;
            handle_outcome(
                &progress,
                &record.outcome,
                (step, record.loss, record.grad_norm),
                trainer.skipped_steps(),
                || output.save(trainer, step + 1, last_loss),
            )?;
            if record.outcome == StepOutcome::Applied {
                last_loss = Some(record.loss);
            }
            let loss = record.loss;
            window_steps += 1;
            let elapsed = window.elapsed().as_secs_f64();
            let img_s = (window_steps * batch_size) as f64 / elapsed;
            // Share of the window the loop waited for the loader: near 0 the device is fed.
            let data_wait = 100.0 * batches.waited.as_secs_f64() / elapsed;
            metrics.log(json!({
                "step": step + 1, "loss": loss, "lr": record.lr, "grad_norm": record.grad_norm,
                "embedding_similarity": record.embedding_similarity, "images_per_sec": img_s,
                "data_wait_percent": data_wait, "skipped_steps": trainer.skipped_steps(),
            }))?;
            progress.step(
                step + 1,
                format!(
                    "loss {loss:.4} lr {:.2e} {img_s:.0} img/s, data wait {data_wait:.0}%{}",
                    record.lr,
                    skipped_note(trainer.skipped_steps())
                ),
            );
            if window_steps >= 20 {
                window = Instant::now();
                window_steps = 0;
                batches.waited = Default::default();
            }
            if args.save_every > 0 && (step + 1).is_multiple_of(args.save_every) && step + 1 < total
            {
                output.save(trainer, step + 1, last_loss)?;
            }
        }
        progress.finish();
        Ok(LoopEnd::Finished { last_loss })
    })
}
