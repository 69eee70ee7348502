//! Shared-basis PCA of z and ẑ → RGB (an extension, not in the paper).

use crate::rng::SplitMix64;

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
        let centred = Centred::new(data, n, dim);
        let k = k.min(dim);
        let mut components: Vec<Vec<f64>> = Vec::with_capacity(k);
        let mut variances = Vec::with_capacity(k);
        for c in 0..k {
            let v = match centred.power_iterate(&components, 0x9CA0_5EED ^ c as u64) {
                Some(mut v) => {
                    fix_sign(&mut v);
                    v
                }
                None => vec![0.0; dim],
            };
            let cv = centred.cov_times(&v);
            variances.push(cv.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>() as f32);
            components.push(v);
        }
        Self {
            mean: centred.mean.into_iter().map(|m| m as f32).collect(),
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

/// Rows minus their mean, in f64: accuracy matters more than memory at these sizes (≤ 4 MB).
struct Centred {
    mean: Vec<f64>,
    x: Vec<f64>,
    dim: usize,
    inv_n: f64,
}

impl Centred {
    fn new(data: &[f32], n: usize, dim: usize) -> Self {
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
        let x = data
            .chunks_exact(dim.max(1))
            .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| f64::from(v) - m))
            .collect();
        Self {
            mean,
            x,
            dim,
            inv_n,
        }
    }

    /// `Xᵀ(X v)/N`: the covariance times `v` without forming the D×D covariance.
    fn cov_times(&self, v: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0f64; self.dim];
        for row in self.x.chunks_exact(self.dim.max(1)) {
            let s: f64 = row.iter().zip(v).map(|(a, b)| a * b).sum();
            for (o, a) in out.iter_mut().zip(row) {
                *o += s * a;
            }
        }
        for o in &mut out {
            *o *= self.inv_n;
        }
        out
    }

    /// The next unit component by power iteration from a start vector seeded by `seed`,
    /// orthogonal to `found`; `None` if no variance is left.
    fn power_iterate(&self, found: &[Vec<f64>], seed: u64) -> Option<Vec<f64>> {
        let mut rng = SplitMix64::new(seed);
        let mut v: Vec<f64> = (0..self.dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
        orthogonalize(&mut v, found);
        let n0 = norm(&v);
        if n0 <= 0.0 {
            return None;
        }
        v.iter_mut().for_each(|a| *a /= n0);
        let mut moved = false;
        for _ in 0..PCA_MAX_ITERS {
            let mut w = self.cov_times(&v);
            // Deflation: remove the directions already explained. Repeating it every step
            // also keeps rounding from reintroducing them.
            orthogonalize(&mut w, found);
            let nw = norm(&w);
            if nw <= f64::EPSILON * 1e-3 {
                break;
            }
            w.iter_mut().for_each(|a| *a /= nw);
            let delta = norm(&w.iter().zip(&v).map(|(a, b)| a - b).collect::<Vec<f64>>());
            v = w;
            moved = true;
            if delta < PCA_TOL {
                break;
            }
        }
        moved.then_some(v)
    }
}

/// Removes from `v` its projection on each (unit) vector of `basis`.
fn orthogonalize(v: &mut [f64], basis: &[Vec<f64>]) {
    for b in basis {
        let d: f64 = v.iter().zip(b).map(|(a, c)| a * c).sum();
        for (a, c) in v.iter_mut().zip(b) {
            *a -= d * c;
        }
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Deterministic sign: the largest-magnitude loading positive (the first on ties).
fn fix_sign(v: &mut [f64]) {
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
}
