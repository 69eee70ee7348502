//! The model side of the page, without UI: loading a checkpoint, preprocessing images,
//! classifying and adapting, reading everything back asynchronously (sync reads panic on
//! WebGPU). The Explore tab's analysis is `nepa::viz::analyse`, shared with the CLI.

use std::rc::Rc;

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use nepa::checkpoint::{infer_config, load_backbone};
use nepa::image::{Augment, RgbImage, augment_train, preprocess_eval};
use nepa::train::{AdamW, AdamWConfig, pretrain_step};
use nepa::{
    ForwardOptions, LoadOptions, LossOptions, NepaClassifier, NepaConfig, NepaModel, SplitMix64,
};

/// The bundled demo checkpoint (static/, see scripts/make-demo-checkpoint.sh).
pub const DEMO_CHECKPOINT: &str = "nepa-demo.safetensors";

/// A model ready for inference, and where it came from.
pub struct LoadedModel {
    pub model: NepaModel,
    pub config: NepaConfig,
    /// Shown next to the model: file name, or "untrained" for the random fallback.
    pub label: String,
    pub trained: bool,
    /// The checkpoint bytes it was loaded from, to load it again on another device (after a
    /// device loss). `None` for the random init, which is simply made again.
    pub source: Option<Rc<Vec<u8>>>,
    pub name: String,
}

impl LoadedModel {
    /// The same model on another device.
    pub fn reload_on(&self, device: &Device) -> Result<LoadedModel, String> {
        match &self.source {
            Some(bytes) => load_checkpoint(bytes.clone(), &self.name, device),
            None => untrained_model(device),
        }
    }
}

/// The random-init model shown before any checkpoint is loaded: small, so the first
/// forward pass is quick even on a software WebGPU adapter.
pub fn untrained_model(device: &Device) -> Result<LoadedModel, String> {
    let config = NepaConfig::new(96, 4, 4)
        .with_image_size(64, 64)
        .with_patch_size(8)
        .with_layerscale(0.1);
    device.seed(0);
    let model = NepaModel::new(&config, device).map_err(|e| e.to_string())?;
    Ok(LoadedModel {
        model,
        label: "untrained: random init, D 96, 4 layers, 64 px / patch 8".into(),
        config,
        trained: false,
        source: None,
        name: "untrained".into(),
    })
}

/// Loads a NEPA safetensors checkpoint (official key names, with or without `vit_nepa.`).
/// The architecture comes from the file's metadata or, for official files, its shapes.
pub fn load_checkpoint(
    bytes: Rc<Vec<u8>>,
    name: &str,
    device: &Device,
) -> Result<LoadedModel, String> {
    let config = infer_config(&bytes).map_err(|e| format!("{name}: {e}"))?;
    let (model, report) = load_backbone(&bytes, &config, device, LoadOptions::default())
        .map_err(|e| format!("{name}: {e}"))?;
    let mut label = format!(
        "{name}: D {}, {} layers, {} heads, {}×{} px / patch {}",
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.image_size[0],
        config.image_size[1],
        config.patch_size
    );
    if !report.unused_keys.is_empty() {
        label.push_str(&format!(" ({} unused tensors)", report.unused_keys.len()));
    }
    Ok(LoadedModel {
        model: model.set_causal(config.is_causal),
        config,
        label,
        trained: true,
        source: Some(bytes),
        name: name.to_string(),
    })
}

/// Model inputs for `images` (docs/nepa.md §7.2 eval resize, or the training augmentation when an
/// rng is given), as one `[B, 3, H, W]` batch.
pub fn batch_pixels(
    images: &[&RgbImage],
    config: &NepaConfig,
    augment: Option<&mut SplitMix64>,
) -> TensorData {
    let [h, w] = config.image_size;
    let mut values = Vec::with_capacity(images.len() * 3 * h * w);
    match augment {
        Some(rng) => {
            // Milder crops than ImageNet's 0.08: a few user images carry little redundancy.
            let aug = Augment {
                scale: (0.35, 1.0),
                ..Augment::default()
            };
            for image in images {
                values.extend(augment_train(image, h, w, &aug, rng));
            }
        }
        None => {
            for image in images {
                values.extend(preprocess_eval(image, h, w));
            }
        }
    }
    TensorData::new(values, [images.len(), 3, h, w])
}

/// Reads a tensor back asynchronously as f32 values.
pub async fn read<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, String> {
    tensor
        .into_data_async()
        .await
        .map_err(|e| format!("reading from the device failed: {e:?}"))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

/// Class probabilities of `image` under a (plain, eval-mode) classifier.
pub async fn classify(
    model: &NepaClassifier,
    config: &NepaConfig,
    image: &RgbImage,
    device: &Device,
) -> Result<Vec<f32>, String> {
    let pixels = Tensor::from_data(batch_pixels(&[image], config, None), device);
    let logits = model.forward(pixels, &ForwardOptions::eval());
    read(softmax(logits, 1)).await
}

/// "Adapt to my images": NEPA pretraining continued on the user's unlabelled images.
pub struct Adaptation {
    model: Option<NepaModel>,
    optim: AdamW,
    rng: SplitMix64,
    pub steps: usize,
    pub losses: Vec<f32>,
}

impl Adaptation {
    pub fn new(model: &NepaModel) -> Self {
        Self {
            model: Some(model.clone().train()),
            optim: AdamW::new(AdamWConfig::default()),
            rng: SplitMix64::new(0x0041_4441_5054), // "ADAPT"
            steps: 0,
            losses: vec![],
        }
    }

    /// One step on a batch of augmented crops of `images`; returns the loss.
    pub async fn step(
        &mut self,
        images: &[&RgbImage],
        config: &NepaConfig,
        device: &Device,
        lr: f64,
    ) -> Result<f32, String> {
        let batch = batch_pixels(images, config, Some(&mut self.rng));
        let pixels = Tensor::from_data(batch, &device.clone().autodiff());
        let model = self.model.take().expect("the model is always put back");
        let out = pretrain_step(
            model,
            &mut self.optim,
            pixels,
            lr,
            0.05,
            &ForwardOptions::eval(),
            LossOptions::default(),
        );
        self.model = Some(out.model);
        let loss = read(out.loss)
            .await?
            .first()
            .copied()
            .ok_or("the loss could not be read back from the device")?;
        self.steps += 1;
        self.losses.push(loss);
        Ok(loss)
    }

    /// The adapted backbone for inference.
    pub fn model(&self) -> NepaModel {
        self.model
            .as_ref()
            .expect("the model is always put back")
            .valid()
    }
}
