//! Every picture `nepa visualize` writes and the Explore tab draws (docs/nepa.md §6), from one
//! function, so that the PNGs and the canvases are the same pixels.

use super::analysis::Analysis;
use super::color::{attention_display, similarity_display};
use super::grid::{Grid, HeadSel, LayerSel};
use super::raster::{fill_patches, heatmap_panel, outline_query, upscale_nearest};
use crate::config::NepaConfig;
use crate::error::NepaError;
use crate::image::RgbImage;

/// Target side of a panel in pixels: big enough to see a 32-px input's patches, and the width
/// the page's stylesheet gives its canvases.
pub const PANEL_SIDE: usize = 256;

/// The one upscale factor of every panel: the largest integer that keeps the longer side of
/// the model input within [`PANEL_SIDE`] (at least 1, so 224-px models stay at 224).
///
/// The upscale is nearest-neighbour by an integer factor ([`upscale_nearest`]): the maps are
/// one flat value per patch (docs/nepa.md §6.5), so the panels show the model's input pixels
/// without invented detail, every patch stays an exact `patch·scale`-pixel square whose edges
/// line up with the heat rectangles and the outlines, and the arithmetic is integer-only, so
/// native and wasm builds produce identical bytes.
pub fn display_scale(config: &NepaConfig) -> usize {
    let [h, w] = config.image_size;
    (PANEL_SIDE / h.max(w).max(1)).max(1)
}

/// How the similarity panel shows `cos(ẑ_t, z_j)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimilarityMode {
    /// The paper's rendering: softmax, normalise, γ 10 (docs/nepa.md §6.4, §6.5).
    #[default]
    Softmax,
    /// Raw cosine on a fixed scale, [−1, 1] → [0, 1].
    Raw,
}

/// What the panels show: the query patch `(row, col)`, the attention layers and heads, and
/// the similarity rendering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    pub query: (usize, usize),
    pub layer: LayerSel,
    pub head: HeadSel,
    pub similarity: SimilarityMode,
}

impl Selection {
    /// The paper's defaults at a query patch: all layers, mean of heads, softmax similarity.
    pub fn at(row: usize, col: usize) -> Self {
        Self {
            query: (row, col),
            layer: LayerSel::All,
            head: HeadSel::Mean,
            similarity: SimilarityMode::Softmax,
        }
    }
}

/// One picture with what the page shows around it.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// The page's canvas id (the CLI's file name is [`Panel::file_name`]).
    pub id: &'static str,
    pub title: String,
    pub image: RgbImage,
    /// Labels of the colour bar's low and high ends; `None` for panels without a colour scale.
    pub colorbar: Option<(String, String)>,
    /// The per-patch values behind the colours (row-major), for the hover readout; empty for
    /// panels that show no single value per patch.
    pub values: Vec<f32>,
}

impl Panel {
    /// One line under the panel saying what it shows, for a visitor who has not read the
    /// paper (the page draws it; `nepa visualize` prints it beside the file).
    pub fn caption(&self) -> &'static str {
        match self.id {
            "query" => {
                "The query patch (red) and the next patch (magenta): the model predicts the next patch's embedding from the query and the patches before it."
            }
            "attention" => {
                "Where the model looks while it predicts the next patch: earlier patches only (causal); brighter = more weight."
            }
            "similarity" => {
                "How close the prediction ẑ at the query is to each patch's embedding z: the bright patches look like what the model expects next."
            }
            "predictability" => {
                "How well each patch was predicted from the patches before it: red = expected, blue = surprising."
            }
            "pca-z" => {
                "The patch embeddings z as colours (3 principal components): patches of one colour look alike to the model."
            }
            "pca-z-hat" => {
                "The predictions ẑ in the same colours: what the model expects at each position."
            }
            _ => "",
        }
    }

    /// The PNG `nepa visualize` writes this panel to: the id with `_` for `-`.
    pub fn file_name(&self) -> String {
        format!("{}.png", self.id.replace('-', "_"))
    }
}

/// Every panel of one selection, in display order, plus the numbers shown beside them.
#[derive(Clone, Debug, PartialEq)]
pub struct Panels {
    pub grid: Grid,
    /// Token index of the query patch.
    pub query_token: usize,
    /// Attention weight of the query on CLS (the column the attention panel drops).
    pub cls_attention: f32,
    /// Mean of the predictability map: −(the prediction loss), what adaptation should raise.
    pub mean_predictability: f32,
    /// query, attention, similarity, predictability, pca-z, pca-z-hat.
    pub panels: Vec<Panel>,
}

/// Renders every panel of `selection` at `scale` (see [`display_scale`]): the query image with
/// its outlines, attention, similarity and predictability heat maps, and the shared-basis PCA
/// of z and ẑ. Errors if the query patch is outside the grid or the layer/head selection is
/// out of range.
pub fn render_panels(
    analysis: &Analysis,
    selection: &Selection,
    scale: usize,
) -> Result<Panels, NepaError> {
    let grid = analysis.maps.grid();
    let (row, col) = selection.query;
    if row >= grid.rows || col >= grid.cols {
        return Err(NepaError::Input(format!(
            "patch ({row}, {col}) is outside the {}×{} grid",
            grid.rows, grid.cols
        )));
    }
    let query = grid.token_of(row, col);
    let base = upscale_nearest(&analysis.display, scale);
    let attention = analysis
        .maps
        .attention_map(query, selection.layer, selection.head)?;
    let predictability = analysis.maps.predictability_map();
    let mean_predictability =
        predictability.iter().sum::<f32>() / predictability.len().max(1) as f32;

    let mut query_image = base.clone();
    outline_query(&mut query_image, grid, query);
    let max_attention = attention.patches.iter().copied().fold(0.0, f32::max);
    let (pca_z, pca_z_hat) = &analysis.pca;
    let flat = |colors: &[[u8; 3]]| fill_patches(grid, base.width, base.height, colors);
    let panels = vec![
        plain("query", "(a) query and next patch", query_image),
        Panel {
            id: "attention",
            title: "(b) attention (γ 0.25; zeros = causal mask)".into(),
            image: heatmap_panel(
                &base,
                grid,
                &attention_display(&attention.patches),
                Some(query),
            ),
            colorbar: Some(("0".into(), format!("{max_attention:.3}"))),
            values: attention.patches,
        },
        similarity_panel(analysis, &base, query, selection.similarity)?,
        Panel {
            id: "predictability",
            title: format!(
                "(d) predictability cos(ẑ_{{t−1}}, z_t) — mean {mean_predictability:.3}"
            ),
            image: heatmap_panel(&base, grid, &unit_range(&predictability), None),
            colorbar: Some(("−1".into(), "1".into())),
            values: predictability,
        },
        plain("pca-z", "(e) PCA of z (shared basis)", flat(pca_z)),
        plain("pca-z-hat", "(e) PCA of ẑ (same basis)", flat(pca_z_hat)),
    ];
    Ok(Panels {
        grid,
        query_token: query,
        cls_attention: attention.cls,
        mean_predictability,
        panels,
    })
}

/// A panel with no colour bar and no per-patch readout.
fn plain(id: &'static str, title: &str, image: RgbImage) -> Panel {
    Panel {
        id,
        title: title.into(),
        image,
        colorbar: None,
        values: vec![],
    }
}

/// A cosine on a fixed scale, [−1, 1] → [0, 1].
fn unit_range(cosines: &[f32]) -> Vec<f32> {
    cosines.iter().map(|c| (c + 1.0) / 2.0).collect()
}

/// The similarity panel (docs/nepa.md §6.4): the colours follow `mode`; the readout is
/// always the raw cosine.
fn similarity_panel(
    analysis: &Analysis,
    base: &RgbImage,
    query: usize,
    mode: SimilarityMode,
) -> Result<Panel, NepaError> {
    let similarity = analysis.maps.similarity_map(query)?;
    let (shown, label, colorbar) = match mode {
        SimilarityMode::Softmax => (
            similarity_display(&similarity),
            "softmax, γ 10 (paper)",
            ("low", "high"),
        ),
        SimilarityMode::Raw => (unit_range(&similarity), "raw", ("−1", "1")),
    };
    Ok(Panel {
        id: "similarity",
        title: format!("(c) cos(ẑ_t, z_j) — {label}"),
        image: heatmap_panel(base, analysis.maps.grid(), &shown, Some(query)),
        colorbar: Some((colorbar.0.into(), colorbar.1.into())),
        values: similarity,
    })
}
