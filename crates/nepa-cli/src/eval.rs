//! `nepa eval`: top-1 accuracy of a classifier with the fine-tuning driver's evaluation
//! (`nepa::finetune::evaluate`, the same transform), or for a pretraining checkpoint the
//! held-out NEPA loss and a k-NN accuracy of its features.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use clap::Args;
use futures_lite::future::block_on;
use nepa::checkpoint::{load_backbone, load_classifier};
use nepa::data::{ImageSet, build_batch};
use nepa::finetune::evaluate;
use nepa::image::{RgbImage, preprocess_eval};
use nepa::train::{argmax_rows, read_f32};
use nepa::{ForwardOptions, LoadOptions};

use crate::ckpt;
use crate::data::{Dataset, Split};
use crate::device::{self, DeviceChoice};
use crate::run::stored_side;

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
/// predicts the next patch of unseen images) and, with labels, a k-NN accuracy of its
/// mean-pooled features. With idx files the memory is (up to 5,000 of) the train split and
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
    let features = |set: &ImageSet| -> Result<(Vec<f32>, f64)> {
        let mut feats = Vec::with_capacity(set.len() * config.hidden_size);
        let mut loss_sum = 0.0;
        let indices: Vec<usize> = (0..set.len()).collect();
        for chunk in indices.chunks(args.batch_size.max(1)) {
            let images: Vec<&RgbImage> = chunk.iter().map(|&i| &set.images[i]).collect();
            let pixels = build_batch(&images, config.image_size, |image, h, w| {
                Ok(preprocess_eval(image, h, w))
            })?;
            let out = model.forward(Tensor::from_data(pixels, device), &ForwardOptions::eval());
            let [b, t, d] = out.last_hidden_state.dims();
            let loss = nepa::prediction_loss(
                out.last_hidden_state.clone(),
                out.input_embedding,
                nepa::LossOptions::default(),
            );
            loss_sum += block_on(read_f32(loss))?[0] as f64 * b as f64;
            let pooled = nepa::loss::l2_normalize(
                out.last_hidden_state.narrow(1, 1, t - 1).mean_dim(1),
                1e-12,
            )
            .reshape([b * d]);
            feats.extend(block_on(read_f32(pooled))?);
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
    let has_splits = data.from_idx;
    let (memory_feats, memory_labels, what) = if has_splits {
        let mut memory = Dataset::load(&args.data, Split::Train, stored_side(config))?.set;
        let n_memory = memory.len().min(5000);
        memory.select(&(0..n_memory).collect::<Vec<_>>());
        let labels = memory.require_labels("k-NN")?.to_vec();
        let (feats, _) = features(&memory)?;
        (feats, labels, format!("{n_memory} labelled train images"))
    } else {
        let what = format!("leave-one-out over {} images", data.len());
        (test_feats.clone(), test_labels.clone(), what)
    };
    let same_images = !has_splits;
    let d = config.hidden_size;
    let n_memory = memory_labels.len() - usize::from(same_images);
    if n_memory == 0 {
        bail!("k-NN needs at least two labelled images");
    }
    let k = 20.min(n_memory);
    let classes = memory_labels.iter().max().map_or(0, |m| m + 1);
    let mut correct = 0;
    for (i, query) in test_feats.chunks(d).enumerate() {
        let mut scored: Vec<(f32, usize)> = memory_feats
            .chunks(d)
            .zip(&memory_labels)
            .enumerate()
            .filter(|(j, _)| !(same_images && *j == i))
            .map(|(_, (m, &label))| (m.iter().zip(query).map(|(a, b)| a * b).sum(), label))
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
        "k-NN ({k} neighbours, {what}) top-1 accuracy {:.2}%",
        100.0 * correct as f64 / data.len() as f64
    );
    Ok(())
}
