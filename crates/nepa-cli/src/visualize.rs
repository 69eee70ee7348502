//! `nepa visualize`: the paper's three views for one image and one query patch (docs/nepa.md §6),
//! plus the predictability map cos(ẑ_t, z_{t+1}) and a shared-basis PCA of z and ẑ.
//! The browser draws the same maps from the same `nepa::viz` code.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use nepa::checkpoint::load_backbone;
use nepa::image::{RgbImage, decode, preprocess_eval, to_png};
use nepa::viz::{
    self, Grid, HeadSel, LayerSel, MapDims, PatchMaps, RgbBuffer, attention_display, heatmap_panel,
    similarity_display,
};
use nepa::{ForwardOptions, LoadOptions};

use crate::ckpt::{self, write_atomic};
use crate::device::{self, DeviceChoice};

#[derive(Args, Debug)]
pub struct VisualizeArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub image: PathBuf,
    /// Query patch row (0-based, top to bottom).
    #[arg(long, default_value_t = 0)]
    pub row: usize,
    /// Query patch column (0-based, left to right).
    #[arg(long, default_value_t = 0)]
    pub col: usize,
    /// Attention layer to show (default: the mean of all layers).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Attention head to show (default: the mean of heads).
    #[arg(long)]
    pub head: Option<usize>,
    #[arg(long, default_value = "visualize")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

fn to_rgb_image(buffer: &RgbBuffer) -> RgbImage {
    RgbImage {
        width: buffer.width,
        height: buffer.height,
        pixels: buffer.data.clone(),
    }
}

/// Nearest-neighbour upscale so small inputs (32 px) give panels people can see.
fn enlarge(image: &RgbBuffer, factor: usize) -> RgbBuffer {
    let mut out = RgbBuffer::new(image.width * factor, image.height * factor);
    for y in 0..out.height {
        for x in 0..out.width {
            out.set_pixel(x, y, image.pixel(x / factor, y / factor));
        }
    }
    out
}

fn read_all<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading back: {e:?}"))
}

pub fn run(args: VisualizeArgs) -> Result<()> {
    let selected = device::select(args.device)?;
    let device = selected.device;
    let loaded = ckpt::open(&args.checkpoint)?;
    let config = ckpt::config_of(&loaded)?;
    if !config.is_causal {
        eprintln!(
            "note: this checkpoint is bidirectional (fine-tuned); the maps are meant for causal pretrained weights"
        );
    }
    let (model, _) = load_backbone(&loaded.model, &config, &device, LoadOptions::default())
        .with_context(|| format!("loading {}", loaded.path.display()))?;
    let bytes = crate::fsio::read_capped(&args.image, crate::data::MAX_IMAGE_FILE_BYTES)?;
    let image = decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.image.display()))?;
    let [h, w] = config.image_size;
    let pixels = preprocess_eval(&image, h, w);
    let (rows, cols) = config.grid();
    if args.row >= rows || args.col >= cols {
        bail!(
            "patch ({}, {}) is outside the {rows}×{cols} grid",
            args.row,
            args.col
        );
    }
    let input = Tensor::<4>::from_data(TensorData::new(pixels.clone(), [1, 3, h, w]), &device);
    let out = model.forward(input, &ForwardOptions::eval().with_attentions());
    let z = read_all(out.input_embedding)?;
    let z_hat = read_all(out.last_hidden_state)?;
    let attentions = out
        .attentions
        .into_iter()
        .map(read_all)
        .collect::<Result<Vec<_>>>()?;
    let grid = Grid::new(rows, cols);
    let maps = PatchMaps::from_output_data(
        MapDims {
            grid,
            dim: config.hidden_size,
            heads: config.num_attention_heads,
        },
        &z,
        &z_hat,
        &attentions,
    )?;
    let query = grid.token_of(args.row, args.col);
    let layers = args.layer.map_or(LayerSel::All, LayerSel::Layer);
    let heads = args.head.map_or(HeadSel::Mean, HeadSel::Head);
    let attention = maps.attention_map(query, layers, heads)?;
    let similarity = maps.similarity_map(query)?;
    let predictability = maps.predictability_map();
    let (pca_z, pca_z_hat) = maps.embedding_pca_rgb();

    let factor = (256 / h.max(w)).max(1);
    let base = enlarge(
        &viz::denormalize_chw(&pixels, h, w, [0.5; 3], [0.5; 3])?,
        factor,
    );
    let mut query_panel = base.clone();
    viz::outline_patch(
        &mut query_panel,
        grid,
        (args.row, args.col),
        viz::QUERY_COLOR,
        viz::OUTLINE_THICKNESS,
    );
    if let Some(next) = grid.next_patch(query) {
        viz::outline_patch(
            &mut query_panel,
            grid,
            next,
            viz::NEXT_COLOR,
            viz::OUTLINE_THICKNESS,
        );
    }
    // The predictability map is shown on a fixed scale, cos ∈ [−1, 1] → [0, 1].
    let predictability_display: Vec<f32> = predictability.iter().map(|c| (c + 1.0) / 2.0).collect();
    let cell = base.width / cols;
    let panels = [
        ("query.png", query_panel),
        (
            "attention.png",
            heatmap_panel(
                &base,
                grid,
                &attention_display(&attention.patches),
                Some(query),
            ),
        ),
        (
            "similarity.png",
            heatmap_panel(&base, grid, &similarity_display(&similarity), Some(query)),
        ),
        (
            "predictability.png",
            heatmap_panel(&base, grid, &predictability_display, None),
        ),
        ("pca_z.png", viz::upsample_nearest(&pca_z, grid, cell)),
        (
            "pca_z_hat.png",
            viz::upsample_nearest(&pca_z_hat, grid, cell),
        ),
    ];
    std::fs::create_dir_all(&args.out)?;
    for (name, panel) in &panels {
        write_atomic(&args.out.join(name), &to_png(&to_rgb_image(panel)))?;
    }
    let mean_pred = predictability.iter().sum::<f32>() / predictability.len() as f32;
    println!(
        "query patch ({}, {}) = token {query}; CLS attention weight {:.3}; mean cos(ẑ_t, z_t+1) {mean_pred:.4}",
        args.row, args.col, attention.cls
    );
    println!(
        "wrote {} panels to {}: {}",
        panels.len(),
        args.out.display(),
        panels.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
