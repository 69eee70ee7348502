//! Evaluation preprocessing of the fine-tuning recipe, as timm's `transforms_imagenet_eval`
//! for ViTs: bicubic resize of the shorter side to `floor(size / crop_pct)` (aspect kept),
//! centre crop `size`, then `Normalize(0.5, 0.5)` (docs/nepa.md §7.2: mean = std = 0.5).

use crate::error::NepaError;
use crate::image::{CropParams, RgbImage, crop, resize_bicubic, to_normalized_chw};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalTransform {
    /// Output `[height, width]`.
    pub size: [usize; 2],
    /// Share of the resized image kept by the crop, in (0, 1].
    pub crop_pct: f64,
}

impl EvalTransform {
    /// 224 × 224 with timm's ImageNet `crop_pct` 0.875 (resize to 256, crop 224).
    pub fn official() -> Self {
        Self::new(224, 224)
    }

    /// `height × width` at crop_pct 0.875.
    pub fn new(height: usize, width: usize) -> Self {
        Self {
            size: [height, width],
            crop_pct: 0.875,
        }
    }

    fn validate(&self) -> Result<(), NepaError> {
        if self.size.contains(&0) || !(self.crop_pct > 0.0 && self.crop_pct <= 1.0) {
            return Err(NepaError::Config(format!(
                "eval transform: need a non-empty size and crop_pct in (0, 1] (got {self:?})"
            )));
        }
        Ok(())
    }

    /// The `(width, height)` a `w × h` image is resized to. For a square size this is
    /// torchvision's `Resize(s)`, s = floor(size / crop_pct): the shorter side becomes s and
    /// the longer `int(s · long / short)`. Otherwise timm's `ResizeKeepRatio`: both sides
    /// divided by `min(h / s_h, w / s_w)` and rounded.
    pub fn resize_size(&self, w: usize, h: usize) -> (usize, usize) {
        let [sh, sw] = self
            .size
            .map(|s| (s as f64 / self.crop_pct).floor() as usize);
        if sh == sw {
            let (short, long) = (w.min(h), w.max(h));
            let new_long = (sh as f64 * long as f64 / short.max(1) as f64) as usize;
            if w <= h {
                (sh, new_long)
            } else {
                (new_long, sh)
            }
        } else {
            let ratio = (h as f64 / sh as f64).min(w as f64 / sw as f64);
            let r = |v: usize| (v as f64 / ratio).round_ties_even() as usize;
            (r(w), r(h))
        }
    }

    /// The crop in the resized image (`w × h` is the original size), as torchvision's
    /// `center_crop`: `top = round((H − h) / 2)`, `left = round((W − w) / 2)`, ties to even.
    pub fn crop_box(&self, w: usize, h: usize) -> CropParams {
        let (rw, rh) = self.resize_size(w, h);
        let [ch, cw] = self.size;
        let off = |big: usize, small: usize| {
            (big.saturating_sub(small) as f64 / 2.0).round_ties_even() as usize
        };
        CropParams {
            x: off(rw, cw),
            y: off(rh, ch),
            w: cw,
            h: ch,
        }
    }

    /// Resize, crop, normalise: CHW float, `3 · height · width` values.
    pub fn apply(&self, img: &RgbImage) -> Result<Vec<f32>, NepaError> {
        self.validate()?;
        if img.width == 0 || img.height == 0 {
            return Err(NepaError::Input("cannot preprocess an empty image".into()));
        }
        let (rw, rh) = self.resize_size(img.width, img.height);
        let b = self.crop_box(img.width, img.height);
        // crop_pct ≤ 1 makes the resized image at least the crop, except when rounding
        // leaves it one pixel short; refuse rather than pad.
        if b.x + b.w > rw || b.y + b.h > rh {
            return Err(NepaError::Input(format!(
                "a {}×{} image resizes to {rw}×{rh}, smaller than the {}×{} crop",
                img.width, img.height, b.w, b.h
            )));
        }
        Ok(to_normalized_chw(&crop(&resize_bicubic(img, rw, rh), b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_and_crop_of_a_500_by_375_image() {
        // 224 / 0.875 = 256: the 375 side becomes 256, the 500 side int(256·500/375) =
        // int(341.33) = 341; the crop starts at round((341 − 224)/2) = round(58.5) = 58
        // (ties to even) and round((256 − 224)/2) = 16.
        let t = EvalTransform::official();
        assert_eq!(t.resize_size(500, 375), (341, 256));
        assert_eq!(
            t.crop_box(500, 375),
            CropParams {
                x: 58,
                y: 16,
                w: 224,
                h: 224
            }
        );
        // Portrait: the width is the shorter side.
        assert_eq!(t.resize_size(375, 500), (256, 341));
        let img = RgbImage::filled(500, 375, [255, 0, 128]);
        let out = t.apply(&img).unwrap();
        assert_eq!(out.len(), 3 * 224 * 224);
        // A flat image stays flat through bicubic: 255 → 1, 0 → −1.
        assert_eq!((out[0], out[224 * 224]), (1.0, -1.0));
    }

    #[test]
    fn non_square_size_keeps_the_ratio_and_bad_input_is_an_error() {
        // size 112 × 224 → s = (128, 256); ratio = min(375/128, 500/256) = 1.953125, so
        // 500 × 375 → (256, 192).
        let t = EvalTransform::new(112, 224);
        assert_eq!(t.resize_size(500, 375), (256, 192));
        assert_eq!(
            t.apply(&RgbImage::filled(500, 375, [0; 3])).unwrap().len(),
            3 * 112 * 224
        );
        assert!(t.apply(&RgbImage::new(0, 0, vec![])).is_err());
        let mut bad = t;
        bad.crop_pct = 1.5;
        assert!(bad.apply(&RgbImage::filled(4, 4, [0; 3])).is_err());
    }
}
