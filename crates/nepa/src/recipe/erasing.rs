//! Random erasing (docs/nepa.md §5: "random erasing 0.25"), as timm's
//! `RandomErasing(probability, mode='pixel', max_count=1)` on a normalised CHW image.

use crate::error::NepaError;
use crate::rng::SplitMix64;

/// timm's `RandomErasing` with one box (`min_count = max_count = 1`) filled with per-pixel
/// N(0, 1) values (`mode='pixel'`), which is noise at the scale of the normalised image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomErasing {
    pub probability: f64,
    /// Box area range as a fraction of the image area.
    pub min_area: f64,
    pub max_area: f64,
    /// Aspect ratio (h / w) range, sampled log-uniformly; the upper end is `1 / min_aspect`.
    pub min_aspect: f64,
}

/// An erased rectangle: rows `top..top + h`, columns `left..left + w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EraseBox {
    pub top: usize,
    pub left: usize,
    pub h: usize,
    pub w: usize,
}

impl RandomErasing {
    /// The official fine-tuning values: probability 0.25, area 2 %–⅓, aspect 0.3–3.3.
    pub fn official() -> Self {
        Self {
            probability: 0.25,
            min_area: 0.02,
            max_area: 1.0 / 3.0,
            min_aspect: 0.3,
        }
    }

    /// Erases at most one box of the `channels × height × width` image `chw` in place and
    /// returns it. As timm: with probability `probability`, up to 10 attempts of
    /// `area = U(min_area, max_area)·H·W`, `aspect = exp(U(ln a, −ln a))`,
    /// `h = round(√(area·aspect))`, `w = round(√(area/aspect))`; the first box with `h < H` and
    /// `w < W` is placed at `top = randint(0, H − h)`, `left = randint(0, W − w)` (inclusive).
    pub fn apply(
        &self,
        chw: &mut [f32],
        channels: usize,
        height: usize,
        width: usize,
        rng: &mut SplitMix64,
    ) -> Result<Option<EraseBox>, NepaError> {
        let valid = (0.0..=1.0).contains(&self.probability)
            && 0.0 <= self.min_area
            && self.min_area <= self.max_area
            && self.max_area <= 1.0
            && self.min_aspect > 0.0
            && self.min_aspect.is_finite();
        if !valid {
            return Err(NepaError::Config(format!(
                "random erasing: need probability in [0, 1], 0 ≤ min_area ≤ max_area ≤ 1 and \
                 min_aspect > 0 (got {self:?})"
            )));
        }
        if channels
            .checked_mul(height)
            .and_then(|v| v.checked_mul(width))
            != Some(chw.len())
        {
            return Err(NepaError::Input(format!(
                "random erasing: {channels}×{height}×{width} does not match {} values",
                chw.len()
            )));
        }
        // timm erases when `random() <= probability`; `<` differs only on a measure-zero draw
        // and makes probability 0 mean never.
        if rng.next_f64() >= self.probability {
            return Ok(None);
        }
        let area = (height * width) as f64;
        let (lo, hi) = (self.min_aspect.ln(), -self.min_aspect.ln());
        for _ in 0..10 {
            let target = rng.uniform(self.min_area, self.max_area) * area;
            let aspect = rng.uniform(lo.min(hi), lo.max(hi)).exp();
            let h = (target * aspect).sqrt().round_ties_even() as usize;
            let w = (target / aspect).sqrt().round_ties_even() as usize;
            if h < height && w < width {
                let top = rng.below(height - h + 1);
                let left = rng.below(width - w + 1);
                let plane = height * width;
                for c in 0..channels {
                    for y in top..top + h {
                        let row = c * plane + y * width;
                        for v in &mut chw[row + left..row + left + w] {
                            *v = rng.normal() as f32;
                        }
                    }
                }
                return Ok(Some(EraseBox { top, left, h, w }));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erased_box_is_inside_and_sized_as_asked() {
        let mut e = RandomErasing::official();
        e.probability = 1.0;
        let (c, h, w) = (3, 40, 50);
        for seed in 0..50 {
            let mut img = vec![7.0f32; c * h * w];
            let b = e
                .apply(&mut img, c, h, w, &mut SplitMix64::new(seed))
                .unwrap()
                .expect("probability 1 erases");
            assert!(b.top + b.h <= h && b.left + b.w <= w, "{b:?}");
            // The rounded box is within half a pixel per side of the drawn area, which lies
            // in [0.02, 1/3] of the image (2000 px): [40, 666.7] ± (h + w)/2 + 1/4.
            let slack = (b.h + b.w) as f64 / 2.0 + 0.25;
            let area = (b.h * b.w) as f64;
            assert!(
                area >= 40.0 - slack && area <= 2000.0 / 3.0 + slack,
                "{b:?}"
            );
            // Exactly the box changed, in every channel.
            let changed = img.iter().filter(|&&v| v != 7.0).count();
            assert_eq!(changed, c * b.h * b.w);
            let inside = img[(b.top + b.h / 2) * w + b.left + b.w / 2];
            assert_ne!(inside, 7.0);
        }
    }

    #[test]
    fn probability_zero_never_erases_and_bad_shapes_are_errors() {
        let mut e = RandomErasing::official();
        e.probability = 0.0;
        let mut img = vec![1.0f32; 12];
        let mut rng = SplitMix64::new(1);
        assert_eq!(e.apply(&mut img, 3, 2, 2, &mut rng).unwrap(), None);
        assert!(img.iter().all(|&v| v == 1.0));
        assert!(e.apply(&mut img, 3, 2, 3, &mut rng).is_err());
        e.max_area = 2.0;
        assert!(e.apply(&mut img, 3, 2, 2, &mut rng).is_err());
    }
}
