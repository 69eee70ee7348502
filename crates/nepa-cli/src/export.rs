//! `nepa export --hf DIR`: any checkpoint nepa reads, written as a Hugging Face model folder
//! (`config.json`, `preprocessor_config.json`, `model.safetensors`) that the official code's
//! `ViTNepaForPreTraining.from_pretrained(DIR)` (a backbone) or
//! `ViTNepaForImageClassification.from_pretrained(DIR)` (a classifier) loads, so that a run
//! can move to the official trainer (docs/hub.md). nepa reads the folder back with
//! `--checkpoint DIR`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor};
use clap::Args;
use nepa::checkpoint::{
    CLASSES_METADATA_KEY, backbone_tensors, classifier_tensors, hf_config_json,
    hf_preprocessor_config_json, load_backbone, to_safetensors, with_metadata,
};
use nepa::{ForwardOptions, LoadOptions, LossOptions, NepaClassifier, NepaModel, prediction_loss};
use safetensors::tensor::{Dtype, TensorView};

use crate::ckpt::{self, write_atomic};
use crate::device::{self, DeviceChoice};
use crate::hub;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Any checkpoint nepa reads: a `nepa pretrain`/`finetune` checkpoint or run folder, a
    /// safetensors file, a Hugging Face model folder, or `hf:org/name[@revision]`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Folder to write the Hugging Face model into (created; its three files are replaced).
    #[arg(long)]
    pub hf: PathBuf,
    /// Also write the model's outputs on a fixed input (`pixel_values`, `last_hidden_state`,
    /// `input_embedding`, `loss`, and `logits` for a classifier) to this safetensors file, to
    /// compare with other code (tests/reference/official_roundtrip.py).
    #[arg(long)]
    pub probe: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let loaded = ckpt::open(&args.checkpoint)?;
    let config = ckpt::config_of(&loaded)?;
    let device = device::select(DeviceChoice::Flex)?.device;
    let is_classifier = crate::classify::has_head(&loaded.model)?;
    let (weights, classes, model) = if is_classifier {
        let model = ckpt::classifier_of(&loaded, &config, &device)?;
        // transformers names unnamed labels this way.
        let classes = ckpt::classes_of(&loaded)?.unwrap_or_else(|| {
            (0..model.num_labels())
                .map(|i| format!("LABEL_{i}"))
                .collect()
        });
        anyhow::ensure!(
            classes.len() == model.num_labels(),
            "{} names {} classes but its head has {} outputs",
            args.checkpoint.display(),
            classes.len(),
            model.num_labels()
        );
        let weights = to_safetensors(&classifier_tensors(&model), &config)?;
        let weights = with_metadata(
            &weights,
            &[(CLASSES_METADATA_KEY, serde_json::to_string(&classes)?)],
        )?;
        (weights, Some(classes), Model::Classifier(Box::new(model)))
    } else {
        let (model, _) = load_backbone(&loaded.model, &config, &device, LoadOptions::default())
            .with_context(|| format!("loading {}", loaded.path.display()))?;
        // `ViTNepaForPreTraining` holds the backbone as `vit_nepa`: its keys carry the prefix.
        let weights = to_safetensors(&backbone_tensors(&model, true), &config)?;
        (weights, None, Model::Backbone(Box::new(model)))
    };
    std::fs::create_dir_all(&args.hf).with_context(|| format!("creating {}", args.hf.display()))?;
    write_atomic(&args.hf.join(hub::WEIGHTS_FILE), &weights)?;
    write_atomic(
        &args.hf.join(hub::PREPROCESSOR_FILE),
        hf_preprocessor_config_json(&config).as_bytes(),
    )?;
    // Last: a folder with a config.json is a model folder (ckpt::open).
    write_atomic(
        &args.hf.join(hub::CONFIG_FILE),
        hf_config_json(&config, classes.as_deref()).as_bytes(),
    )?;
    println!(
        "wrote {} ({}, {} tensors) to {}",
        nepa::checkpoint::hf_architecture(is_classifier),
        if config.is_causal {
            "causal"
        } else {
            "bidirectional"
        },
        safetensors::SafeTensors::deserialize(&weights)?
            .names()
            .len(),
        args.hf.display()
    );
    if let Some(path) = &args.probe {
        write_atomic(path, &probe(&model, &config, &device)?)?;
        println!("wrote the outputs on the probe input to {}", path.display());
    }
    Ok(())
}

enum Model {
    Backbone(Box<NepaModel>),
    Classifier(Box<NepaClassifier>),
}

/// The outputs on `nepa::bench::probe_image` (eval mode), as safetensors.
fn probe(model: &Model, config: &nepa::NepaConfig, device: &Device) -> Result<Vec<u8>> {
    let data = nepa::bench::probe_image(config);
    let pixels = Tensor::<4>::from_data(data, device);
    let options = ForwardOptions::eval();
    let (output, logits) = match model {
        Model::Backbone(m) => (m.forward(pixels.clone(), &options), None),
        Model::Classifier(m) => {
            let (logits, output) = m.forward_with_output(pixels.clone(), &options);
            (output, Some(logits))
        }
    };
    let loss = prediction_loss(
        output.last_hidden_state.clone(),
        output.input_embedding.clone(),
        LossOptions::default(),
    );
    let mut named: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
        values("pixel_values", pixels)?,
        values("last_hidden_state", output.last_hidden_state)?,
        values("input_embedding", output.input_embedding)?,
        values("loss", loss)?,
    ];
    if let Some(logits) = logits {
        named.push(values("logits", logits)?);
    }
    let bytes: Vec<Vec<u8>> = named
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = named
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            Ok((
                name.to_string(),
                TensorView::new(Dtype::F32, shape.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(safetensors::tensor::serialize(
        views,
        Some(HashMap::from([("format".to_string(), "pt".to_string())])),
    )?)
}

fn values<const D: usize>(
    name: &'static str,
    tensor: Tensor<D>,
) -> Result<(&'static str, Vec<usize>, Vec<f32>)> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading {name}: {e:?}"))?;
    Ok((name, shape, values))
}
