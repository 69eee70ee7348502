//! LayerNorm over the last dimension of a contiguous f32 buffer, forward and backward, rows
//! split over rayon's threads natively, each row's sums in vector lanes (docs/performance.md §8).

use super::simd::{LANES, lane_sum, vectorised};

/// Rows per task.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
const ROWS: usize = 64;

/// (mean, 1/√(var + eps)) of one row, the variance by two passes as PyTorch does.
#[inline(always)]
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = lane_sum(row, |v| v) / n;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

vectorised!(forward_rows(xs: &[f32], gamma: &[f32], beta: &[f32], eps: f32, ys: &mut [f32]) {
    let d = gamma.len();
    for (x, y) in xs.chunks_exact(d).zip(ys.chunks_exact_mut(d)) {
        let (mean, rstd) = moments(x, eps);
        for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
            *y = (x - mean) * rstd * g + b;
        }
    }
});

/// ys ← (xs − mean)·rstd·γ + β, row by row (rows of γ's length).
pub fn forward(xs: &[f32], gamma: &[f32], beta: &[f32], eps: f32, ys: &mut [f32]) {
    let rows = |(x, y): (&[f32], &mut [f32])| forward_rows(x, gamma, beta, eps, y);
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        let d = gamma.len();
        xs.par_chunks(ROWS * d)
            .zip(ys.par_chunks_mut(ROWS * d))
            .for_each(rows);
    }
    #[cfg(target_arch = "wasm32")]
    rows((xs, ys));
}

/// One element's share of the backward pass: adds dy·x̂ to dγ and dy to dβ, returns g = dy·γ
/// and g·x̂.
#[inline(always)]
fn grad_terms(
    x: f32,
    dy: f32,
    gamma: f32,
    mean: f32,
    rstd: f32,
    dgamma: &mut f32,
    dbeta: &mut f32,
) -> (f32, f32) {
    let xhat = (x - mean) * rstd;
    *dgamma += dy * xhat;
    *dbeta += dy;
    let g = dy * gamma;
    (g, g * xhat)
}

vectorised!(backward_rows(
    xs: &[f32],
    gamma: &[f32],
    eps: f32,
    dys: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32]
) {
    let d = gamma.len();
    for (x, dy) in xs.chunks_exact(d).zip(dys.chunks_exact_mut(d)) {
        let (mean, rstd) = moments(x, eps);
        // dγ, dβ and the sums of g and g·x̂ in one pass, the sums in lanes (as `lane_sum`),
        // the row's tail past the last full chunk of lanes into lane 0.
        let (mut sum_g, mut sum_gx) = ([0.0f32; LANES], [0.0f32; LANES]);
        let full = d - d % LANES;
        for start in (0..full).step_by(LANES) {
            let span = start..start + LANES;
            let (x, dy, g) = (&x[span.clone()], &dy[span.clone()], &gamma[span.clone()]);
            let (dg, db) = (&mut dgamma[span.clone()], &mut dbeta[span]);
            for l in 0..LANES {
                let (dg, db) = (&mut dg[l], &mut db[l]);
                let (gl, glx) = grad_terms(x[l], dy[l], g[l], mean, rstd, dg, db);
                sum_g[l] += gl;
                sum_gx[l] += glx;
            }
        }
        for j in full..d {
            let (dg, db) = (&mut dgamma[j], &mut dbeta[j]);
            let (gj, gjx) = grad_terms(x[j], dy[j], gamma[j], mean, rstd, dg, db);
            sum_g[0] += gj;
            sum_gx[0] += gjx;
        }
        let mean_g = sum_g.iter().sum::<f32>() / d as f32;
        let mean_gx = sum_gx.iter().sum::<f32>() / d as f32;
        for ((dy, &x), &g) in dy.iter_mut().zip(x).zip(gamma) {
            let xhat = (x - mean) * rstd;
            *dy = rstd * (*dy * g - mean_g - xhat * mean_gx);
        }
    }
});

/// The three gradients of LayerNorm from the output's gradient `dys` (same layout as `xs`):
/// dx into `dys` in place, and (dγ, dβ) returned, summed over the rows.
///
/// With x̂ = (x − mean)·rstd and g = dy·γ: dx = rstd·(g − mean(g) − x̂·mean(g·x̂)),
/// dγ = Σ dy·x̂, dβ = Σ dy.
pub fn backward(xs: &[f32], gamma: &[f32], eps: f32, dys: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let rows = |(x, dy): (&[f32], &mut [f32])| {
        let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
        backward_rows(x, gamma, eps, dy, &mut dgamma, &mut dbeta);
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
