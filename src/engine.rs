//! The model side of the page, without UI: loading a checkpoint, preprocessing an image,
//! running the forward pass and reading everything back asynchronously (sync reads panic on
//! WebGPU), then building the host-side maps of `nepa::viz`.

use burn::tensor::{Device, Tensor, TensorData, Transaction};
use nepa::checkpoint::{infer_config, load_backbone};
use nepa::image::{RgbImage, preprocess_eval};
use nepa::viz::{Grid, MapDims, PatchMaps};
use nepa::{ForwardOptions, LoadOptions, NepaConfig, NepaModel};
use web_time::Instant;

/// A model ready for inference, and where it came from.
pub struct LoadedModel {
    pub model: NepaModel,
    pub config: NepaConfig,
    /// Shown next to the model: file name, or "untrained" for the random fallback.
    pub label: String,
    pub trained: bool,
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
    })
}

/// Loads a NEPA safetensors checkpoint (official key names, with or without `vit_nepa.`).
/// The architecture comes from the file's metadata or, for official files, its shapes.
pub fn load_checkpoint(bytes: &[u8], name: &str, device: &Device) -> Result<LoadedModel, String> {
    let config = infer_config(bytes).map_err(|e| format!("{name}: {e}"))?;
    let (model, report) = load_backbone(bytes, &config, device, LoadOptions::default())
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
    })
}

/// One image's model outputs, read back, plus timings.
pub struct Analysis {
    pub maps: PatchMaps,
    /// The model input, de-normalised, at the model's resolution (what the maps cover).
    pub display: RgbImage,
    pub forward_ms: f64,
    pub heads: usize,
}

/// Runs the model on `image` (resized to the model input, spec §7.2) and reads back z, ẑ
/// and every layer's attention probabilities in one async transaction.
pub async fn analyse(
    loaded: &LoadedModel,
    image: &RgbImage,
    device: &Device,
) -> Result<Analysis, String> {
    let [h, w] = loaded.config.image_size;
    let pixels = preprocess_eval(image, h, w);
    let start = Instant::now();
    let input = Tensor::<4>::from_data(TensorData::new(pixels.clone(), [1, 3, h, w]), device);
    let out = loaded
        .model
        .forward(input, &ForwardOptions::eval().with_attentions());
    let mut transaction = Transaction::default()
        .register(out.input_embedding)
        .register(out.last_hidden_state);
    for attention in out.attentions {
        transaction = transaction.register(attention);
    }
    let data = transaction
        .execute_async()
        .await
        .map_err(|e| format!("reading the model output back failed: {e:?}"))?;
    let forward_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut values = data.into_iter().map(|d| {
        d.convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| format!("{e:?}"))
    });
    let z = values.next().ok_or("no output")??;
    let z_hat = values.next().ok_or("no output")??;
    let attentions = values.collect::<Result<Vec<_>, _>>()?;
    let (rows, cols) = loaded.config.grid();
    let maps = PatchMaps::from_output_data(
        MapDims {
            grid: Grid::new(rows, cols),
            dim: loaded.config.hidden_size,
            heads: loaded.config.num_attention_heads,
        },
        &z,
        &z_hat,
        &attentions,
    )
    .map_err(|e| e.to_string())?;
    let display =
        nepa::viz::denormalize_chw(&pixels, h, w, [0.5; 3], [0.5; 3]).map_err(|e| e.to_string())?;
    Ok(Analysis {
        maps,
        display: RgbImage {
            width: display.width,
            height: display.height,
            pixels: display.data,
        },
        forward_ms,
        heads: loaded.config.num_attention_heads,
    })
}
