//! `nepa eval`: top-1 accuracy of a classifier with the fine-tuning driver's evaluation
//! (`nepa::finetune::evaluate`, the same transform), or for a pretraining checkpoint the
//! held-out NEPA loss and a k-NN accuracy of its features.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use futures_lite::future::block_on;
use nepa::LoadOptions;
use nepa::checkpoint::load_backbone;
use nepa::data::ImageSet;
use nepa::finetune::evaluate;
use nepa::probe::{KnnProbe, pooled_features};

use crate::ckpt;
use crate::data::{Dataset, Split};
use crate::device::{self, DeviceChoice};
use crate::run::stored_side;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A classifier checkpoint written by `nepa finetune`, an official -sft file or model
    /// folder, or `hf:org/name[@revision]` (docs/hub.md).
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
    let model = ckpt::classifier_of(&loaded, &config, &device)?;
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
    let acc = block_on(evaluate(&model, &config, &data, args.batch_size, &device))?;
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
/// predicts the next patch of unseen images) and, with labels, the crate's k-NN probe of its
/// mean-pooled features (`nepa::probe`). With idx files the memory is (up to 5,000 of) the train split and
/// the queries the chosen split; an image folder has no splits, so each image is classified
/// by the others (leave-one-out): an image never counts as its own neighbour.
fn eval_backbone(
    args: &EvalArgs,
    loaded: &ckpt::Loaded,
    config: &nepa::NepaConfig,
    data: &Dataset,
    device: &Device,
) -> Result<()> {
    let (model, _) = load_backbone(&loaded.model, config, device, LoadOptions::default())
        .with_context(|| format!("loading {}", loaded.path.display()))?;
    let features = |set: &ImageSet| {
        block_on(pooled_features(
            &model,
            config.image_size,
            set,
            args.batch_size,
            device,
        ))
    };
    let queries = features(data)?;
    println!(
        "NEPA loss {:.4} (mean −cos(ẑ_t, z_t+1)) on {} images of {}",
        queries.loss.unwrap_or(f64::NAN),
        data.len(),
        data.source
    );
    let Some(test_labels) = &data.labels else {
        return Ok(());
    };
    let probe = KnnProbe::default();
    let (result, what) = if data.from_idx {
        let mut memory = Dataset::load(&args.data, Split::Train, stored_side(config))?.set;
        let n_memory = memory.len().min(5000);
        memory.select(&(0..n_memory).collect::<Vec<_>>());
        let labels = memory.require_labels("k-NN")?.to_vec();
        let memory_features = features(&memory)?;
        let result = probe.accuracy(&queries, test_labels, Some((&memory_features, &labels)))?;
        (result, format!("{n_memory} labelled train images"))
    } else {
        let result = probe.accuracy(&queries, test_labels, None)?;
        (result, format!("leave-one-out over {} images", data.len()))
    };
    println!(
        "k-NN ({} neighbours, {what}) top-1 accuracy {:.2}%",
        result.k,
        100.0 * result.top1()
    );
    Ok(())
}
