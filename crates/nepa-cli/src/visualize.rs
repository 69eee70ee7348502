//! `nepa visualize`: the paper's three views for one image and one query patch (docs/nepa.md §6),
//! plus the predictability map cos(ẑ_t, z_{t+1}) and a shared-basis PCA of z and ẑ.
//! Arguments in, `nepa::viz::analyse`, `nepa::viz::render_panels`, PNGs out: the browser's
//! Explore tab draws the panels of the same two functions, so both show the same pixels.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use nepa::LoadOptions;
use nepa::checkpoint::load_backbone;
use nepa::image::{decode, to_png};
use nepa::viz::{
    HeadSel, LayerSel, Selection, SimilarityMode, analyse, display_scale, first_query,
    render_panels,
};

use crate::ckpt::{self, write_atomic};
use crate::device::{self, DeviceChoice};

#[derive(Args, Debug)]
pub struct VisualizeArgs {
    /// A checkpoint, a Hugging Face model folder, or `hf:org/name[@revision]` (docs/hub.md).
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub image: PathBuf,
    /// Query patch row (0-based, top to bottom). Without --row and --col the page's first-view
    /// rule chooses the patch (docs/nepa.md §6.6).
    #[arg(long, requires = "col")]
    pub row: Option<usize>,
    /// Query patch column (0-based, left to right).
    #[arg(long, requires = "row")]
    pub col: Option<usize>,
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
    let analysis = futures_lite::future::block_on(analyse(&model, &config, &image, &device))?;
    let query = match (args.row, args.col) {
        (Some(row), Some(col)) => (row, col),
        _ => first_query(&analysis.maps),
    };
    let selection = Selection {
        query,
        layer: args.layer.map_or(LayerSel::All, LayerSel::Layer),
        head: args.head.map_or(HeadSel::Mean, HeadSel::Head),
        similarity: SimilarityMode::Softmax,
    };
    let shown = render_panels(&analysis, &selection, display_scale(&config))?;
    std::fs::create_dir_all(&args.out)?;
    for panel in &shown.panels {
        write_atomic(&args.out.join(panel.file_name()), &to_png(&panel.image))?;
    }
    println!(
        "query patch ({}, {}) = token {}; CLS attention weight {:.3}; mean cos(ẑ_t, z_t+1) {:.4}",
        query.0, query.1, shown.query_token, shown.cls_attention, shown.mean_predictability
    );
    println!(
        "wrote {} panels to {}:",
        shown.panels.len(),
        args.out.display()
    );
    for panel in &shown.panels {
        println!("  {}: {}", panel.file_name(), panel.caption());
    }
    Ok(())
}
