//! Mixup / CutMix with label smoothing, as timm's `Mixup(mode='batch')` (docs/nepa.md §5:
//! "label smoothing 0.1, mixup 0.8 / cutmix 1.0").

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

use crate::error::NepaError;
use crate::rng::SplitMix64;

/// Which mixing a batch got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    None,
    Mixup,
    Cutmix,
}

/// A mixed batch's soft targets (`B × num_classes`, row-major), its λ and kind.
#[derive(Clone, Debug, PartialEq)]
pub struct MixedTargets {
    pub targets: Vec<f32>,
    pub lam: f64,
    pub kind: Mix,
    /// The CutMix box `(y_low, y_high, x_low, x_high)`, half-open; `None` unless CutMix.
    pub bbox: Option<(usize, usize, usize, usize)>,
}

/// timm's `Mixup` arguments. An α of 0 turns that mixing off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixupConfig {
    pub mixup_alpha: f64,
    pub cutmix_alpha: f64,
    /// Probability that a batch is mixed at all.
    pub prob: f64,
    /// Probability of CutMix rather than Mixup when both are on.
    pub switch_prob: f64,
    pub label_smoothing: f64,
    /// Set λ to the share of the image CutMix left unchanged (the box is clipped at edges).
    pub correct_lam: bool,
}

impl MixupConfig {
    /// The official fine-tuning values (timm defaults of the DeiT/MAE recipe).
    pub fn official() -> Self {
        Self {
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            prob: 1.0,
            switch_prob: 0.5,
            label_smoothing: 0.1,
            correct_lam: true,
        }
    }

    /// No mixing; targets are the smoothed one-hot labels (smoothing 0.1 kept).
    pub fn none() -> Self {
        Self {
            mixup_alpha: 0.0,
            cutmix_alpha: 0.0,
            prob: 0.0,
            ..Self::official()
        }
    }

    fn validate(&self) -> Result<(), NepaError> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        let valid = ok(self.mixup_alpha)
            && ok(self.cutmix_alpha)
            && unit(self.prob)
            && unit(self.switch_prob)
            && unit(self.label_smoothing);
        if !valid {
            return Err(NepaError::Config(format!(
                "mixup: alphas must be finite and ≥ 0 and prob, switch_prob, label_smoothing in \
                 [0, 1] (got {self:?})"
            )));
        }
        Ok(())
    }

    /// Draws λ and the kind for one batch, as timm's `_params_per_batch`.
    fn draw(&self, rng: &mut SplitMix64) -> (f64, Mix) {
        let (m, c) = (self.mixup_alpha > 0.0, self.cutmix_alpha > 0.0);
        if !(m || c) || rng.next_f64() >= self.prob {
            return (1.0, Mix::None);
        }
        let cutmix = if m && c {
            rng.next_f64() < self.switch_prob
        } else {
            c
        };
        if cutmix {
            (beta(rng, self.cutmix_alpha), Mix::Cutmix)
        } else {
            (beta(rng, self.mixup_alpha), Mix::Mixup)
        }
    }

    /// Mixes the batch `pixels` (`shape` = B, C, H, W) in place, image `i` with image
    /// `B − 1 − i`, and returns the matching soft targets. B must be even (as timm asserts:
    /// with an odd B the middle image would mix with itself).
    pub fn apply(
        &self,
        pixels: &mut [f32],
        shape: [usize; 4],
        labels: &[usize],
        num_classes: usize,
        rng: &mut SplitMix64,
    ) -> Result<MixedTargets, NepaError> {
        self.validate()?;
        let [b, c, h, w] = shape;
        let n = b
            .checked_mul(c)
            .and_then(|v| v.checked_mul(h)?.checked_mul(w));
        if n != Some(pixels.len()) || labels.len() != b {
            return Err(NepaError::Input(format!(
                "mixup: shape {shape:?} does not match {} pixel values and {} labels",
                pixels.len(),
                labels.len()
            )));
        }
        let smoothed = smooth_one_hot(labels, num_classes, self.label_smoothing)?;
        let off = self.prob <= 0.0 || (self.mixup_alpha <= 0.0 && self.cutmix_alpha <= 0.0);
        if off {
            // Nothing to pair: any batch size works, and no draw is taken.
            return Ok(MixedTargets {
                targets: smoothed,
                lam: 1.0,
                kind: Mix::None,
                bbox: None,
            });
        }
        if b % 2 != 0 {
            return Err(NepaError::Input(format!(
                "mixup needs an even batch size, got {b}"
            )));
        }
        let (mut lam, mut kind) = self.draw(rng);
        let mut bbox = None;
        let image = c * h * w;
        if lam == 1.0 {
            kind = Mix::None;
        } else if kind == Mix::Cutmix {
            let (yl, yh, xl, xh) = rand_bbox(h, w, lam, rng);
            if self.correct_lam {
                lam = 1.0 - ((yh - yl) * (xh - xl)) as f64 / (h * w) as f64;
            }
            let original = pixels.to_vec();
            for i in 0..b {
                let j = b - 1 - i;
                for ch in 0..c {
                    for y in yl..yh {
                        let row = ch * h * w + y * w;
                        let (dst, src) = (i * image + row, j * image + row);
                        pixels[dst + xl..dst + xh].copy_from_slice(&original[src + xl..src + xh]);
                    }
                }
            }
            bbox = Some((yl, yh, xl, xh));
        } else {
            let original = pixels.to_vec();
            let (l, r) = (lam as f32, (1.0 - lam) as f32);
            for i in 0..b {
                let j = b - 1 - i;
                for k in 0..image {
                    pixels[i * image + k] =
                        original[i * image + k] * l + original[j * image + k] * r;
                }
            }
        }
        Ok(MixedTargets {
            targets: mix_targets(&smoothed, b, num_classes, lam),
            lam,
            kind,
            bbox,
        })
    }
}

/// λ·t_i + (1 − λ)·t_{B−1−i} per row (timm's `mixup_target`).
fn mix_targets(smoothed: &[f32], b: usize, classes: usize, lam: f64) -> Vec<f32> {
    let mut out = vec![0.0; b * classes];
    for i in 0..b {
        let j = b - 1 - i;
        for k in 0..classes {
            let v = lam * f64::from(smoothed[i * classes + k])
                + (1.0 - lam) * f64::from(smoothed[j * classes + k]);
            out[i * classes + k] = v as f32;
        }
    }
    out
}

/// timm's `rand_bbox`: a box of `int(H·√(1−λ)) × int(W·√(1−λ))` centred at a uniform pixel
/// (row first), clipped to the image; returns `(y_low, y_high, x_low, x_high)`, half-open.
fn rand_bbox(h: usize, w: usize, lam: f64, rng: &mut SplitMix64) -> (usize, usize, usize, usize) {
    let ratio = (1.0 - lam).max(0.0).sqrt();
    let (cut_h, cut_w) = ((h as f64 * ratio) as usize, (w as f64 * ratio) as usize);
    let (cy, cx) = (rng.below(h), rng.below(w));
    (
        cy.saturating_sub(cut_h / 2),
        (cy + cut_h / 2).min(h),
        cx.saturating_sub(cut_w / 2),
        (cx + cut_w / 2).min(w),
    )
}

/// One-hot rows with label smoothing: `ε/C` off the label, `1 − ε + ε/C` on it.
pub fn smooth_one_hot(
    labels: &[usize],
    classes: usize,
    smoothing: f64,
) -> Result<Vec<f32>, NepaError> {
    if let Some(&bad) = labels.iter().find(|&&l| l >= classes) {
        return Err(NepaError::Input(format!(
            "label {bad} is out of range for {classes} classes"
        )));
    }
    let off = smoothing / classes as f64;
    let on = 1.0 - smoothing + off;
    let mut out = vec![off as f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        out[i * classes + l] = on as f32;
    }
    Ok(out)
}

/// Cross-entropy against soft targets, averaged over the batch:
/// `mean_b(−Σ_c t_bc · log_softmax(x_b)_c)` (timm's `SoftTargetCrossEntropy`). Shape `[1]`.
pub fn soft_target_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (targets * log_softmax(logits, 1)).sum_dim(1).neg().mean()
}

/// Gamma(shape, 1) by Marsaglia–Tsang (2000); shapes below 1 use the boost
/// Gamma(a) = Gamma(a + 1)·U^(1/a).
fn gamma(rng: &mut SplitMix64, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = 1.0 - rng.next_f64(); // (0, 1]
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.next_f64();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Beta(α, α) as X / (X + Y) with X, Y ~ Gamma(α).
pub(crate) fn beta(rng: &mut SplitMix64, alpha: f64) -> f64 {
    let x = gamma(rng, alpha);
    let y = gamma(rng, alpha);
    if x + y > 0.0 { x / (x + y) } else { 0.5 }
}

#[cfg(test)]
#[path = "mixup_tests.rs"]
mod tests;
