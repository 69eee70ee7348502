//! The page's models: the bundled demo checkpoint, a checkpoint from a file or URL, or the
//! random fallback, and how to load each again on another device. Everything that runs a
//! model is the crate's: the Explore tab's analysis (`nepa::viz::analyse`), fine-tuning
//! (`nepa::finetune`) and "adapt to my images" (`nepa::pretrain`), shared with the CLI.

use std::rc::Rc;

use burn::tensor::Device;
use nepa::checkpoint::{infer_config, load_backbone};
use nepa::{LoadOptions, NepaConfig, NepaModel};

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
