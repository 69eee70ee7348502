//! `nepa classify`: each image's most likely classes under a classifier (a `nepa finetune`
//! checkpoint, a Hugging Face folder or `hf:org/name`, e.g. the ImageNet-1k
//! `hf:SixAILab/nepa-base-patch14-224-sft`), with the model's own preprocessing
//! (`ckpt::preprocessing_of`) and class names. The same functions as the page's classification:
//! `nepa::finetune::class_probabilities_with` and `nepa::viz::top_k`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_lite::future::block_on;
use nepa::finetune::class_probabilities_with;
use nepa::image::decode;
use nepa::viz::top_k;

use crate::ckpt;
use crate::device::{self, DeviceChoice};

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// A classifier: `nepa finetune`'s checkpoint, a Hugging Face model folder, or
    /// `hf:org/name[@revision]` (e.g. hf:SixAILab/nepa-base-patch14-224-sft).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Images to classify (PNG, JPEG, WebP, GIF, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

pub fn run(args: ClassifyArgs) -> Result<()> {
    let loaded = ckpt::open(&args.checkpoint)?;
    let config = ckpt::config_of(&loaded)?;
    if !has_head(&loaded.model)? {
        bail!(
            "{} is a pretrained backbone without a classification head: classify needs a \
             fine-tuned classifier (`nepa finetune`'s output, or an -sft model such as \
             hf:SixAILab/nepa-base-patch14-224-sft)",
            args.checkpoint.display()
        );
    }
    let classes = ckpt::classes_of(&loaded)?;
    let selected = device::select(args.device)?;
    let device = selected.device;
    let model = ckpt::classifier_of(&loaded, &config, &device)?;
    let labels = model.num_labels();
    if let Some(classes) = &classes
        && classes.len() != labels
    {
        bail!(
            "{} names {} classes but its head has {labels} outputs",
            args.checkpoint.display(),
            classes.len()
        );
    }
    let preprocess = ckpt::preprocessing_of(&loaded, &config);
    for path in &args.images {
        let bytes = crate::fsio::read_capped(path, crate::data::MAX_IMAGE_FILE_BYTES)?;
        let image = decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let probabilities = block_on(class_probabilities_with(
            &model,
            &config,
            &image,
            &preprocess,
            &device,
        ))
        .with_context(|| format!("classifying {}", path.display()))?;
        println!("{}", path.display());
        for (rank, class) in top_k(&probabilities, args.top).into_iter().enumerate() {
            let name = classes
                .as_ref()
                .map_or_else(|| format!("class {class}"), |c| c[class].clone());
            println!(
                "  {}. {:>6.2}%  {name}  [{class}]",
                rank + 1,
                100.0 * probabilities[class]
            );
        }
    }
    Ok(())
}

/// Whether a safetensors file holds a classification head.
pub fn has_head(model: &[u8]) -> Result<bool> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(model)
        .map_err(|e| anyhow::anyhow!("not a safetensors file: {e}"))?;
    Ok(metadata.tensors().contains_key("classifier.weight"))
}
