//! `nepa finetune` and `nepa eval`: classification from a pretrained checkpoint (docs/nepa.md §5).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use clap::Args;
use nepa::checkpoint::{classifier_tensors, load_backbone, load_classifier, to_safetensors};
use nepa::image::Augment;
use nepa::train::{AdamW, AdamWConfig, FinetuneSchedule, argmax_rows, finetune_step};
use nepa::{DivergenceGuard, ForwardOptions, LoadOptions, NepaClassifier, NepaModel};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ckpt::{self, Sidecar};
use crate::data::{Dataset, Sampler, Split, make_batch, step_rng};
use crate::device::{self, DeviceChoice};
use crate::run::{
    Metrics, ModelArgs, Progress, interrupt_flag, judge_step, skipped_note, stored_side,
};

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// Labelled data: a folder with one sub-folder per class, or a folder of idx files.
    #[arg(long)]
    pub data: PathBuf,
    /// Pretrained checkpoint to start from (omit with --from-scratch).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Start from a random backbone (the baseline for the pretraining gain).
    #[arg(long, conflicts_with = "init")]
    pub from_scratch: bool,
    /// Model flags, used with --from-scratch.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Keep this many labelled images per class (after a seeded shuffle).
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Fraction of the labelled images held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    #[command(flatten)]
    pub train: FinetuneSettings,
    #[arg(long, default_value = "runs/finetune")]
    pub out: PathBuf,
    /// Replace a run already in --out (its files are removed first).
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    #[arg(long, default_value_t = 50)]
    pub log_every: usize,
}

#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct FinetuneSettings {
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Base (peak) learning rate of the top block.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Learning rate of the classifier and the final LayerNorm.
    #[arg(long, default_value_t = 1e-3)]
    pub head_lr: f64,
    /// Layer-wise learning-rate decay (official: 0.65 for ViT-B).
    #[arg(long, default_value_t = 0.65)]
    pub layer_decay: f64,
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f64,
    /// Fraction of the steps in warmup (official: 0.2).
    #[arg(long, default_value_t = 0.2)]
    pub warmup_ratio: f64,
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f64,
    /// Train the patch-embedding conv too (the official recipe freezes it).
    #[arg(long)]
    pub train_patch_embed: bool,
    /// Keep causal attention instead of switching to bidirectional.
    #[arg(long)]
    pub causal: bool,
    #[arg(long, default_value_t = 1.0)]
    pub clip_grad: f64,
    #[arg(long, default_value_t = 0.08)]
    pub crop_min_scale: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl FinetuneSettings {
    /// Refuses settings no run can use.
    fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.epochs == 0 {
            bail!("--batch-size and --epochs must be at least 1");
        }
        for (name, lr) in [("--lr", self.lr), ("--head-lr", self.head_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                bail!("{name} must be a positive number, got {lr}");
            }
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio)
            || !(0.0..=1.0).contains(&self.layer_decay)
            || !(0.0..1.0).contains(&self.label_smoothing)
        {
            bail!(
                "--warmup-ratio and --layer-decay must be in [0, 1], --label-smoothing in [0, 1)"
            );
        }
        if !(self.crop_min_scale > 0.0 && self.crop_min_scale <= 1.0) {
            bail!(
                "--crop-min-scale must be in (0, 1], got {}",
                self.crop_min_scale
            );
        }
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !non_negative(self.weight_decay) || !non_negative(self.clip_grad) {
            bail!("--weight-decay and --clip-grad must be ≥ 0");
        }
        Ok(())
    }
}

/// Top-1 accuracy of `model` on `data`, in batches, without augmentation.
pub fn accuracy(
    model: &NepaClassifier,
    data: &Dataset,
    size: [usize; 2],
    batch: usize,
    device: &Device,
) -> Result<f64> {
    let labels = data.labels.as_ref().context("evaluation needs labels")?;
    let classes = model.num_labels();
    let mut correct = 0usize;
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let pixels = make_batch(data, chunk, size, None, device);
        let logits = model.forward(pixels, &ForwardOptions::eval());
        let values = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        correct += argmax_rows(&values, classes)
            .into_iter()
            .zip(chunk)
            .filter(|(p, i)| *p == labels[**i])
            .count();
    }
    Ok(correct as f64 / data.len().max(1) as f64)
}

pub fn run(args: FinetuneArgs) -> Result<()> {
    let settings = args.train.clone();
    settings.validate()?;
    if !(0.0..1.0).contains(&args.val_fraction) {
        bail!(
            "--val-fraction must be in [0, 1), got {}",
            args.val_fraction
        );
    }
    if args.per_class == Some(0) {
        bail!("--per-class must be at least 1");
    }
    ckpt::prepare_fresh_out(&args.out, args.overwrite)?;
    let selected = device::select(args.device)?;
    let device = selected.device.clone().autodiff();

    let (backbone, config) = match (&args.init, args.from_scratch) {
        (Some(path), _) => {
            let loaded = ckpt::open(path)?;
            let config = ckpt::config_of(&loaded)?;
            let (backbone, report) =
                load_backbone(&loaded.model, &config, &device, LoadOptions::default())
                    .with_context(|| format!("loading {}", loaded.path.display()))?;
            if !report.unused_keys.is_empty() {
                eprintln!(
                    "note: unused tensors in the checkpoint: {:?}",
                    report.unused_keys
                );
            }
            (backbone, config)
        }
        (None, true) => {
            let config = args.model.config()?;
            device.seed(settings.seed);
            (NepaModel::new(&config, &device)?, config)
        }
        (None, false) => bail!("give --init <pretrained checkpoint> or --from-scratch"),
    };

    let mut data = Dataset::load(&args.data, Split::Train, stored_side(&config))?;
    if data.labels.is_none() {
        bail!(
            "{} has no labels: use one sub-folder per class, or idx files with labels",
            args.data.display()
        );
    }
    if let Some(k) = args.per_class {
        data.take_per_class(k, settings.seed)?;
    }
    let (train, val) = data.split_validation(args.val_fraction, settings.seed)?;
    let classes = train.classes.clone();
    // Fine-tuning is bidirectional (docs/nepa.md §5) unless --causal.
    let config = config.with_causal(settings.causal);
    let backbone = backbone.set_causal(settings.causal);
    let mut model = NepaClassifier::from_backbone(backbone, classes.len(), &device);
    let mut optim = AdamW::new(AdamWConfig {
        beta2: 0.999,
        max_grad_norm: (settings.clip_grad > 0.0).then_some(settings.clip_grad),
        ..AdamWConfig::default()
    });

    let sampler = Sampler::new(
        train.len(),
        settings.batch_size.min(train.len()),
        settings.seed,
    )?;
    let per_epoch = sampler.steps_per_epoch();
    let total = per_epoch * settings.epochs;
    let schedule = FinetuneSchedule {
        base_lr: settings.lr,
        head_lr: settings.head_lr,
        layer_decay: settings.layer_decay,
        weight_decay: settings.weight_decay,
        num_layers: config.num_hidden_layers,
        total_steps: total,
        warmup_steps: ((total as f64) * settings.warmup_ratio).round() as usize,
        freeze_patch_embed: !settings.train_patch_embed,
    };
    let augment = Augment {
        scale: (settings.crop_min_scale, 1.0),
        ..Augment::default()
    };
    println!(
        "fine-tuning on {} ({}): {} classes, {} training / {} validation images, {} steps",
        selected.backend,
        selected.adapter,
        classes.len(),
        train.len(),
        val.len(),
        total
    );
    let inference = device.clone().inner();
    let metrics = Metrics::new(&args.out)?;
    let interrupted = interrupt_flag();
    let progress = Progress::new(total, 0, args.log_every);
    let save = |model: &NepaClassifier, step: usize, loss: Option<f32>| -> Result<PathBuf> {
        let weights = to_safetensors(&classifier_tensors(model), &config)?;
        let sidecar = Sidecar {
            kind: "finetune".into(),
            config: config.clone(),
            step,
            total_steps: total,
            seed: settings.seed,
            loss,
            classes: classes.clone(),
            settings: serde_json::to_value(&settings)?,
            model_file: String::new(),
            optimizer_file: None,
        };
        ckpt::save(&args.out, "classifier", &weights, None, sidecar)
    };

    let mut last_loss = None;
    let mut guard = DivergenceGuard::default();
    let mut best = (0.0f64, 0usize);
    for step in 0..total {
        if interrupted.load(Ordering::SeqCst) {
            let path = save(&model, step, last_loss)?;
            progress.println(format!("saved {} after {step} steps", path.display()));
            return Ok(());
        }
        let mut rng = step_rng(settings.seed, step);
        let indices = sampler.batch_indices(step);
        let labels: Vec<usize> = {
            let all = train.labels.as_ref().expect("labelled");
            indices.iter().map(|&i| all[i]).collect()
        };
        let pixels = make_batch(
            &train,
            &indices,
            config.image_size,
            Some((&augment, &mut rng)),
            &device,
        );
        let forward = ForwardOptions::train(&config, &mut rng);
        device.seed(settings.seed ^ (step as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        // The state before the step (shared tensors, no copy), put back if the step diverged.
        let before = (model.clone(), optim.clone());
        let out = finetune_step(
            model,
            &mut optim,
            pixels,
            &labels,
            settings.label_smoothing,
            &forward,
            |key| schedule.group(key, step),
        );
        let loss: f32 = out.loss.into_scalar();
        let grad_norm: Option<f32> = out.grad_norm.map(|n| n.into_scalar());
        let verdict = judge_step(
            &mut guard,
            &progress,
            step,
            (loss, grad_norm),
            before,
            |(model, _)| save(model, step + 1, last_loss),
        )?;
        match verdict {
            None => {
                model = out.model;
                last_loss = Some(loss);
            }
            Some(before) => (model, optim) = before,
        }
        progress.step(step + 1, format!("loss {loss:.4}{}", skipped_note(&guard)));
        if (step + 1) % per_epoch == 0 {
            let epoch = (step + 1) / per_epoch;
            let val_acc = if val.len() > 0 {
                accuracy(&model.valid(), &val, config.image_size, 64, &inference)?
            } else {
                f64::NAN
            };
            metrics.log(
                json!({ "epoch": epoch, "step": step + 1, "loss": loss, "val_accuracy": val_acc,
                        "skipped_steps": guard.skipped() }),
            )?;
            progress.println(format!(
                "epoch {epoch}: loss {loss:.4}, validation accuracy {:.2}%",
                100.0 * val_acc
            ));
            if val_acc >= best.0 {
                best = (val_acc, epoch);
            }
        }
    }
    progress.finish();
    let path = save(&model, total, last_loss)?;
    println!(
        "saved {} (best validation accuracy {:.2}% at epoch {})",
        path.display(),
        100.0 * best.0,
        best.1
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A classifier checkpoint written by `nepa finetune` (or an official -sft file).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Labelled data: class sub-folders, or idx files.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let selected = device::select(args.device)?;
    let device = selected.device;
    let loaded = ckpt::open(&args.checkpoint)?;
    let config = ckpt::config_of(&loaded)?;
    let data = Dataset::load(&args.data, args.split, stored_side(&config))?;
    let has_head = safetensors::SafeTensors::deserialize(&loaded.model)
        .map(|f| f.tensor("classifier.weight").is_ok())
        .unwrap_or(false);
    if !has_head {
        return eval_backbone(&args, &loaded, &config, &data, &device);
    }
    let (model, _) = load_classifier(
        &loaded.model,
        &config,
        None,
        &device,
        LoadOptions::default(),
    )
    .with_context(|| format!("loading {}", loaded.path.display()))?;
    if let Some(sidecar) = &loaded.sidecar
        && !sidecar.classes.is_empty()
        && sidecar.classes != data.classes
    {
        bail!(
            "the checkpoint was trained on classes {:?} but {} has {:?}",
            sidecar.classes,
            args.data.display(),
            data.classes
        );
    }
    // A classifier saved by the web app names its classes in the file's metadata.
    if let Some(classes) = nepa::checkpoint::classes_from_metadata(&loaded.model)?
        && classes != data.classes
    {
        bail!(
            "the checkpoint's classes are {classes:?} (label i = entry i) but {} has {:?}: \
             name the class folders so that their sorted order matches",
            args.data.display(),
            data.classes
        );
    }
    let acc = accuracy(&model, &data, config.image_size, args.batch_size, &device)?;
    println!(
        "top-1 accuracy {:.2}% on {} images of {} ({} on {})",
        100.0 * acc,
        data.len(),
        data.source,
        selected.backend,
        selected.adapter
    );
    Ok(())
}

/// A pretraining checkpoint has no head: report its NEPA loss on the data (how well it
/// predicts the next patch of unseen images) and, with labels, a k-NN accuracy of its
/// mean-pooled features against a labelled memory from the train split.
fn eval_backbone(
    args: &EvalArgs,
    loaded: &ckpt::Loaded,
    config: &nepa::NepaConfig,
    data: &Dataset,
    device: &Device,
) -> Result<()> {
    let (model, _) = load_backbone(&loaded.model, config, device, LoadOptions::default())
        .with_context(|| format!("loading {}", loaded.path.display()))?;
    let features = |set: &Dataset| -> Result<(Vec<f32>, f64)> {
        let mut feats = Vec::with_capacity(set.len() * config.hidden_size);
        let mut loss_sum = 0.0;
        let indices: Vec<usize> = (0..set.len()).collect();
        for chunk in indices.chunks(args.batch_size.max(1)) {
            let out = model.forward(
                make_batch(set, chunk, config.image_size, None, device),
                &ForwardOptions::eval(),
            );
            let [b, t, d] = out.last_hidden_state.dims();
            let loss: f32 = nepa::prediction_loss(
                out.last_hidden_state.clone(),
                out.input_embedding,
                nepa::LossOptions::default(),
            )
            .into_scalar();
            loss_sum += loss as f64 * b as f64;
            let pooled = nepa::loss::l2_normalize(
                out.last_hidden_state.narrow(1, 1, t - 1).mean_dim(1),
                1e-12,
            )
            .reshape([b * d]);
            feats.extend(
                pooled
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            );
        }
        Ok((feats, loss_sum / set.len() as f64))
    };
    let (test_feats, loss) = features(data)?;
    println!(
        "NEPA loss {loss:.4} (mean −cos(ẑ_t, z_t+1)) on {} images of {}",
        data.len(),
        data.source
    );
    let Some(test_labels) = &data.labels else {
        return Ok(());
    };
    let mut memory = Dataset::load(&args.data, Split::Train, stored_side(config))?;
    let n_memory = memory.len().min(5000);
    memory.select(&(0..n_memory).collect::<Vec<_>>());
    let memory_labels = memory
        .labels
        .clone()
        .context("the train split has no labels")?;
    let (memory_feats, _) = features(&memory)?;
    let d = config.hidden_size;
    let k = 20.min(n_memory);
    let classes = memory_labels.iter().max().map_or(0, |m| m + 1);
    let mut correct = 0;
    for (i, query) in test_feats.chunks(d).enumerate() {
        let mut scored: Vec<(f32, usize)> = memory_feats
            .chunks(d)
            .zip(&memory_labels)
            .map(|(m, &label)| (m.iter().zip(query).map(|(a, b)| a * b).sum(), label))
            .collect();
        scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        let mut votes = vec![0.0f32; classes];
        for &(similarity, label) in &scored[..k] {
            votes[label] += (similarity / 0.07).exp();
        }
        if argmax_rows(&votes, classes)[0] == test_labels[i] {
            correct += 1;
        }
    }
    println!(
        "k-NN ({k} neighbours, {n_memory} labelled train images) top-1 accuracy {:.2}%",
        100.0 * correct as f64 / data.len() as f64
    );
    Ok(())
}
