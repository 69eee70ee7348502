//! LayerNorm over the last dimension of a contiguous f32 buffer, forward and backward, rows
//! split over rayon's threads natively (docs/performance.md §8).

/// Rows per task.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
const ROWS: usize = 64;

/// (mean, 1/√(var + eps)) of one row, the variance by two passes as PyTorch does.
#[inline]
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// ys ← (xs − mean)·rstd·γ + β, row by row (rows of γ's length).
pub fn forward(xs: &[f32], gamma: &[f32], beta: &[f32], eps: f32, ys: &mut [f32]) {
    let d = gamma.len();
    let rows = |(x, y): (&[f32], &mut [f32])| {
        for (x, y) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let (mean, rstd) = moments(x, eps);
            for i in 0..d {
                y[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
            }
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        xs.par_chunks(ROWS * d)
            .zip(ys.par_chunks_mut(ROWS * d))
            .for_each(rows);
    }
    #[cfg(target_arch = "wasm32")]
    rows((xs, ys));
}

/// The three gradients of LayerNorm from the output's gradient `dys` (same layout as `xs`):
/// dx into `dys` in place, and (dγ, dβ) returned, summed over the rows.
///
/// With x̂ = (x − mean)·rstd and g = dy·γ: dx = rstd·(g − mean(g) − x̂·mean(g·x̂)),
/// dγ = Σ dy·x̂, dβ = Σ dy.
pub fn backward(xs: &[f32], gamma: &[f32], eps: f32, dys: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let rows = |(x, dy): (&[f32], &mut [f32])| {
        let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
        let mut g = vec![0.0f32; d];
        for (x, dy) in x.chunks_exact(d).zip(dy.chunks_exact_mut(d)) {
            let (mean, rstd) = moments(x, eps);
            let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
            for i in 0..d {
                let xhat = (x[i] - mean) * rstd;
                dgamma[i] += dy[i] * xhat;
                dbeta[i] += dy[i];
                g[i] = dy[i] * gamma[i];
                sum_g += g[i];
                sum_gx += g[i] * xhat;
            }
            let (mean_g, mean_gx) = (sum_g / d as f32, sum_gx / d as f32);
            for i in 0..d {
                let xhat = (x[i] - mean) * rstd;
                dy[i] = rstd * (g[i] - mean_g - xhat * mean_gx);
            }
        }
        (dgamma, dbeta)
    };
    let add = |(mut ag, mut ab): (Vec<f32>, Vec<f32>), (g, b): (Vec<f32>, Vec<f32>)| {
        ag.iter_mut().zip(g).for_each(|(a, v)| *a += v);
        ab.iter_mut().zip(b).for_each(|(a, v)| *a += v);
        (ag, ab)
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        xs.par_chunks(ROWS * d)
            .zip(dys.par_chunks_mut(ROWS * d))
            .map(rows)
            .reduce(|| (vec![0.0; d], vec![0.0; d]), add)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = add;
        rows((xs, dys))
    }
}
