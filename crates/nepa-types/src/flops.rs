//! The FLOP count behind the run report's achieved TFLOP/s (docs/run-report.md §1.2). The
//! PyTorch bench (tests/reference/bench.py) counts the same way, so the two are comparable.

use serde::{Deserialize, Serialize};

use crate::config::NepaConfig;

/// Floating-point operations per image, multiply and add counted as two.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlopsPerImage {
    /// One forward pass.
    pub forward: f64,
    /// One training step: forward and backward, counted as 3 × forward (the backward pass
    /// computes two products per forward product).
    pub train: f64,
}

impl FlopsPerImage {
    /// The matrix products only: per layer the Q, K, V and output projections (4·D²), the
    /// MLP (2·D·I, gated 3·D·I) on every token, QKᵀ and P·V (2·T²·D multiply-adds, the full
    /// square even when causal), plus the patch embedding. Biases, norms, softmax and RoPE
    /// are left out: they are a few percent at any size worth timing.
    pub fn of(config: &NepaConfig) -> Self {
        let [h, w] = config.image_size;
        let p = config.patch_size;
        let patches = ((h / p) * (w / p)) as f64;
        let t = 1.0 + patches;
        let d = config.hidden_size as f64;
        let i = config.intermediate_size as f64;
        let mlp = if config.use_gated_mlp { 3.0 } else { 2.0 } * d * i;
        let per_layer = 2.0 * t * (4.0 * d * d + mlp) + 4.0 * t * t * d;
        let embed = 2.0 * patches * (config.num_channels * p * p) as f64 * d;
        let forward = per_layer * config.num_hidden_layers as f64 + embed;
        Self {
            forward,
            train: 3.0 * forward,
        }
    }

    /// TFLOP/s at `images_per_sec` for `flops` per image.
    pub fn tflops(flops: f64, images_per_sec: Option<f64>) -> Option<f64> {
        images_per_sec
            .map(|ips| flops * ips / 1e12)
            .filter(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nepa_b_counts_by_hand() {
        // NEPA-B at 224 px / patch 14: T = 257, D = 768, I = 3072, 12 layers.
        let config = NepaConfig::new(768, 12, 12)
            .with_image_size(224, 224)
            .with_patch_size(14);
        let f = FlopsPerImage::of(&config);
        let (t, d, i) = (257.0, 768.0, 3072.0);
        let layer = 2.0 * t * (4.0 * d * d + 2.0 * d * i) + 4.0 * t * t * d;
        let embed = 2.0 * 256.0 * (3.0 * 14.0 * 14.0) * d;
        assert_eq!(f.forward, 12.0 * layer + embed);
        // ≈ 46.3 GFLOP per image forward (ViT-B/16 at 224 px, 197 tokens, is the usual 35).
        assert!(
            (f.forward / 1e9 - 46.32).abs() < 0.01,
            "{}",
            f.forward / 1e9
        );
        assert_eq!(f.train, 3.0 * f.forward);
        assert_eq!(FlopsPerImage::tflops(1e12, Some(2.0)), Some(2.0));
        assert_eq!(FlopsPerImage::tflops(1e12, None), None);
    }
}
