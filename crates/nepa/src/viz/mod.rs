//! Visualization (docs/nepa.md §6): one pipeline shared by the native CLI (which writes PNGs)
//! and the browser UI (which draws canvases), so that both show the same pixels.
//!
//! - [`analyse`] runs the model on one image and reads its outputs back asynchronously (sync
//!   reads panic on WebGPU in the browser; the CLI blocks on the future), giving an
//!   [`Analysis`]: the host-side [`PatchMaps`] and the de-normalised display image.
//! - [`render_panels`] turns an analysis and a selection (query patch, layer, head, similarity
//!   mode) into every picture both front ends show, as [`RgbImage`](crate::image::RgbImage)s
//!   at one upscale ([`display_scale`]), plus the per-patch values behind the hover readouts.
//! - [`first_query`] picks the query patch a first view opens on (docs/nepa.md §6.6).
//!
//! Below those two, everything is host-side and I/O-free: plain `&[f32]` slices in, plain
//! vectors, small structs and RGB images out.
//!
//! Conventions (docs/nepa.md §2.2): an image with a `rows × cols` patch grid has
//! `T = 1 + rows·cols` tokens; token 0 is CLS and patch `(r, c)` is token `1 + r·cols + c`
//! (row-major). Every per-patch map returned here has `rows·cols` values in the same
//! row-major patch order.
//!
//! The paper's recipe (docs/nepa.md §6, causal pretrained model, eval mode):
//! - attention: mean over a set of layers and over heads of the probabilities, row `t`,
//!   CLS column dropped → [`PatchMaps::attention_map`];
//! - similarity: `cos(ẑ[t], z[j])` for all patches `j` (future ones included), then softmax
//!   with temperature 1 and top-p off → [`PatchMaps::similarity_map`], [`similarity_softmax`];
//! - rendering: [`normalize_except_zero`], then [`gamma`] (0.25 attention, 10 similarity),
//!   [`jet`], alpha 0.55 flat rectangles over the image → [`heatmap_panel`].
//!
//! Clearly-labelled extensions (not in the paper): the per-patch predictability map
//! ([`PatchMaps::predictability_map`]), nearest-patch retrieval ([`PatchMaps::nearest_patches`])
//! and the shared-basis PCA of `z` and `ẑ` ([`pca_rgb_shared`]).
//!
//! Modules, each using only those listed before it (no cycles): `grid`, `color`, `pca`,
//! `maps`, `first_query`, `raster`, `analysis`, `panels`.

mod analysis;
mod color;
mod first_query;
mod grid;
mod maps;
mod panels;
mod pca;
mod raster;

pub use analysis::{Analysis, analyse};
pub use color::{
    ATTENTION_GAMMA, NORMALIZE_MIN, SIMILARITY_GAMMA, attention_display, colorize, gamma, jet,
    normalize_except_zero, similarity_display, similarity_softmax, softmax_top_p,
};
pub use first_query::first_query;
pub use grid::{Grid, HeadSel, LayerSel, MapDims};
pub use maps::{AttentionMap, NORM_EPS, PatchMaps, batch_item, cosine, top_k};
pub use panels::{
    PANEL_SIDE, Panel, Panels, Selection, SimilarityMode, display_scale, render_panels,
};
pub use pca::{PCA_PERCENTILES, Pca, pca_rgb_shared};
pub use raster::{
    NEXT_COLOR, OUTLINE_THICKNESS, OVERLAY_ALPHA, QUERY_COLOR, Rect, denormalize_chw,
    draw_rect_outline, fill_patches, heatmap_panel, outline_patch, outline_query, overlay,
    patch_rect, upsample_nearest, upscale_nearest,
};
