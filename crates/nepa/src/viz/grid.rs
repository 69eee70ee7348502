//! The patch grid of one image (docs/nepa.md §2.2) and the layer/head selections of the
//! attention maps.

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
