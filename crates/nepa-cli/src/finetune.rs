//! `nepa finetune`: classification from a pretrained checkpoint (docs/nepa.md §5), a thin
//! shell over the crate's fine-tuning driver (`nepa::finetune::FinetuneRun`), the one the
//! page's Fine-tune tab runs too.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use clap::Args;
use clap::parser::{ArgMatches, ValueSource};
use futures_lite::future::block_on;
use nepa::checkpoint::{classifier_tensors, load_backbone, to_safetensors};
use nepa::finetune::{FinetuneRun, FinetuneSettings, Recipe, evaluate};
use nepa::{LoadOptions, NepaClassifier, NepaConfig, NepaModel};
use serde_json::json;

use crate::ckpt::{self, Sidecar};
use crate::compute::ComputeArgs;
use crate::data::{Dataset, Split};
use crate::device::{self, DeviceChoice};
use crate::run::{
    Metrics, ModelArgs, Progress, handle_outcome, interrupt_flag, skipped_note, stored_side,
};

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// Labelled data: a folder with one sub-folder per class, or a folder of idx files.
    #[arg(long)]
    pub data: PathBuf,
    /// Pretrained checkpoint to start from (omit with --from-scratch): a checkpoint, a Hugging
    /// Face model folder, or `hf:org/name[@revision]` (docs/hub.md).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Start from a random backbone (the baseline for the pretraining gain).
    #[arg(long, conflicts_with = "init")]
    pub from_scratch: bool,
    /// Model flags, used with --from-scratch (--drop-path applies with --init too).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Keep this many labelled images per class (after a seeded shuffle).
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Fraction of the labelled images held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    #[arg(long, default_value = "runs/finetune")]
    pub out: PathBuf,
    /// Replace a run already in --out (its files are removed first).
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    #[command(flatten)]
    pub compute: ComputeArgs,
    #[arg(long, default_value_t = 50)]
    pub log_every: usize,
}

/// The recipe preset and the settings flags that override it: the flags are the fields of the
/// crate's `FinetuneSettings` (its `clap` feature), and only those given on the command line
/// replace the preset's values.
#[derive(Args, Clone, Debug)]
pub struct RecipeArgs {
    /// The preset: every settings flag below that is not given takes its value (the defaults
    /// shown are small-data's).
    #[arg(long, value_enum, default_value_t = Recipe::SmallData)]
    pub recipe: Recipe,
    #[command(flatten)]
    pub settings: FinetuneSettings,
    /// Peak learning rate of the top block (overrides --blr: blr = lr × 256 / batch).
    #[arg(long, conflicts_with = "blr")]
    pub lr: Option<f64>,
    /// The settings' flags given on the command line (their ids), filled from the parsed
    /// arguments by [`given_flags`].
    #[arg(skip)]
    pub given: Vec<String>,
}

/// The ids of the arguments given on the command line (not defaulted).
pub fn given_flags(matches: &ArgMatches) -> Vec<String> {
    matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect()
}

impl RecipeArgs {
    /// The preset with every given flag applied; `drop_path` comes from the model flags.
    pub fn settings(&self, drop_path: Option<f64>) -> Result<FinetuneSettings> {
        // Field by field through serde: a settings flag's id is its field's name.
        let mut merged = serde_json::to_value(FinetuneSettings::preset(self.recipe))?;
        let flags = serde_json::to_value(&self.settings)?;
        for id in &self.given {
            if let Some(value) = flags.get(id) {
                merged[id] = value.clone();
            }
        }
        let mut s: FinetuneSettings = serde_json::from_value(merged)?;
        if let Some(lr) = self.lr {
            s.blr = lr * 256.0 / s.batch_size.max(1) as f64;
        }
        if let Some(d) = drop_path {
            s.drop_path = d;
        }
        // `--ema-decay 0` turns the EMA off.
        s.ema_decay = s.ema_decay.filter(|&d| d != 0.0);
        Ok(s)
    }
}

/// The pretrained (or random) backbone and its config.
fn backbone(
    args: &FinetuneArgs,
    seed: u64,
    device: &burn::tensor::Device,
) -> Result<(NepaModel, NepaConfig)> {
    match (&args.init, args.from_scratch) {
        (Some(path), _) => {
            let loaded = ckpt::open(path)?;
            let config = ckpt::config_of(&loaded)?;
            let (backbone, report) =
                load_backbone(&loaded.model, &config, device, LoadOptions::default())
                    .with_context(|| format!("loading {}", loaded.path.display()))?;
            if !report.unused_keys.is_empty() {
                eprintln!(
                    "note: unused tensors in the checkpoint: {:?}",
                    report.unused_keys
                );
            }
            Ok((backbone, config))
        }
        (None, true) => {
            let config = args.model.config()?;
            device.seed(seed);
            Ok((NepaModel::new(&config, device)?, config))
        }
        (None, false) => bail!("give --init <pretrained checkpoint> or --from-scratch"),
    }
}

pub fn run(args: FinetuneArgs) -> Result<()> {
    let settings = args.recipe.settings(args.model.drop_path)?;
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
    let device = args.compute.training_device(&selected.device)?;
    let (backbone, config) = backbone(&args, settings.seed, &device)?;
    let backbone = backbone.with_precision(args.compute.precision());

    let mut data = Dataset::load(&args.data, Split::Train, stored_side(&config))?.set;
    data.require_labels("fine-tuning")?;
    if let Some(k) = args.per_class {
        data.take_per_class(k, settings.seed)?;
    }
    let (train, val) = data.split_validation(args.val_fraction, settings.seed)?;
    let (n_train, n_val) = (train.len(), val.len());
    let mut run = FinetuneRun::new(backbone, &config, train, settings.clone(), &device)?;
    let total = run.total_steps();
    let per_epoch = run.steps_per_epoch();
    println!(
        "fine-tuning on {} ({}, {}): {} classes, {n_train} training / {n_val} validation images, \
         {total} steps, {}, peak lr {:.2e}",
        selected.backend,
        selected.adapter,
        args.compute.describe(),
        run.classes().len(),
        settings.mode.label(),
        settings.peak_lr(),
    );
    let inference = device.clone().inner();
    let metrics = Metrics::new(&args.out)?;
    let interrupted = interrupt_flag();
    let progress = Progress::new(total, 0, args.log_every);
    let classes = run.classes().to_vec();
    let run_config = run.config().clone();
    let save = |name: &str, model: &NepaClassifier, step: usize| -> Result<PathBuf> {
        let weights = to_safetensors(&classifier_tensors(model), &run_config)?;
        let sidecar = Sidecar {
            kind: "finetune".into(),
            config: run_config.clone(),
            step,
            total_steps: total,
            seed: settings.seed,
            loss: None,
            classes: classes.clone(),
            settings: serde_json::to_value(&settings)?,
            model_file: String::new(),
            optimizer_file: None,
        };
        ckpt::save(&args.out, name, &weights, None, sidecar)
    };

    let mut best = (f64::NEG_INFINITY, 0usize);
    while !run.is_done() {
        if interrupted.load(Ordering::SeqCst) {
            let path = save("classifier", &run.model(), run.steps_done())?;
            progress.println(format!(
                "saved {} after {} steps",
                path.display(),
                run.steps_done()
            ));
            return Ok(());
        }
        let record = block_on(run.step())?;
        let step = record.step + 1;
        handle_outcome(
            &progress,
            &record.outcome,
            (record.step, record.loss, record.grad_norm),
            run.skipped_steps(),
            || save("classifier", &run.model(), record.step),
        )?;
        metrics.log(json!({
            "step": step, "loss": record.loss, "lr": record.lr, "grad_norm": record.grad_norm,
            "batch_accuracy": record.batch_accuracy, "skipped_steps": run.skipped_steps(),
        }))?;
        progress.step(
            step,
            format!(
                "loss {:.4}{}",
                record.loss,
                skipped_note(run.skipped_steps())
            ),
        );
        if step % per_epoch == 0 || step == total {
            let epoch = step.div_ceil(per_epoch);
            let model = run.model();
            let val_acc = block_on(evaluate(&model, &run_config, &val, 64, &inference))?;
            // With an EMA, the official recipe keeps the best checkpoint by EMA accuracy.
            let ema = run.ema_model();
            let ema_acc = match &ema {
                Some(ema) => Some(block_on(evaluate(ema, &run_config, &val, 64, &inference))?),
                None => None,
            };
            metrics.log(
                json!({ "epoch": epoch, "step": step, "val_accuracy": val_acc,
                                "val_accuracy_ema": ema_acc }),
            )?;
            let ema_note = ema_acc.map_or(String::new(), |a| format!(" (EMA {:.2}%)", 100.0 * a));
            progress.println(format!(
                "epoch {epoch}: loss {:.4}, validation accuracy {:.2}%{ema_note}",
                record.loss,
                100.0 * val_acc
            ));
            let (judged, judged_acc) = match (ema, ema_acc) {
                (Some(ema), Some(acc)) => (ema, acc),
                _ => (model, val_acc),
            };
            if n_val > 0 && judged_acc >= best.0 {
                best = (judged_acc, epoch);
                save("best", &judged, step)?;
            }
        }
    }
    progress.finish();
    let ema = run.ema_model();
    if let Some(ema) = &ema {
        let path = save("classifier-ema", ema, total)?;
        println!("saved the EMA of the weights as {}", path.display());
    }
    let path = save("classifier", &run.model(), total)?;
    if n_val > 0 {
        println!(
            "saved {} (best validation accuracy {:.2}% at epoch {}{}, saved as best.safetensors)",
            path.display(),
            100.0 * best.0,
            best.1,
            if ema.is_some() { ", EMA" } else { "" },
        );
    } else {
        println!("saved {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};
    use nepa::finetune::FinetuneMode;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        recipe: RecipeArgs,
    }

    fn settings(args: &[&str]) -> FinetuneSettings {
        let matches =
            Cli::command().get_matches_from(std::iter::once("nepa").chain(args.iter().copied()));
        let mut cli = Cli::from_arg_matches(&matches).unwrap();
        cli.recipe.given = given_flags(&matches);
        cli.recipe.settings(None).unwrap()
    }

    #[test]
    fn unset_flags_keep_the_preset() {
        assert_eq!(settings(&[]), FinetuneSettings::small_data());
        assert_eq!(
            settings(&["--recipe", "official"]),
            FinetuneSettings::official()
        );
    }

    #[test]
    fn given_flags_override_the_preset() {
        let s = settings(&[
            "--recipe",
            "official",
            "--mode",
            "head",
            "--batch-size",
            "32",
            "--lr",
            "1e-3",
            "--randaug",
            "false",
            "--affine-qk-norm",
            "false",
            "--ema-decay",
            "0",
            "--causal",
        ]);
        let expected = FinetuneSettings {
            mode: FinetuneMode::HeadOnly,
            batch_size: 32,
            blr: 1e-3 * 256.0 / 32.0,
            randaug: false,
            qk_norm_affine: false,
            ema_decay: None,
            causal: true,
            ..FinetuneSettings::official()
        };
        assert_eq!(s, expected);
        // The same flags as the page's quick preset give its settings.
        let quick = settings(&[
            "--mode",
            "lora",
            "--steps",
            "40",
            "--batch-size",
            "8",
            "--lr",
            "1e-3",
            "--head-lr",
            "1e-3",
            "--warmup-ratio",
            "0.1",
            "--ema-decay",
            "0",
        ]);
        let mut page = FinetuneSettings::quick(FinetuneMode::Lora, 40, 8, 1e-3);
        page.drop_path = quick.drop_path;
        assert_eq!(quick, page);
    }
}
