//! 2D RoPE over a contiguous f32 buffer `[…, tokens, head_dim]`, forward and backward, in place:
//! the first token of every sequence (CLS) is left as it is and token t ≥ 1 is rotated by row
//! t − 1 of the cos/sin tables (docs/nepa.md §2, docs/performance.md §8). Sequences are split
//! over rayon's threads natively.

/// Sequences per task.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
const SEQUENCES: usize = 4;

/// The rotation's tables and layout.
#[derive(Clone, Copy)]
pub struct Rotation<'a> {
    /// `[tokens − 1, head_dim]` each.
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    pub tokens: usize,
    pub head_dim: usize,
}

impl Rotation<'_> {
    /// Runs `f(row, cos, sin)` on every rotated token row of `xs`, one half of the row
    /// against the other.
    fn for_rows(self, xs: &mut [f32], f: impl Fn(&mut [f32], &mut [f32], &[f32], &[f32]) + Sync) {
        let (hd, half) = (self.head_dim, self.head_dim / 2);
        let sequence = |seq: &mut [f32]| {
            for (t, row) in seq.chunks_exact_mut(hd).enumerate().skip(1) {
                let table = (t - 1) * hd..t * hd;
                let (first, second) = row.split_at_mut(half);
                f(first, second, &self.cos[table.clone()], &self.sin[table]);
            }
        };
        let len = self.tokens * hd;
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            xs.par_chunks_mut(SEQUENCES * len)
                .for_each(|task| task.chunks_exact_mut(len).for_each(sequence));
        }
        #[cfg(target_arch = "wasm32")]
        xs.chunks_exact_mut(len).for_each(sequence);
    }

    /// u ← u·cos + rot(u)·sin with rot(u) = [−u₂, u₁] (u₁, u₂ the two halves).
    pub fn forward_in_place(self, us: &mut [f32]) {
        self.for_rows(us, |u1, u2, cos, sin| {
            let half = u1.len();
            for j in 0..half {
                let (a, b) = (u1[j], u2[j]);
                u1[j] = a * cos[j] - b * sin[j];
                u2[j] = b * cos[half + j] + a * sin[half + j];
            }
        });
    }

    /// g ← ∂L/∂u from the output's gradient g, in place (the transpose of the rotation).
    pub fn backward_in_place(self, gs: &mut [f32]) {
        self.for_rows(gs, |g1, g2, cos, sin| {
            let half = g1.len();
            for j in 0..half {
                let (a, b) = (g1[j], g2[j]);
                g1[j] = a * cos[j] + b * sin[half + j];
                g2[j] = b * cos[half + j] - a * sin[j];
            }
        });
    }
}
