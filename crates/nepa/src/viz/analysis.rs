//! Running the model on one image for the visualizations (docs/nepa.md §6): preprocessing,
//! the forward pass with attentions, and one asynchronous read-back of everything the panels
//! need.

use burn::tensor::{Device, Tensor, TensorData, Transaction};
use web_time::Instant;

use super::grid::{Grid, MapDims};
use super::maps::PatchMaps;
use super::raster::denormalize_chw;
use crate::config::NepaConfig;
use crate::error::NepaError;
use crate::image::{RgbImage, preprocess_eval};
use crate::model::{ForwardOptions, NepaModel};

/// Per-channel mean and std of the model input (docs/nepa.md §7.2), to undo for display.
const INPUT_MEAN_STD: ([f32; 3], [f32; 3]) = ([0.5; 3], [0.5; 3]);

/// One image's model outputs, read back to the host.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub maps: PatchMaps,
    /// The model input, de-normalised, at the model's resolution (what the maps cover).
    pub display: RgbImage,
    /// Shared-basis PCA colours of z and ẑ, one per patch ([`PatchMaps::embedding_pca_rgb`]):
    /// computed once here because the fit is the slowest step and does not depend on the
    /// query.
    pub pca: (Vec<[u8; 3]>, Vec<[u8; 3]>),
    /// Forward pass and read-back, in milliseconds.
    pub forward_ms: f64,
}

/// Runs `model` on `image` (resized to the model input, docs/nepa.md §7.2) in eval mode with
/// attentions, and reads back z, ẑ and every layer's attention probabilities in one
/// transaction.
///
/// The read-back is asynchronous because synchronous reads panic on WebGPU in the browser;
/// native callers run the future to completion with a simple executor
/// (`futures_lite::future::block_on`).
pub async fn analyse(
    model: &NepaModel,
    config: &NepaConfig,
    image: &RgbImage,
    device: &Device,
) -> Result<Analysis, NepaError> {
    let [h, w] = config.image_size;
    let pixels = preprocess_eval(image, h, w);
    let start = Instant::now();
    let input = Tensor::<4>::from_data(TensorData::new(pixels.clone(), [1, 3, h, w]), device);
    let out = model.forward(input, &ForwardOptions::eval().with_attentions());
    let mut transaction = Transaction::default()
        .register(out.input_embedding)
        .register(out.last_hidden_state);
    for attention in out.attentions {
        transaction = transaction.register(attention);
    }
    let data = transaction
        .execute_async()
        .await
        .map_err(|e| NepaError::Readback(format!("{e:?}")))?;
    let forward_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut values = data.into_iter().map(|d| {
        d.convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| NepaError::Readback(format!("{e:?}")))
    });
    let missing = || NepaError::Readback("the model returned fewer outputs than asked".into());
    let z = values.next().ok_or_else(missing)??;
    let z_hat = values.next().ok_or_else(missing)??;
    let attentions = values.collect::<Result<Vec<_>, _>>()?;
    let (rows, cols) = config.grid();
    let dims = MapDims {
        grid: Grid::new(rows, cols),
        dim: config.hidden_size,
        heads: config.num_attention_heads,
    };
    let maps = PatchMaps::from_output_data(dims, &z, &z_hat, &attentions)?;
    let (mean, std) = INPUT_MEAN_STD;
    let display = denormalize_chw(&pixels, h, w, mean, std)?;
    let pca = maps.embedding_pca_rgb();
    Ok(Analysis {
        maps,
        display,
        pca,
        forward_ms,
    })
}
