//! Visualization math (docs/nepa.md §6), shared by the native CLI (which writes PNGs) and the
//! browser UI (which draws canvases).
//!
//! Everything here is host-side and I/O-free: the functions take plain `&[f32]` slices that
//! the caller has already read back from the device, and return plain vectors and small
//! structs. Nothing here touches a `Tensor`, because the browser reads tensors back
//! asynchronously and must own that step; the same math then runs unchanged on both sides.
//!
//! Conventions (docs/nepa.md §2.2): an image with a `rows × cols` patch grid has
//! `T = 1 + rows·cols` tokens; token 0 is CLS and patch `(r, c)` is token `1 + r·cols + c`
//! (row-major). Every per-patch map returned here has `rows·cols` values in the same
//! row-major patch order.
//!
//! The paper's recipe (`run_visualization.py`, causal pretrained model, eval mode):
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

use crate::error::NepaError;
use crate::rng::SplitMix64;

/// Gamma applied to the normalised attention map (docs/nepa.md §6.5): < 1 lifts the long tail of
/// small weights so that long-range attention is visible.
pub const ATTENTION_GAMMA: f32 = 0.25;
/// Gamma applied to the normalised similarity softmax (docs/nepa.md §6.5): ≫ 1 keeps only the
/// patches the prediction is closest to.
pub const SIMILARITY_GAMMA: f32 = 10.0;
/// Lower end `m` of the [`normalize_except_zero`] range used by the display helpers.
pub const NORMALIZE_MIN: f32 = 0.0;
/// Opacity of the heat-map rectangles over the image (docs/nepa.md §6.5).
pub const OVERLAY_ALPHA: f32 = 0.55;
/// Outline of the query patch `t` (the paper's red box).
pub const QUERY_COLOR: [u8; 3] = [255, 0, 0];
/// Outline of the next patch `t + 1`, the one `ẑ[t]` predicts. Magenta does not occur in
/// the jet colormap, so it cannot be mistaken for a heat value.
pub const NEXT_COLOR: [u8; 3] = [255, 0, 255];
/// Outline width in pixels (the paper's 3-px box).
pub const OUTLINE_THICKNESS: usize = 3;
/// `F.normalize`'s epsilon: norms are clamped to at least this before dividing.
pub const NORM_EPS: f64 = 1e-12;

// ---------------------------------------------------------------------------------------
// Token grid
// ---------------------------------------------------------------------------------------

/// The patch grid of one image, and the token ↔ patch bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub rows: usize,
    pub cols: usize,
}

impl Grid {
    pub fn new(rows: usize, cols: usize) -> Self {
        Self { rows, cols }
    }

    /// Number of patches, `rows·cols` (the length of every per-patch map).
    pub fn patches(&self) -> usize {
        self.rows * self.cols
    }

    /// Number of tokens, `1 + rows·cols` (CLS first).
    pub fn tokens(&self) -> usize {
        1 + self.patches()
    }

    /// Token index of patch `(row, col)`: `1 + row·cols + col`.
    ///
    /// # Panics
    /// If the patch is outside the grid.
    pub fn token_of(&self, row: usize, col: usize) -> usize {
        assert!(
            row < self.rows && col < self.cols,
            "patch ({row}, {col}) is outside the {}×{} grid",
            self.rows,
            self.cols
        );
        1 + row * self.cols + col
    }

    /// Patch `(row, col)` of a token; `None` for CLS (token 0) and past the last token.
    pub fn patch_of(&self, token: usize) -> Option<(usize, usize)> {
        if token == 0 || token >= self.tokens() {
            return None;
        }
        let k = token - 1;
        Some((k / self.cols, k % self.cols))
    }

    /// The patch that token `t`'s output ẑ[t] predicts, i.e. token `t + 1`; `None` for the
    /// last token, which predicts nothing.
    pub fn next_patch(&self, token: usize) -> Option<(usize, usize)> {
        self.patch_of(token + 1)
    }
}

/// Which layers an attention map averages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerSel {
    /// One layer (0-based).
    Layer(usize),
    /// Mean over layers `start..end` (the script's default set is "0..15", the first 16).
    Range(usize, usize),
    /// Mean over all recorded layers (the UI's "mean of layers").
    All,
}

/// Which heads an attention map averages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadSel {
    /// One head (0-based).
    Head(usize),
    /// Mean over heads (the paper's choice).
    Mean,
}

/// Sizes of one image's model outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDims {
    pub grid: Grid,
    /// Hidden size D.
    pub dim: usize,
    /// Attention heads H.
    pub heads: usize,
}

/// One attention row split into its CLS weight and its patch map.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionMap {
    /// Weight on each patch (column 0, CLS, dropped), `rows·cols`, row-major. Under causal
    /// attention every patch after the query is exactly 0.
    pub patches: Vec<f32>,
    /// Weight on the CLS token (column 0), the UI's optional readout.
    pub cls: f32,
}

/// Selects image `index` of a batched output read back as one flat `[B, …]` slice.
pub fn batch_item(data: &[f32], batch_size: usize, index: usize) -> Result<&[f32], NepaError> {
    if batch_size == 0 || !data.len().is_multiple_of(batch_size) {
        return Err(NepaError::Input(format!(
            "{} values do not split into a batch of {batch_size}",
            data.len()
        )));
    }
    if index >= batch_size {
        return Err(NepaError::Input(format!(
            "batch index {index} is out of range for a batch of {batch_size}"
        )));
    }
    let n = data.len() / batch_size;
    Ok(&data[index * n..(index + 1) * n])
}

// ---------------------------------------------------------------------------------------
// Per-image maps
// ---------------------------------------------------------------------------------------

/// One image's model outputs, on the host: z `[T·D]`, ẑ `[T·D]` and each layer's attention
/// probabilities `[H·T·T]` (possibly none, if the forward pass did not keep them).
#[derive(Clone, Debug)]
pub struct PatchMaps {
    dims: MapDims,
    z: Vec<f32>,
    z_hat: Vec<f32>,
    attentions: Vec<Vec<f32>>,
}

impl PatchMaps {
    /// Builds the maps from one image's flat outputs (batch index already selected):
    /// `input_embedding` z `[T·D]`, `last_hidden_state` ẑ `[T·D]` and per-layer attention
    /// probabilities `[H·T·T]`. Lengths are checked against `dims`.
    pub fn from_output_data<A: AsRef<[f32]>>(
        dims: MapDims,
        z: &[f32],
        z_hat: &[f32],
        attentions: &[A],
    ) -> Result<Self, NepaError> {
        let t = dims.grid.tokens();
        if dims.grid.patches() == 0 || dims.dim == 0 || dims.heads == 0 {
            return Err(NepaError::Input(format!("empty map dims {dims:?}")));
        }
        let check = |what: &str, len: usize, expected: usize| {
            if len == expected {
                Ok(())
            } else {
                Err(NepaError::Input(format!(
                    "{what} has {len} values, expected {expected} for {dims:?}"
                )))
            }
        };
        check("input embedding z", z.len(), t * dims.dim)?;
        check("last hidden state ẑ", z_hat.len(), t * dims.dim)?;
        for (l, a) in attentions.iter().enumerate() {
            check(
                &format!("attention of layer {l}"),
                a.as_ref().len(),
                dims.heads * t * t,
            )?;
        }
        Ok(Self {
            dims,
            z: z.to_vec(),
            z_hat: z_hat.to_vec(),
            attentions: attentions.iter().map(|a| a.as_ref().to_vec()).collect(),
        })
    }

    /// As [`PatchMaps::from_output_data`], from whole-batch outputs `[B·T·D]` and
    /// `[B·H·T·T]`, taking image `index`.
    pub fn from_batch_data<A: AsRef<[f32]>>(
        dims: MapDims,
        batch_size: usize,
        index: usize,
        z: &[f32],
        z_hat: &[f32],
        attentions: &[A],
    ) -> Result<Self, NepaError> {
        let attentions = attentions
            .iter()
            .map(|a| batch_item(a.as_ref(), batch_size, index))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_output_data(
            dims,
            batch_item(z, batch_size, index)?,
            batch_item(z_hat, batch_size, index)?,
            &attentions,
        )
    }

    pub fn dims(&self) -> MapDims {
        self.dims
    }

    pub fn grid(&self) -> Grid {
        self.dims.grid
    }

    /// Number of layers whose attention was recorded.
    pub fn layers(&self) -> usize {
        self.attentions.len()
    }

    /// Row `token` of z (the input embedding, the prediction target).
    pub fn z_token(&self, token: usize) -> &[f32] {
        &self.z[token * self.dims.dim..(token + 1) * self.dims.dim]
    }

    /// Row `token` of ẑ (the prediction of token `token + 1`).
    pub fn z_hat_token(&self, token: usize) -> &[f32] {
        &self.z_hat[token * self.dims.dim..(token + 1) * self.dims.dim]
    }

    /// z of the patch tokens only, `[rows·cols·D]` (CLS dropped).
    pub fn z_patches(&self) -> &[f32] {
        &self.z[self.dims.dim..]
    }

    /// ẑ of the patch tokens only, `[rows·cols·D]` (CLS dropped).
    pub fn z_hat_patches(&self) -> &[f32] {
        &self.z_hat[self.dims.dim..]
    }

    fn check_token(&self, token: usize) -> Result<(), NepaError> {
        if token < self.dims.grid.tokens() {
            Ok(())
        } else {
            Err(NepaError::Input(format!(
                "query token {token} is out of range (the image has {} tokens)",
                self.dims.grid.tokens()
            )))
        }
    }

    /// The attention row of query token `query_token`, averaged over the chosen layers and
    /// heads (docs/nepa.md §6.3), split into the CLS weight and the `rows·cols` patch map.
    ///
    /// The average is taken over probabilities, so a weight that is exactly 0 in every
    /// selected layer/head (the causal mask: every patch after the query) stays exactly 0.
    pub fn attention_map(
        &self,
        query_token: usize,
        layers: LayerSel,
        heads: HeadSel,
    ) -> Result<AttentionMap, NepaError> {
        self.check_token(query_token)?;
        let n_layers = self.attentions.len();
        if n_layers == 0 {
            return Err(NepaError::Input(
                "no attention probabilities were recorded (run the forward pass with attentions)"
                    .into(),
            ));
        }
        let layer_range = match layers {
            LayerSel::Layer(l) => l..l + 1,
            LayerSel::Range(start, end) => start..end.min(n_layers),
            LayerSel::All => 0..n_layers,
        };
        if layer_range.is_empty() || layer_range.end > n_layers {
            return Err(NepaError::Input(format!(
                "layer selection {layers:?} is empty or out of range ({n_layers} layers)"
            )));
        }
        let h = self.dims.heads;
        let head_range = match heads {
            HeadSel::Head(i) if i < h => i..i + 1,
            HeadSel::Head(i) => {
                return Err(NepaError::Input(format!(
                    "head {i} is out of range ({h} heads)"
                )));
            }
            HeadSel::Mean => 0..h,
        };
        let t = self.dims.grid.tokens();
        // f64 accumulation: up to 24 layers × 16 heads of probabilities.
        let mut sum = vec![0.0f64; t];
        let mut count = 0usize;
        for layer in &self.attentions[layer_range] {
            for head in head_range.clone() {
                let row = &layer[(head * t + query_token) * t..(head * t + query_token + 1) * t];
                for (s, &p) in sum.iter_mut().zip(row) {
                    *s += f64::from(p);
                }
                count += 1;
            }
        }
        let scale = 1.0 / count as f64;
        Ok(AttentionMap {
            cls: (sum[0] * scale) as f32,
            patches: sum[1..].iter().map(|&s| (s * scale) as f32).collect(),
        })
    }

    /// Raw cosine similarity between the prediction ẑ[t] and the input embedding z[j] of every
    /// patch j (tokens 1..T, future patches included), `rows·cols` values in [−1, 1]
    /// (docs/nepa.md §6.4: `l2norm(z[1:]) · l2norm(ẑ[t])`).
    pub fn similarity_map(&self, query_token: usize) -> Result<Vec<f32>, NepaError> {
        self.check_token(query_token)?;
        let h = self.z_hat_token(query_token);
        Ok((1..self.dims.grid.tokens())
            .map(|j| cosine(h, self.z_token(j)))
            .collect())
    }

    /// Per-patch predictability (extension, not in the paper): for patch token `k`
    /// (1..T), `cos(ẑ[k−1], z[k])` — how well the previous position predicted this patch.
    /// Patch 0's value therefore comes from the CLS position. The map is the negation of the
    /// per-position loss [`crate::loss::prediction_loss_map`] (shift on), in the same order,
    /// so its mean is −loss. Values in [−1, 1]; higher = more predictable.
    pub fn predictability_map(&self) -> Vec<f32> {
        (1..self.dims.grid.tokens())
            .map(|k| cosine(self.z_hat_token(k - 1), self.z_token(k)))
            .collect()
    }

    /// Nearest-patch retrieval of ẑ[t] (extension): the `k` patch indices (row-major, 0-based)
    /// with the highest raw cosine to ẑ[t], best first.
    pub fn nearest_patches(&self, query_token: usize, k: usize) -> Result<Vec<usize>, NepaError> {
        Ok(top_k(&self.similarity_map(query_token)?, k))
    }

    /// Shared-basis PCA colours of the patch tokens of z and ẑ (extension; see
    /// [`pca_rgb_shared`]): one colour per patch for each, comparable between the two.
    pub fn embedding_pca_rgb(&self) -> (Vec<[u8; 3]>, Vec<[u8; 3]>) {
        pca_rgb_shared(
            self.z_patches(),
            self.z_hat_patches(),
            self.dims.grid.patches(),
            self.dims.dim,
        )
    }
}

/// Cosine similarity of two vectors with `F.normalize` semantics: each norm is clamped to at
/// least [`NORM_EPS`], so a zero vector gives 0 rather than NaN. Accumulated in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    (dot / (na.sqrt().max(NORM_EPS) * nb.sqrt().max(NORM_EPS))) as f32
}

/// Indices of the `k` largest values, largest first (ties: lower index first; NaN last).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| {
        let (a, b) = (values[i], values[j]);
        match (a.is_nan(), b.is_nan()) {
            (true, true) => i.cmp(&j),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => b.total_cmp(&a).then(i.cmp(&j)),
        }
    });
    order.truncate(k);
    order
}

// ---------------------------------------------------------------------------------------
// Similarity softmax and display normalisation
// ---------------------------------------------------------------------------------------

/// `softmax(values / temperature)`, then top-p (nucleus) filtering and renormalisation, as
/// the visualization script: sort descending, drop every value whose preceding cumulative
/// mass already exceeds `top_p` (the largest always stays), renormalise. The result is in
/// the input's order. `top_p >= 1` is "off" (no filtering): it must not depend on a
/// cumulative sum that rounds to slightly above 1.
pub fn softmax_top_p(values: &[f32], temperature: f32, top_p: f32) -> Vec<f32> {
    if values.is_empty() {
        return Vec::new();
    }
    let temperature = f64::from(temperature);
    let max = values
        .iter()
        .map(|&v| f64::from(v) / temperature)
        .fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = values
        .iter()
        .map(|&v| (f64::from(v) / temperature - max).exp())
        .collect();
    let total: f64 = exp.iter().sum();
    let mut probs: Vec<f64> = exp.iter().map(|e| e / total).collect();
    if top_p < 1.0 {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]).then(i.cmp(&j)));
        let mut cumulative = 0.0;
        for &i in &order {
            let before = cumulative;
            cumulative += probs[i];
            if before > f64::from(top_p) {
                probs[i] = 0.0;
            }
        }
        let kept: f64 = probs.iter().sum();
        for p in &mut probs {
            *p /= kept;
        }
    }
    probs.into_iter().map(|p| p as f32).collect()
}

/// The paper's similarity distribution: softmax of the raw cosines with temperature 1 and
/// top-p off (docs/nepa.md §6.4).
pub fn similarity_softmax(raw: &[f32]) -> Vec<f32> {
    softmax_top_p(raw, 1.0, 1.0)
}

/// Display normalisation (docs/nepa.md §6.5): values that are exactly 0 stay 0 (so the causal mask
/// remains visible); the other values are min–max rescaled to `[m, 1]` using the min and max
/// of the non-zero values only. If all non-zero values are equal they map to 1. Non-finite
/// values are treated like zeros.
pub fn normalize_except_zero(values: &[f32], m: f32) -> Vec<f32> {
    let keep = |v: f32| v != 0.0 && v.is_finite();
    let (lo, hi) = values
        .iter()
        .copied()
        .filter(|&v| keep(v))
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    values
        .iter()
        .map(|&v| {
            if !keep(v) {
                0.0
            } else if hi > lo {
                m + (1.0 - m) * (v - lo) / (hi - lo)
            } else {
                1.0
            }
        })
        .collect()
}

/// `value^g` elementwise. Meant for values already in [0, 1]; negatives are clamped to 0
/// first so that a non-integer exponent cannot produce NaN.
pub fn gamma(values: &[f32], g: f32) -> Vec<f32> {
    values.iter().map(|&v| v.max(0.0).powf(g)).collect()
}

/// The paper's attention rendering values: `gamma(normalize_except_zero(map, 0), 0.25)`.
pub fn attention_display(patches: &[f32]) -> Vec<f32> {
    gamma(
        &normalize_except_zero(patches, NORMALIZE_MIN),
        ATTENTION_GAMMA,
    )
}

/// The paper's similarity rendering values:
/// `gamma(normalize_except_zero(softmax(raw), 0), 10)`.
pub fn similarity_display(raw: &[f32]) -> Vec<f32> {
    gamma(
        &normalize_except_zero(&similarity_softmax(raw), NORMALIZE_MIN),
        SIMILARITY_GAMMA,
    )
}

// ---------------------------------------------------------------------------------------
// Colormap
// ---------------------------------------------------------------------------------------

/// Piecewise-linear interpolation through `(x, y)` knots sorted by x, covering [0, 1].
fn interp(x: f32, knots: &[(f32, f32)]) -> f32 {
    for pair in knots.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if x <= x1 {
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
        }
    }
    knots[knots.len() - 1].1
}

/// Matplotlib's `jet` colormap, evaluated from its segment data (continuous, not the
/// 256-entry LUT, so it can differ from `cm.jet(v, bytes=True)` by about one level). `v`
/// is clamped to [0, 1]; NaN maps like 0. jet(0) = (0, 0, 128) dark blue, jet(1) =
/// (128, 0, 0) dark red.
pub fn jet(v: f32) -> [u8; 3] {
    const RED: [(f32, f32); 5] = [
        (0.0, 0.0),
        (0.35, 0.0),
        (0.66, 1.0),
        (0.89, 1.0),
        (1.0, 0.5),
    ];
    const GREEN: [(f32, f32); 6] = [
        (0.0, 0.0),
        (0.125, 0.0),
        (0.375, 1.0),
        (0.64, 1.0),
        (0.91, 0.0),
        (1.0, 0.0),
    ];
    const BLUE: [(f32, f32); 5] = [
        (0.0, 0.5),
        (0.11, 1.0),
        (0.34, 1.0),
        (0.65, 0.0),
        (1.0, 0.0),
    ];
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let byte = |c: f32| (c * 255.0).round().clamp(0.0, 255.0) as u8;
    [
        byte(interp(v, &RED)),
        byte(interp(v, &GREEN)),
        byte(interp(v, &BLUE)),
    ]
}

/// Jet colours of `values` rescaled from `[vmin, vmax]` to [0, 1] (clamped). A degenerate
/// range (`vmax <= vmin`) maps everything to the middle colour.
pub fn colorize(values: &[f32], vmin: f32, vmax: f32) -> Vec<[u8; 3]> {
    values
        .iter()
        .map(|&v| {
            if vmax > vmin {
                jet((v - vmin) / (vmax - vmin))
            } else {
                jet(0.5)
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// PCA → RGB
// ---------------------------------------------------------------------------------------

/// Power-iteration cap per component; each iteration costs two passes over the data,
/// O(N·D), so a 512×1024 fit stays well under a second even in wasm.
const PCA_MAX_ITERS: usize = 100;
/// Stop a component once its direction moves less than this between iterations.
const PCA_TOL: f64 = 1e-10;

/// Principal components of N row vectors of dimension D.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca {
    /// Mean of the fitted rows, `[D]`.
    pub mean: Vec<f32>,
    /// Unit-length components, each `[D]`, by decreasing variance. A component whose
    /// residual variance is zero (rank-deficient data, D < k) is the zero vector.
    pub components: Vec<Vec<f32>>,
    /// Variance (population, divided by N) along each component.
    pub variances: Vec<f32>,
}

impl Pca {
    /// Fits the top `k` components of `data` (`[n·dim]`, row-major) by power iteration on
    /// the covariance with deflation.
    ///
    /// The D×D covariance is never formed: each step computes `Xᵀ(X v)/N` with two
    /// matrix–vector products, O(N·D), and re-orthogonalises against the components already
    /// found (deflation). The start vector is a fixed pseudo-random one (seeded per
    /// component), so results are deterministic, and each component's sign is fixed so that
    /// its largest-magnitude loading is positive.
    ///
    /// # Panics
    /// If `data.len() != n·dim`.
    pub fn fit(data: &[f32], n: usize, dim: usize, k: usize) -> Self {
        assert_eq!(data.len(), n * dim, "PCA data is not [n·dim]");
        let mut mean = vec![0.0f64; dim];
        for row in data.chunks_exact(dim.max(1)) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        let inv_n = 1.0 / n.max(1) as f64;
        for m in &mut mean {
            *m *= inv_n;
        }
        // Centred copy in f64: accuracy matters more than memory at these sizes (≤ 4 MB).
        let x: Vec<f64> = data
            .chunks_exact(dim.max(1))
            .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| f64::from(v) - m))
            .collect();

        let cov_times = |v: &[f64]| -> Vec<f64> {
            let mut out = vec![0.0f64; dim];
            for row in x.chunks_exact(dim.max(1)) {
                let s: f64 = row.iter().zip(v).map(|(a, b)| a * b).sum();
                for (o, a) in out.iter_mut().zip(row) {
                    *o += s * a;
                }
            }
            for o in &mut out {
                *o *= inv_n;
            }
            out
        };
        let orthogonalize = |v: &mut [f64], basis: &[Vec<f64>]| {
            for b in basis {
                let d: f64 = v.iter().zip(b).map(|(a, c)| a * c).sum();
                for (a, c) in v.iter_mut().zip(b) {
                    *a -= d * c;
                }
            }
        };
        let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();

        let k = k.min(dim);
        let mut components: Vec<Vec<f64>> = Vec::with_capacity(k);
        let mut variances = Vec::with_capacity(k);
        for c in 0..k {
            let mut rng = SplitMix64::new(0x9CA0_5EED ^ c as u64);
            let mut v: Vec<f64> = (0..dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
            orthogonalize(&mut v, &components);
            let mut found = false;
            let n0 = norm(&v);
            if n0 > 0.0 {
                v.iter_mut().for_each(|a| *a /= n0);
                for _ in 0..PCA_MAX_ITERS {
                    let mut w = cov_times(&v);
                    // Deflation: remove the directions already explained. Repeating it every
                    // step also keeps rounding from reintroducing them.
                    orthogonalize(&mut w, &components);
                    let nw = norm(&w);
                    if nw <= f64::EPSILON * 1e-3 {
                        break;
                    }
                    w.iter_mut().for_each(|a| *a /= nw);
                    let delta = norm(&w.iter().zip(&v).map(|(a, b)| a - b).collect::<Vec<f64>>());
                    v = w;
                    found = true;
                    if delta < PCA_TOL {
                        break;
                    }
                }
            }
            if !found {
                v = vec![0.0; dim];
            } else {
                // Deterministic sign: largest-magnitude loading positive (first on ties).
                let (mut best, mut best_abs) = (0usize, -1.0f64);
                for (i, a) in v.iter().enumerate() {
                    if a.abs() > best_abs {
                        best = i;
                        best_abs = a.abs();
                    }
                }
                if v[best] < 0.0 {
                    v.iter_mut().for_each(|a| *a = -*a);
                }
            }
            let cv = cov_times(&v);
            variances.push(cv.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>() as f32);
            components.push(v);
        }
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            components: components
                .into_iter()
                .map(|c| c.into_iter().map(|a| a as f32).collect())
                .collect(),
            variances,
        }
    }

    /// Scores of each row of `data` (`[n·D]`) on each component, `[n·k]` row-major.
    pub fn project(&self, data: &[f32]) -> Vec<f32> {
        let dim = self.mean.len();
        data.chunks_exact(dim.max(1))
            .flat_map(|row| {
                self.components.iter().map(move |c| {
                    row.iter()
                        .zip(&self.mean)
                        .zip(c)
                        .map(|((&x, &m), &w)| (f64::from(x) - f64::from(m)) * f64::from(w))
                        .sum::<f64>() as f32
                })
            })
            .collect()
    }
}

/// Linear-interpolated percentile (numpy's default) of already sorted values, `q` in [0, 100].
fn percentile_sorted(sorted: &[f32], q: f32) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = (q / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f32;
    let i = pos.floor() as usize;
    let j = (i + 1).min(sorted.len() - 1);
    sorted[i] + (sorted[j] - sorted[i]) * (pos - i as f32)
}

/// Lower and upper percentiles that set the colour range of each PCA channel: robust to the
/// few high-norm outlier tokens ViTs are known to produce.
pub const PCA_PERCENTILES: (f32, f32) = (1.0, 99.0);

/// Shared-basis PCA → RGB for two token sets of the same image (e.g. the patch tokens of z
/// and of ẑ, each `[n_tokens·dim]`).
///
/// The top-3 principal components are fitted on the union of both sets, both are projected
/// in that one basis, and component `c` becomes colour channel `c` (R, G, B) with a min–max
/// shared by both sets, taken at the 1st and 99th percentiles of the union's scores and
/// clamped. Identical tokens therefore get identical colours in the two images, and colour
/// differences between them are real differences in the shared basis. A channel whose scores
/// are constant is mid-grey (128).
pub fn pca_rgb_shared(
    a: &[f32],
    b: &[f32],
    n_tokens: usize,
    dim: usize,
) -> (Vec<[u8; 3]>, Vec<[u8; 3]>) {
    assert_eq!(a.len(), n_tokens * dim, "first token set is not [n·dim]");
    assert_eq!(b.len(), n_tokens * dim, "second token set is not [n·dim]");
    let union: Vec<f32> = a.iter().chain(b).copied().collect();
    let pca = Pca::fit(&union, 2 * n_tokens, dim, 3);
    let k = pca.components.len();
    let scores = pca.project(&union);
    let mut ranges = [(0.0f32, 0.0f32); 3];
    for (c, range) in ranges.iter_mut().enumerate().take(k) {
        let mut col: Vec<f32> = scores.iter().skip(c).step_by(k).copied().collect();
        col.sort_by(f32::total_cmp);
        *range = (
            percentile_sorted(&col, PCA_PERCENTILES.0),
            percentile_sorted(&col, PCA_PERCENTILES.1),
        );
    }
    let colour = |token: usize| -> [u8; 3] {
        let mut rgb = [128u8; 3];
        for (c, channel) in rgb.iter_mut().enumerate().take(k) {
            let (lo, hi) = ranges[c];
            if hi > lo {
                let s = (scores[token * k + c] - lo) / (hi - lo);
                *channel = (s.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        rgb
    };
    (
        (0..n_tokens).map(colour).collect(),
        (n_tokens..2 * n_tokens).map(colour).collect(),
    )
}

// ---------------------------------------------------------------------------------------
// Raster helpers (RGB, row-major, 3 bytes per pixel)
// ---------------------------------------------------------------------------------------

/// An RGB image: `data` is row-major, 3 bytes per pixel, `width·height·3` bytes. The CLI
/// encodes it as PNG; the browser adds alpha ([`RgbBuffer::to_rgba`]) for `ImageData`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbBuffer {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbBuffer {
    /// A black image.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }

    /// Wraps existing RGB bytes, checking the length.
    pub fn from_data(width: usize, height: usize, data: Vec<u8>) -> Result<Self, NepaError> {
        if data.len() != width * height * 3 {
            return Err(NepaError::Input(format!(
                "{} bytes are not a {width}×{height} RGB image",
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    pub fn set_pixel(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        let i = (y * self.width + x) * 3;
        self.data[i..i + 3].copy_from_slice(&rgb);
    }

    /// RGBA bytes with opaque alpha (canvas `ImageData` layout).
    pub fn to_rgba(&self) -> Vec<u8> {
        self.data
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect()
    }
}

/// A half-open pixel rectangle `[x0, x1) × [y0, y1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

/// Pixel bounds of patch `(row, col)` in a `width × height` image covered by `grid`.
/// Exact cells when the size is a multiple of the grid (224 = 16·14); otherwise the cells
/// differ by at most one pixel and still tile the image.
pub fn patch_rect(grid: Grid, width: usize, height: usize, row: usize, col: usize) -> Rect {
    Rect {
        x0: col * width / grid.cols,
        x1: (col + 1) * width / grid.cols,
        y0: row * height / grid.rows,
        y1: (row + 1) * height / grid.rows,
    }
}

/// The patch index (row-major) under pixel `(x, y)`, consistent with [`patch_rect`].
fn patch_at(grid: Grid, width: usize, height: usize, x: usize, y: usize) -> usize {
    // Largest col with col·width/cols ≤ x, i.e. floor(((x+1)·cols − 1)/width).
    let col = ((x + 1) * grid.cols - 1) / width;
    let row = ((y + 1) * grid.rows - 1) / height;
    row * grid.cols + col
}

/// One flat rectangle of `cell × cell` pixels per patch: an image of
/// `(cols·cell) × (rows·cell)` pixels (width × height).
pub fn upsample_nearest(colors: &[[u8; 3]], grid: Grid, cell: usize) -> RgbBuffer {
    assert_eq!(colors.len(), grid.patches(), "one colour per patch");
    let (width, height) = (grid.cols * cell, grid.rows * cell);
    let mut out = RgbBuffer::new(width, height);
    for y in 0..height {
        for x in 0..width {
            out.set_pixel(x, y, colors[(y / cell) * grid.cols + x / cell]);
        }
    }
    out
}

/// Alpha-blends one flat colour per patch over `base`:
/// `out = (1 − alpha)·base + alpha·colour`, rounded. The paper uses alpha 0.55
/// ([`OVERLAY_ALPHA`]) over every patch, zeros included (they show as jet's dark blue).
pub fn overlay(base: &RgbBuffer, grid: Grid, colors: &[[u8; 3]], alpha: f32) -> RgbBuffer {
    assert_eq!(colors.len(), grid.patches(), "one colour per patch");
    let alpha = alpha.clamp(0.0, 1.0);
    let mut out = base.clone();
    for y in 0..base.height {
        for x in 0..base.width {
            let top = colors[patch_at(grid, base.width, base.height, x, y)];
            let under = base.pixel(x, y);
            let mut px = [0u8; 3];
            for c in 0..3 {
                let v = (1.0 - alpha) * f32::from(under[c]) + alpha * f32::from(top[c]);
                px[c] = v.round().clamp(0.0, 255.0) as u8;
            }
            out.set_pixel(x, y, px);
        }
    }
    out
}

/// Draws the outline of `rect` (clipped to the image), `thickness` pixels wide, inside it.
pub fn draw_rect_outline(image: &mut RgbBuffer, rect: Rect, color: [u8; 3], thickness: usize) {
    let x1 = rect.x1.min(image.width);
    let y1 = rect.y1.min(image.height);
    for y in rect.y0..y1 {
        for x in rect.x0..x1 {
            let edge = x < rect.x0 + thickness
                || x + thickness >= x1
                || y < rect.y0 + thickness
                || y + thickness >= y1;
            if edge {
                image.set_pixel(x, y, color);
            }
        }
    }
}

/// Outlines patch `(row, col)` of `grid` in `image`.
pub fn outline_patch(
    image: &mut RgbBuffer,
    grid: Grid,
    (row, col): (usize, usize),
    color: [u8; 3],
    thickness: usize,
) {
    let rect = patch_rect(grid, image.width, image.height, row, col);
    draw_rect_outline(image, rect, color, thickness);
}

/// A complete panel as in the paper: `values` (display values in [0, 1], e.g. from
/// [`attention_display`]) coloured with jet, blended at alpha 0.55 over `base`, then — if a
/// query token is given — the query patch outlined in red and the next patch (t + 1, the
/// one ẑ[t] predicts) in magenta. A CLS query (token 0) has no box of its own.
pub fn heatmap_panel(
    base: &RgbBuffer,
    grid: Grid,
    values: &[f32],
    query_token: Option<usize>,
) -> RgbBuffer {
    let mut out = overlay(base, grid, &colorize(values, 0.0, 1.0), OVERLAY_ALPHA);
    if let Some(t) = query_token {
        // The next patch first, so that the query box is on top where they touch.
        if let Some(next) = grid.next_patch(t) {
            outline_patch(&mut out, grid, next, NEXT_COLOR, OUTLINE_THICKNESS);
        }
        if let Some(query) = grid.patch_of(t) {
            outline_patch(&mut out, grid, query, QUERY_COLOR, OUTLINE_THICKNESS);
        }
    }
    out
}

/// The display image from normalised CHW pixels (`[3·height·width]`, as fed to the model):
/// `x·std + mean` per channel, then ×255, rounded and clamped. NEPA's preprocessing
/// (docs/nepa.md §7.2) uses mean = std = 0.5 for all channels.
pub fn denormalize_chw(
    pixels: &[f32],
    height: usize,
    width: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<RgbBuffer, NepaError> {
    if pixels.len() != 3 * height * width {
        return Err(NepaError::Input(format!(
            "{} values are not a 3×{height}×{width} image",
            pixels.len()
        )));
    }
    let plane = height * width;
    let mut out = RgbBuffer::new(width, height);
    for i in 0..plane {
        for c in 0..3 {
            let v = (pixels[c * plane + i] * std[c] + mean[c]) * 255.0;
            out.data[i * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        let sorted = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_sorted(&sorted, 0.0), 0.0);
        assert_eq!(percentile_sorted(&sorted, 100.0), 4.0);
        assert_eq!(percentile_sorted(&sorted, 50.0), 2.0);
        assert!((percentile_sorted(&sorted, 10.0) - 0.4).abs() < 1e-6);
    }

    #[test]
    fn patch_at_inverts_patch_rect() {
        for (w, h, grid) in [
            (224, 224, Grid::new(16, 16)),
            (13, 10, Grid::new(3, 4)),
            (7, 5, Grid::new(5, 7)),
        ] {
            for row in 0..grid.rows {
                for col in 0..grid.cols {
                    let r = patch_rect(grid, w, h, row, col);
                    for y in r.y0..r.y1 {
                        for x in r.x0..r.x1 {
                            assert_eq!(patch_at(grid, w, h, x, y), row * grid.cols + col);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probs ∝ e^v: the largest alone has > 0.5 of the mass.
        let p = softmax_top_p(&[0.0, 3.0, 1.0], 1.0, 0.5);
        assert_eq!(p, vec![0.0, 1.0, 0.0]);
        // top_p = 1 is off even though the cumulative sum may round above 1.
        let p = softmax_top_p(&[0.0, 3.0, 1.0], 1.0, 1.0);
        assert!(p.iter().all(|&x| x > 0.0));
    }

    #[test]
    fn outline_is_inside_the_rect() {
        let mut img = RgbBuffer::new(12, 12);
        draw_rect_outline(
            &mut img,
            Rect {
                x0: 2,
                y0: 2,
                x1: 10,
                y1: 10,
            },
            [255, 0, 0],
            3,
        );
        assert_eq!(img.pixel(2, 2), [255, 0, 0]);
        assert_eq!(img.pixel(4, 6), [255, 0, 0]);
        assert_eq!(img.pixel(9, 9), [255, 0, 0]);
        assert_eq!(img.pixel(5, 5), [0, 0, 0]); // interior
        assert_eq!(img.pixel(6, 6), [0, 0, 0]);
        assert_eq!(img.pixel(1, 1), [0, 0, 0]); // outside
        assert_eq!(img.pixel(10, 5), [0, 0, 0]);
    }
}
