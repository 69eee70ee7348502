//! Softmax over the last dimension of attention logits `[…, queries, keys]`, forward and
//! backward, with the causal mask applied inside: a key after its query gets probability 0
//! with no mask tensor and no pass writing −∞ (docs/performance.md §8). Rows are split over
//! rayon's threads natively.

use super::simd::{exp, lane_dot, lane_max, lane_sum, vectorised};

/// Rows per task.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
const ROWS: usize = 64;

/// The shape of the logits as the kernels see it.
#[derive(Clone, Copy, Debug)]
pub struct Rows {
    pub queries: usize,
    pub keys: usize,
    /// Query i sees keys 0..=i only (queries == keys).
    pub causal: bool,
}

impl Rows {
    /// How many keys row `row` (counted over the whole tensor) sees.
    #[inline]
    fn visible(self, row: usize) -> usize {
        if self.causal {
            row % self.queries + 1
        } else {
            self.keys
        }
    }
}

vectorised!(softmax_row(xs: &mut [f32]) {
    let max = lane_max(xs);
    for x in xs.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / lane_sum(xs, |p| p);
    xs.iter_mut().for_each(|p| *p *= inv);
});

vectorised!(softmax_grad_row(y: &[f32], dy: &mut [f32]) {
    let dot = lane_dot(y, dy);
    for (d, &y) in dy.iter_mut().zip(y) {
        *d = y * (*d - dot);
    }
});

/// Runs `f(row index, row)` over every row of `xs`, rows of `keys` values, in tasks of
/// [`ROWS`] rows on rayon natively.
fn for_rows(xs: &mut [f32], keys: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let task = |(t, chunk): (usize, &mut [f32])| {
        for (r, row) in chunk.chunks_exact_mut(keys).enumerate() {
            f(t * ROWS + r, row);
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        xs.par_chunks_mut(ROWS * keys).enumerate().for_each(task);
    }
    #[cfg(target_arch = "wasm32")]
    xs.chunks_mut(ROWS * keys).enumerate().for_each(task);
}

/// xs ← softmax(xs) row by row, masked keys set to 0.
pub fn forward_in_place(xs: &mut [f32], shape: Rows) {
    for_rows(xs, shape.keys, |r, row| {
        let (live, masked) = row.split_at_mut(shape.visible(r));
        softmax_row(live);
        masked.fill(0.0);
    });
}

/// dys ← ∂L/∂x from the output `ys` and its gradient `dys`, in place:
/// dx = y ⊙ (dy − Σ y·dy). A masked key has y = 0, so its gradient is 0.
pub fn backward_in_place(ys: &[f32], dys: &mut [f32], shape: Rows) {
    assert_eq!(ys.len(), dys.len(), "softmax backward: sizes differ");
    let keys = shape.keys;
    for_rows(dys, keys, |r, dy| {
        softmax_grad_row(&ys[r * keys..(r + 1) * keys], dy);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The softmax of a causal row in f64, the reference.
    fn reference(row: &[f32], visible: usize) -> Vec<f64> {
        let max = row[..visible]
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let e: Vec<f64> = (0..row.len())
            .map(|j| {
                if j < visible {
                    (row[j] as f64 - max).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    }

    #[test]
    fn causal_rows_match_f64_and_sum_to_one() {
        let (queries, keys) = (70, 70);
        let shape = Rows {
            queries,
            keys,
            causal: true,
        };
        // Two "heads", so rows past the first block restart at query 0; more rows than a task.
        let xs: Vec<f32> = (0..2 * queries * keys)
            .map(|i| ((i * 7919 % 1000) as f32 / 50.0) - 10.0)
            .collect();
        let mut ys = xs.clone();
        forward_in_place(&mut ys, shape);
        for r in 0..2 * queries {
            let row = &ys[r * keys..(r + 1) * keys];
            let want = reference(&xs[r * keys..(r + 1) * keys], r % queries + 1);
            for (j, (&g, w)) in row.iter().zip(&want).enumerate() {
                assert!((g as f64 - w).abs() < 1e-6, "row {r} key {j}: {g} vs {w}");
            }
            assert!(row[r % queries + 1..].iter().all(|&p| p == 0.0));
        }
    }
}
