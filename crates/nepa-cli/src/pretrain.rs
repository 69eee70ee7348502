//! `nepa pretrain`: NEPA pretraining (docs/nepa.md §4) on an image folder or idx files.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use nepa::checkpoint::{backbone_tensors, load_backbone, to_safetensors};
use nepa::image::Augment;
use nepa::train::{AdamW, AdamWConfig, pretrain_step, warmup_cosine};
use nepa::{DivergenceGuard, ForwardOptions, LoadOptions, LossOptions, NepaModel};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ckpt::{self, Sidecar};
use crate::data::{Dataset, Sampler, Split, make_batch, step_rng};
use crate::device::{self, DeviceChoice};
use crate::run::{
    Metrics, ModelArgs, Progress, interrupt_flag, judge_step, skipped_note, stored_side,
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
    /// Continue from a checkpoint (its .safetensors, .json, or the run folder).
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
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Number of optimizer steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
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
        if self.steps == Some(0) || (self.steps.is_none() && self.epochs == 0) {
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

pub fn run(args: PretrainArgs) -> Result<()> {
    let selected = device::select(args.device)?;
    let device = selected.device.clone().autodiff();

    // A resumed run continues with the checkpoint's config and settings.
    let (config, settings, mut model, mut optim, start) = match &args.resume {
        Some(path) => {
            let loaded = ckpt::open(path)?;
            let sidecar = loaded.sidecar.clone().context(
                "--resume needs a checkpoint written by `nepa pretrain` (with a .json sidecar)",
            )?;
            if sidecar.kind != "pretrain" {
                bail!(
                    "{} is a {} checkpoint, not a pretraining one",
                    path.display(),
                    sidecar.kind
                );
            }
            let settings: PretrainSettings = serde_json::from_value(sidecar.settings.clone())
                .context("reading the run settings from the sidecar")?;
            settings
                .validate()
                .with_context(|| format!("the run settings stored in {}", path.display()))?;
            let (model, _) = load_backbone(
                &loaded.model,
                &sidecar.config,
                &device,
                LoadOptions::default(),
            )
            .with_context(|| format!("loading {}", loaded.path.display()))?;
            let optim = match &loaded.optimizer {
                Some(bytes) => AdamW::load_state(settings.adamw(), bytes, &device)
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
            (sidecar.config, settings, model, optim, sidecar.step)
        }
        None => {
            args.train.validate()?;
            ckpt::prepare_fresh_out(&args.out, args.overwrite)?;
            let config = args.model.config()?.with_causal(!args.train.bidirectional);
            device.seed(args.train.seed);
            let model = NepaModel::new(&config, &device)?;
            let optim = AdamW::new(args.train.adamw());
            (config, args.train.clone(), model, optim, 0)
        }
    };

    let data = Dataset::load(&args.data, args.split, stored_side(&config))?;
    let sampler = Sampler::new(data.len(), settings.batch_size, settings.seed)?;
    let total = settings
        .steps
        .unwrap_or(settings.epochs * sampler.steps_per_epoch());
    let warmup = ((total as f64) * settings.warmup_ratio).round() as usize;
    let peak = settings.peak_lr();
    let augment = Augment {
        scale: (settings.crop_min_scale, 1.0),
        ..Augment::default()
    };
    println!(
        "pretraining on {} ({}): {} images ({} unreadable skipped), {:.2} M params, {} steps of {} images, peak lr {peak:.2e}",
        selected.backend,
        selected.adapter,
        data.len(),
        data.skipped.len(),
        config.num_params() as f64 / 1e6,
        total,
        settings.batch_size
    );

    let metrics = Metrics::new(&args.out)?;
    let interrupted = interrupt_flag();
    let progress = Progress::new(total, start, args.log_every);
    let save =
        |model: &NepaModel, optim: &AdamW, step: usize, loss: Option<f32>| -> Result<PathBuf> {
            let weights = to_safetensors(&backbone_tensors(model, true), &config)?;
            let state = to_safetensors(&optim.state_tensors(), &config)?;
            let sidecar = Sidecar {
                kind: "pretrain".into(),
                config: config.clone(),
                step,
                total_steps: total,
                seed: settings.seed,
                loss,
                classes: vec![],
                settings: serde_json::to_value(&settings)?,
                model_file: String::new(),
                optimizer_file: None,
            };
            ckpt::save(
                &args.out,
                &format!("step-{step:07}"),
                &weights,
                Some(&state),
                sidecar,
            )
        };

    let mut last_loss = None;
    let mut guard = DivergenceGuard::default();
    let mut window = Instant::now();
    let mut window_steps = 0usize;
    for step in start..total {
        if interrupted.load(Ordering::SeqCst) {
            let path = save(&model, &optim, step, last_loss)?;
            progress.println(format!("saved {} after {step} steps", path.display()));
            return Ok(());
        }
        let mut rng = step_rng(settings.seed, step);
        let indices = sampler.batch_indices(step);
        let pixels = make_batch(
            &data,
            &indices,
            config.image_size,
            Some((&augment, &mut rng)),
            &device,
        );
        let forward = ForwardOptions::train(&config, &mut rng);
        // Drop-path draws come from the device generator: seed it per step for resumability.
        device.seed(settings.seed ^ (step as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let lr = warmup_cosine(step, total, warmup, peak, 0.0);
        // The state before the step (shared tensors, no copy), put back if the step diverged.
        let before = (model.clone(), optim.clone());
        let out = pretrain_step(
            model,
            &mut optim,
            pixels,
            lr,
            settings.weight_decay,
            &forward,
            settings.loss_options(),
        );
        let loss: f32 = out.loss.into_scalar();
        let grad_norm: Option<f32> = out.grad_norm.map(|n| n.into_scalar());
        let similarity: Option<f32> = out.embedding_similarity.map(|s| s.into_scalar());
        let verdict = judge_step(
            &mut guard,
            &progress,
            step,
            (loss, grad_norm),
            before,
            |(model, optim)| save(model, optim, step + 1, last_loss),
        )?;
        match verdict {
            None => {
                model = out.model;
                last_loss = Some(loss);
            }
            Some(before) => (model, optim) = before,
        }
        window_steps += 1;
        let img_s = (window_steps * settings.batch_size) as f64 / window.elapsed().as_secs_f64();
        metrics.log(json!({
            "step": step + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm,
            "embedding_similarity": similarity, "images_per_sec": img_s,
            "skipped_steps": guard.skipped(),
        }))?;
        progress.step(
            step + 1,
            format!(
                "loss {loss:.4} lr {lr:.2e} {img_s:.0} img/s{}",
                skipped_note(&guard)
            ),
        );
        if window_steps >= 20 {
            window = Instant::now();
            window_steps = 0;
        }
        if args.save_every > 0 && (step + 1) % args.save_every == 0 && step + 1 < total {
            save(&model, &optim, step + 1, last_loss)?;
        }
    }
    progress.finish();
    let path = save(&model, &optim, total, last_loss)?;
    println!("saved {}", path.display());
    Ok(())
}
