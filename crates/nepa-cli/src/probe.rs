//! `nepa probe`: what pretrained backbones' features carry, side by side on one labelled image
//! folder: the crate's k-NN probe (`nepa::probe`, leave-one-out) of each checkpoint's mean patch
//! features, of the first checkpoint's architecture at random init (one row per seed), and of
//! the raw pixels at that architecture's input size. Prints a markdown table; `--json` writes
//! the figures.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use futures_lite::future::block_on;
use nepa::checkpoint::load_backbone;
use nepa::probe::{Features, KnnProbe, pixel_features, pooled_features};
use nepa::{LoadOptions, NepaConfig, NepaModel};
use serde::Serialize;

use crate::ckpt::{self, write_atomic};
use crate::data::{Dataset, Split};
use crate::device::{self, DeviceChoice};
use crate::run::stored_side;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// Labelled images: one sub-folder per class. Each image is classified by the others
    /// (leave-one-out).
    #[arg(long)]
    pub data: PathBuf,
    /// A pretraining checkpoint, as `NAME=PATH` or `PATH` (repeatable). The first one's
    /// architecture is also probed at random init, and its input size sets the pixels row.
    #[arg(long = "checkpoint", required = true)]
    pub checkpoints: Vec<String>,
    /// Random-init rows of the first checkpoint's architecture, seeds 0..N (0: none).
    #[arg(long, default_value_t = 3)]
    pub random_seeds: u64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Also write the table's figures to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One row of the table.
#[derive(Serialize, Debug)]
struct Row {
    features: String,
    /// Top-1 accuracy in [0, 1].
    accuracy: f64,
    /// Values per image: the model's width, or 3 × height × width for pixels.
    dim: usize,
    /// Mean NEPA loss on the set; none for pixels.
    nepa_loss: Option<f64>,
}

#[derive(Serialize, Debug)]
struct Report {
    data: String,
    images: usize,
    classes: Vec<String>,
    per_class: Vec<usize>,
    k: usize,
    temperature: f32,
    rows: Vec<Row>,
}

pub fn run(args: ProbeArgs) -> Result<()> {
    let device = device::select(args.device)?.device;
    let probe = KnnProbe::default();
    let mut opened = vec![];
    for spec in &args.checkpoints {
        let (name, path) = match spec.split_once('=') {
            Some((name, path)) if !name.is_empty() => (name.to_string(), PathBuf::from(path)),
            _ => (spec.clone(), PathBuf::from(spec)),
        };
        let loaded = ckpt::open(&path)?;
        let config = ckpt::config_of(&loaded)?;
        opened.push((name, loaded, config));
    }
    let config = opened.first().context("no --checkpoint given")?.2.clone();
    // Decoded once, kept large enough for the largest input among the checkpoints.
    let side = opened
        .iter()
        .map(|(_, _, c)| stored_side(c))
        .max()
        .unwrap_or(0);
    let data = labelled(&args, side)?;
    let mut rows = vec![];
    for (name, loaded, config) in &opened {
        let (model, _) = load_backbone(&loaded.model, config, &device, LoadOptions::default())
            .with_context(|| format!("loading {}", loaded.path.display()))?;
        let features = features_of(&model, config, &data, args.batch_size, &device)?;
        rows.push(row(&probe, name.clone(), &features, &data)?);
    }
    for seed in 0..args.random_seeds {
        device.seed(seed);
        let model = NepaModel::new(&config, &device)?;
        let features = features_of(&model, &config, &data, args.batch_size, &device)?;
        rows.push(row(
            &probe,
            format!("random init, seed {seed}"),
            &features,
            &data,
        )?);
    }
    let [h, w] = config.image_size;
    let pixels = pixel_features(&data.set, config.image_size)?;
    rows.push(row(&probe, format!("raw pixels, {h}×{w}"), &pixels, &data)?);

    let labels = data.labels.clone().unwrap_or_default();
    let per_class = (0..data.classes.len())
        .map(|c| labels.iter().filter(|&&l| l == c).count())
        .collect::<Vec<_>>();
    println!(
        "k-NN probe (k {}, τ {}, leave-one-out) on {} images of {} in {} classes ({})",
        probe.k,
        probe.temperature,
        data.len(),
        args.data.display(),
        data.classes.len(),
        data.classes
            .iter()
            .zip(&per_class)
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("\n| features | top-1 | NEPA loss |\n|---|---:|---:|");
    for r in &rows {
        let loss = r.nepa_loss.map_or("–".to_string(), |l| format!("{l:.4}"));
        println!("| {} | {:.1}% | {loss} |", r.features, 100.0 * r.accuracy);
    }
    if let Some(path) = &args.json {
        let report = Report {
            data: args.data.display().to_string(),
            images: data.len(),
            classes: data.classes.clone(),
            per_class,
            k: probe.k,
            temperature: probe.temperature,
            rows,
        };
        write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}

/// The labelled folder, each image decoded and shrunk to at most `side` pixels.
fn labelled(args: &ProbeArgs, side: usize) -> Result<Dataset> {
    let data = Dataset::load(&args.data, Split::Test, side)?;
    if data.labels.is_none() || data.classes.len() < 2 {
        bail!(
            "{} is not a labelled set: give a folder with one sub-folder of images per class (at least two)",
            args.data.display()
        );
    }
    Ok(data)
}

fn features_of(
    model: &NepaModel,
    config: &NepaConfig,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<Features> {
    Ok(block_on(pooled_features(
        model,
        config.image_size,
        &data.set,
        batch_size,
        device,
    ))?)
}

fn row(probe: &KnnProbe, features: String, f: &Features, data: &Dataset) -> Result<Row> {
    let labels = data.labels.as_deref().unwrap_or_default();
    let accuracy = probe.accuracy(f, labels, None)?.top1();
    Ok(Row {
        features,
        accuracy,
        dim: f.dim,
        nepa_loss: f.loss,
    })
}
