//! 2D rotary position embedding (docs/nepa.md §2.3), θ = 100, on patch tokens only.
//!
//! The cos/sin tables are computed on the host in f32 (as the official code does under
//! disabled autocast) and uploaded once per forward pass; they are tiny (`N × head_dim`).

use burn::tensor::{Device, Tensor, TensorData};

/// Cos and sin tables of shape `[rows·cols, head_dim]`, in row-major patch order.
#[derive(Clone, Debug)]
pub struct RopeTables {
    pub cos: Tensor<2>,
    pub sin: Tensor<2>,
}

/// Host-side angles `[rows·cols, head_dim]` laid out `[y·f, x·f, y·f, x·f]`.
///
/// Coordinates are patch centres in [−1, 1] per axis, multiplied by `coord_scale`
/// (1 in eval; the random rescale draw in training).
pub fn rope_angles(
    rows: usize,
    cols: usize,
    head_dim: usize,
    theta: f64,
    coord_scale: f64,
) -> Vec<f32> {
    assert!(
        head_dim.is_multiple_of(4),
        "head_dim must be divisible by 4"
    );
    let quarter = head_dim / 4;
    let inv_freq: Vec<f64> = (0..quarter)
        .map(|j| 1.0 / theta.powf((4 * j) as f64 / head_dim as f64))
        .collect();
    let two_pi = 2.0 * std::f64::consts::PI;
    let mut out = Vec::with_capacity(rows * cols * head_dim);
    for r in 0..rows {
        let y = ((r as f64 + 0.5) / rows as f64 * 2.0 - 1.0) * coord_scale;
        for c in 0..cols {
            let x = ((c as f64 + 0.5) / cols as f64 * 2.0 - 1.0) * coord_scale;
            let half: Vec<f32> = inv_freq
                .iter()
                .map(|f| (two_pi * y * f) as f32)
                .chain(inv_freq.iter().map(|f| (two_pi * x * f) as f32))
                .collect();
            out.extend_from_slice(&half);
            out.extend_from_slice(&half);
        }
    }
    out
}

impl RopeTables {
    pub fn new(
        rows: usize,
        cols: usize,
        head_dim: usize,
        theta: f64,
        coord_scale: f64,
        device: &Device,
    ) -> Self {
        let angles = rope_angles(rows, cols, head_dim, theta, coord_scale);
        Self::from_angles(&angles, [rows * cols, head_dim], device)
    }

    /// The tables of host angles `[N, head_dim]` (as [`rope_angles`] lays them out).
    pub fn from_angles(angles: &[f32], shape: [usize; 2], device: &Device) -> Self {
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotates `u` of shape `[B, H, N, head_dim]` (patch tokens only, no CLS).
    pub fn apply(&self, u: Tensor<4>) -> Tensor<4> {
        let [b, h, n, hd] = u.dims();
        let half = hd / 2;
        let first = u.clone().narrow(3, 0, half);
        let second = u.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![second.neg(), first], 3);
        let cos = self
            .cos
            .clone()
            .reshape([1, 1, n, hd])
            .expand([b, h, n, hd]);
        let sin = self
            .sin
            .clone()
            .reshape([1, 1, n, hd])
            .expand([b, h, n, hd]);
        u * cos + rotated * sin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angles_follow_the_spec_layout() {
        // 16×16 grid, head_dim 64, θ = 100: 16 frequencies from 1.0 down to ≈0.01334.
        let a = rope_angles(16, 16, 64, 100.0, 1.0);
        assert_eq!(a.len(), 256 * 64);
        let y0 = -0.9375f64;
        let two_pi = 2.0 * std::f64::consts::PI;
        // Token 0 (row 0, col 0): dim 0 is y·f0, dim 16 is x·f0, dim 32 repeats dim 0.
        assert!((a[0] as f64 - two_pi * y0).abs() < 1e-5);
        assert!((a[16] as f64 - two_pi * y0).abs() < 1e-5);
        assert_eq!(a[0], a[32]);
        let f15 = 1.0 / 100f64.powf(60.0 / 64.0);
        assert!((f15 - 0.01334).abs() < 1e-5);
        // Token 1 (row 0, col 1): x changes, y does not.
        assert_eq!(a[64], a[0]);
        assert!((a[64 + 16] as f64 - two_pi * (1.5 / 16.0 * 2.0 - 1.0)).abs() < 1e-5);
    }
}
