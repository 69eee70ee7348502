//! One image's model outputs on the host and the per-patch maps built from them
//! (docs/nepa.md §6.3, §6.4).

use super::grid::{Grid, HeadSel, LayerSel, MapDims};
use super::pca::pca_rgb_shared;
use crate::error::NepaError;

/// `F.normalize`'s epsilon: norms are clamped to at least this before dividing.
pub const NORM_EPS: f64 = 1e-12;

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
