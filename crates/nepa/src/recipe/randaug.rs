//! RandAugment as timm's `rand-m9-mstd0.5-inc1` (docs/nepa.md §5: "RandAugment m9"): two ops
//! per image drawn with replacement from the "increasing" set, each applied with probability
//! 0.5 at magnitude N(9, 0.5) clipped to [0, 10].

use super::pixel_ops as px;
use crate::error::NepaError;
use crate::image::RgbImage;
use crate::rng::SplitMix64;

/// timm's `_RAND_INCREASING_TRANSFORMS`, in its order (an op's index is its position here).
pub const OPS: [&str; 15] = [
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
];

/// timm's `_LEVEL_DENOM`: magnitudes run from 0 to 10.
const LEVEL_DENOM: f64 = 10.0;

/// One op with its argument, as timm's `level_to_arg` functions produce it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    AutoContrast,
    Equalize,
    Invert,
    /// Degrees, counter-clockwise.
    Rotate(f64),
    /// Bits kept.
    Posterize(u32),
    /// Values at or above this are inverted.
    Solarize(u32),
    /// Added to values below 128.
    SolarizeAdd(u32),
    /// Enhance factors (1 = unchanged).
    Color(f64),
    Contrast(f64),
    Brightness(f64),
    Sharpness(f64),
    /// Shear factors.
    ShearX(f64),
    ShearY(f64),
    /// Shift as a fraction of the width / height.
    TranslateXRel(f64),
    TranslateYRel(f64),
}

/// timm's `_randomly_negate`: one draw, negative when it exceeds 0.5.
fn signed(v: f64, rng: &mut SplitMix64) -> f64 {
    if rng.next_f64() > 0.5 { -v } else { v }
}

impl Op {
    /// Op number `index` of [`OPS`] at `magnitude` (0..=10), with timm's mappings: rotate
    /// ±30°·m/10, posterize `4 − int(4·m/10)` bits, solarize at `256 − int(256·m/10)`,
    /// solarize-add `int(110·m/10)`, enhance `max(0.1, 1 ± 0.9·m/10)`, shear ±0.3·m/10,
    /// translate ±0.45·m/10 of the size. Signed arguments draw their sign from `rng`.
    /// `None` when `index` is not below 15.
    pub fn at(index: usize, magnitude: f64, rng: &mut SplitMix64) -> Option<Op> {
        let level = magnitude / LEVEL_DENOM;
        let enhance = |rng: &mut SplitMix64| (1.0 + signed(level * 0.9, rng)).max(0.1);
        Some(match index {
            0 => Op::AutoContrast,
            1 => Op::Equalize,
            2 => Op::Invert,
            3 => Op::Rotate(signed(level * 30.0, rng)),
            4 => Op::Posterize(4 - (level * 4.0) as u32),
            5 => Op::Solarize(256 - ((level * 256.0) as u32).min(256)),
            6 => Op::SolarizeAdd(((level * 110.0) as u32).min(128)),
            7 => Op::Color(enhance(rng)),
            8 => Op::Contrast(enhance(rng)),
            9 => Op::Brightness(enhance(rng)),
            10 => Op::Sharpness(enhance(rng)),
            11 => Op::ShearX(signed(level * 0.3, rng)),
            12 => Op::ShearY(signed(level * 0.3, rng)),
            13 => Op::TranslateXRel(signed(level * 0.45, rng)),
            14 => Op::TranslateYRel(signed(level * 0.45, rng)),
            _ => return None,
        })
    }

    /// Applies the op; geometric ones fill uncovered pixels with `fill`.
    pub fn apply(self, img: &RgbImage, fill: [u8; 3]) -> RgbImage {
        let (w, h) = (img.width as f64, img.height as f64);
        match self {
            Op::AutoContrast => px::autocontrast(img),
            Op::Equalize => px::equalize(img),
            Op::Invert => px::invert(img),
            Op::Rotate(deg) => px::rotate(img, deg, fill),
            Op::Posterize(bits) => px::posterize(img, bits),
            Op::Solarize(t) => px::solarize(img, t),
            Op::SolarizeAdd(a) => px::solarize_add(img, a),
            Op::Color(f) => px::color(img, f),
            Op::Contrast(f) => px::contrast(img, f),
            Op::Brightness(f) => px::brightness(img, f),
            Op::Sharpness(f) => px::sharpness(img, f),
            Op::ShearX(s) => px::affine(img, [1.0, s, 0.0, 0.0, 1.0, 0.0], fill),
            Op::ShearY(s) => px::affine(img, [1.0, 0.0, 0.0, s, 1.0, 0.0], fill),
            Op::TranslateXRel(p) => px::affine(img, [1.0, 0.0, p * w, 0.0, 1.0, 0.0], fill),
            Op::TranslateYRel(p) => px::affine(img, [1.0, 0.0, 0.0, 0.0, 1.0, p * h], fill),
        }
    }
}

/// timm's `RandAugment` over the increasing op set.
///
/// Geometric ops (rotate, shear, translate) resample **bilinearly** (Pillow's affine
/// `BILINEAR`, reproduced exactly). timm picks bilinear or bicubic at random when no
/// interpolation is given and bicubic when the recipe passes `interpolation='bicubic'`;
/// bilinear is the one of the two this crate reproduces bit for bit, and the ops only move
/// content by whole fractions of the image, so the choice changes edges by a grey level or so.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandAugment {
    /// Ops per image (timm `n`).
    pub num_ops: usize,
    /// Mean magnitude, 0..=10 (timm `m`).
    pub magnitude: f64,
    /// Per-op Gaussian noise on the magnitude (timm `mstd`); 0 for a fixed magnitude.
    pub magnitude_std: f64,
    /// Probability that each drawn op is applied.
    pub prob: f64,
    /// Fill of pixels that geometric ops uncover: timm's `img_mean`, the normalisation mean
    /// 0.5 as `round(255·0.5)`.
    pub fill: [u8; 3],
}

impl RandAugment {
    /// `rand-m9-mstd0.5-inc1`.
    pub fn official() -> Self {
        Self {
            num_ops: 2,
            magnitude: 9.0,
            magnitude_std: 0.5,
            prob: 0.5,
            fill: [128; 3],
        }
    }

    pub fn validate(&self) -> Result<(), NepaError> {
        let ok = self.num_ops <= 16
            && (0.0..=LEVEL_DENOM).contains(&self.magnitude)
            && self.magnitude_std.is_finite()
            && self.magnitude_std >= 0.0
            && (0.0..=1.0).contains(&self.prob);
        if ok {
            Ok(())
        } else {
            Err(NepaError::Config(format!(
                "RandAugment: need num_ops ≤ 16, magnitude in [0, 10], magnitude_std ≥ 0 and \
                 prob in [0, 1] (got {self:?})"
            )))
        }
    }

    /// The ops drawn for one image, in timm's draw order: the op indices first, then for
    /// each op the apply draw, the magnitude noise and the argument's sign. `None` entries
    /// were skipped by the probability draw.
    pub fn draw(&self, rng: &mut SplitMix64) -> Vec<Option<Op>> {
        let picks: Vec<usize> = (0..self.num_ops).map(|_| rng.below(OPS.len())).collect();
        picks
            .into_iter()
            .map(|i| {
                if self.prob < 1.0 && rng.next_f64() > self.prob {
                    return None;
                }
                let mut m = self.magnitude;
                if self.magnitude_std > 0.0 {
                    m += self.magnitude_std * rng.normal();
                }
                Op::at(i, m.clamp(0.0, LEVEL_DENOM), rng)
            })
            .collect()
    }

    /// Draws and applies the ops to `img`.
    pub fn apply(&self, img: &RgbImage, rng: &mut SplitMix64) -> RgbImage {
        let mut out = img.clone();
        for op in self.draw(rng).into_iter().flatten() {
            out = op.apply(&out, self.fill);
        }
        out
    }
}

#[cfg(test)]
#[path = "randaug_tests.rs"]
mod tests;
