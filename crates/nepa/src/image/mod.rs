//! Image decoding and preprocessing, shared by the native trainer and the browser.
//!
//! Everything works on byte slices and plain pixel buffers (no file system), so the same code
//! runs natively and in wasm32.
//!
//! * [`decode`]: JPEG, PNG, WebP, GIF (first frame) and BMP bytes → 8-bit RGB, with alpha
//!   composited over white (as `transformers`' `convert_to_rgb` does), EXIF orientation applied,
//!   and a size guard ([`MAX_PIXELS`]) checked from the header before any pixel is decoded.
//!   [`decode_with_warnings`] also reports damage the decoder works around (a truncated
//!   JPEG).
//! * [`resize_bilinear`]: PIL's `Image.resize(..., BILINEAR)` reproduced bit for bit on 8-bit
//!   RGB (see its docs for what exactly is matched); [`resize_bicubic`] the same with PIL's
//!   bicubic kernel (the fine-tuning recipe's interpolation, `crate::recipe`).
//! * [`preprocess_eval`] (docs/nepa.md §7.2): resize to exactly H×W, bilinear, no crop, then
//!   `(x/255 − 0.5)/0.5`, CHW.
//! * [`augment_train`] (docs/nepa.md §4): torchvision `RandomResizedCrop` (bilinear) +
//!   `RandomHorizontalFlip(0.5)` + `ToTensor` + `Normalize(0.5, 0.5)`, drawing from a seeded
//!   [`SplitMix64`] so a run is reproducible on native and wasm alike.

use crate::rng::SplitMix64;

mod decode;
mod resize;

pub use decode::{
    ImageError, MAX_ALLOC_BYTES, MAX_PIXELS, TRUNCATED_JPEG_WARNING, decode, decode_with_warnings,
    from_gray, to_png,
};
use resize::resize_region;
pub use resize::{resize_bicubic, resize_bilinear, resize_region_bicubic};

/// An 8-bit RGB image: row-major, 3 bytes per pixel, no padding
/// (`pixels.len() == width * height * 3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// Wraps a pixel buffer. Panics if `pixels.len() != width * height * 3`.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Self {
        assert_eq!(
            pixels.len(),
            width * height * 3,
            "an RGB image of {width}×{height} needs {} bytes, got {}",
            width * height * 3,
            pixels.len()
        );
        Self {
            width,
            height,
            pixels,
        }
    }

    /// A `width × height` image filled with one colour.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        let pixels = rgb
            .iter()
            .copied()
            .cycle()
            .take(width * height * 3)
            .collect();
        Self::new(width, height, pixels)
    }

    /// The pixel at column `x`, row `y`. Panics when out of bounds.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        assert!(
            x < self.width && y < self.height,
            "pixel ({x}, {y}) is outside the image"
        );
        let i = (y * self.width + x) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// Sets the pixel at column `x`, row `y`. Panics when out of bounds.
    pub fn set_pixel(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        assert!(
            x < self.width && y < self.height,
            "pixel ({x}, {y}) is outside the image"
        );
        let i = (y * self.width + x) * 3;
        self.pixels[i..i + 3].copy_from_slice(&rgb);
    }

    /// RGBA bytes with opaque alpha: the layout of a canvas `ImageData`, so the browser can
    /// draw the very pixels the CLI writes as PNG.
    pub fn to_rgba(&self) -> Vec<u8> {
        self.pixels
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Normalisation and the two pipelines
// ---------------------------------------------------------------------------------------------

/// Normalises to CHW float: `(x/255 − 0.5)/0.5` per channel (mean = std = 0.5), so 0 → −1 and
/// 255 → 1. Layout: all R values row-major, then G, then B.
pub fn to_normalized_chw(img: &RgbImage) -> Vec<f32> {
    normalized_chw(img, false)
}

fn normalized_chw(img: &RgbImage, flip: bool) -> Vec<f32> {
    let (w, h) = (img.width, img.height);
    let plane = w * h;
    let mut out = vec![0.0f32; 3 * plane];
    for y in 0..h {
        for x in 0..w {
            let sx = if flip { w - 1 - x } else { x };
            let p = &img.pixels[(y * w + sx) * 3..(y * w + sx) * 3 + 3];
            for c in 0..3 {
                // ToTensor then Normalize(0.5, 0.5), in f32 as torchvision computes it.
                out[c * plane + y * w + x] = (f32::from(p[c]) / 255.0 - 0.5) / 0.5;
            }
        }
    }
    out
}

/// Evaluation preprocessing (docs/nepa.md §7.2, `ViTImageProcessor`): resize to exactly
/// `height × width` (no crop, aspect ratio not kept), bilinear, then normalise; CHW float with
/// `3 · height · width` values.
pub fn preprocess_eval(img: &RgbImage, height: usize, width: usize) -> Vec<f32> {
    to_normalized_chw(&resize_bilinear(img, width, height))
}

/// A crop rectangle: top-left corner `(x, y)`, size `w × h`, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropParams {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// Python's `round` (ties to even), as torchvision uses it, then `int`.
fn py_round(v: f64) -> i64 {
    v.round_ties_even() as i64
}

/// torchvision's `RandomResizedCrop.get_params`, step for step:
///
/// up to 10 attempts: `target_area = area · U(scale)`, `aspect = exp(U(ln ratio))`,
/// `w = round(√(target_area·aspect))`, `h = round(√(target_area/aspect))`; if
/// `0 < w ≤ width` and `0 < h ≤ height`, the top is `randint(0, height − h + 1)` then the left
/// `randint(0, width − w + 1)`. Otherwise the fallback: a central crop of the whole image,
/// narrowed to the nearest aspect ratio inside `ratio`.
///
/// Random numbers come from `rng` in the same order as torch draws them (scale, ratio, top,
/// left), computed in f64 rather than torch's f32, so the distribution is the same but the
/// stream is not torch's. Panics on an empty image.
pub fn random_resized_crop_params(
    rng: &mut SplitMix64,
    width: usize,
    height: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> CropParams {
    assert!(
        width > 0 && height > 0,
        "cannot crop an empty {width}×{height} image"
    );
    let area = (width * height) as f64;
    let (log_r0, log_r1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(log_r0, log_r1).exp();
        let w = py_round((target_area * aspect).sqrt());
        let h = py_round((target_area / aspect).sqrt());
        if 0 < w && w as usize <= width && 0 < h && h as usize <= height {
            let (w, h) = (w as usize, h as usize);
            let y = rng.below(height - h + 1);
            let x = rng.below(width - w + 1);
            return CropParams { x, y, w, h };
        }
    }
    // Fallback to a central crop.
    let in_ratio = width as f64 / height as f64;
    let (min_ratio, max_ratio) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (w, h) = if in_ratio < min_ratio {
        (
            width,
            (py_round(width as f64 / min_ratio).max(1) as usize).min(height),
        )
    } else if in_ratio > max_ratio {
        (
            (py_round(height as f64 * max_ratio).max(1) as usize).min(width),
            height,
        )
    } else {
        (width, height)
    };
    CropParams {
        x: (width - w) / 2,
        y: (height - h) / 2,
        w,
        h,
    }
}

/// Copies out the rectangle `p`. Panics if it is not inside the image.
pub fn crop(img: &RgbImage, p: CropParams) -> RgbImage {
    assert!(
        p.x + p.w <= img.width && p.y + p.h <= img.height,
        "crop {}×{} at ({}, {}) is outside the {}×{} image",
        p.w,
        p.h,
        p.x,
        p.y,
        img.width,
        img.height
    );
    let mut pixels = Vec::with_capacity(p.w * p.h * 3);
    for y in p.y..p.y + p.h {
        let row = (y * img.width + p.x) * 3;
        pixels.extend_from_slice(&img.pixels[row..row + p.w * 3]);
    }
    RgbImage::new(p.w, p.h, pixels)
}

/// Mirrors left ↔ right.
pub fn hflip(img: &RgbImage) -> RgbImage {
    let mut pixels = Vec::with_capacity(img.pixels.len());
    for y in 0..img.height {
        let row = &img.pixels[y * img.width * 3..(y + 1) * img.width * 3];
        for p in row.chunks_exact(3).rev() {
            pixels.extend_from_slice(p);
        }
    }
    RgbImage::new(img.width, img.height, pixels)
}

/// The pretraining augmentation (docs/nepa.md §4).
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// Range of the crop area as a fraction of the image area.
    pub scale: (f64, f64),
    /// Range of the crop aspect ratio (width / height), sampled log-uniformly.
    pub ratio: (f64, f64),
    /// Flip horizontally with probability 0.5.
    pub hflip: bool,
}

impl Default for Augment {
    /// torchvision's `RandomResizedCrop` defaults plus `RandomHorizontalFlip(0.5)`.
    fn default() -> Self {
        Self {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: true,
        }
    }
}

/// Training augmentation (docs/nepa.md §4): `RandomResizedCrop((height, width), scale, ratio,
/// BILINEAR)` → `RandomHorizontalFlip(0.5)` (one `rng.next_f64() < 0.5` draw after the crop
/// draws, skipped when `aug.hflip` is false) → `ToTensor` → `Normalize(0.5, 0.5)`. Returns CHW
/// float with `3 · height · width` values. Panics on an empty image.
pub fn augment_train(
    img: &RgbImage,
    height: usize,
    width: usize,
    aug: &Augment,
    rng: &mut SplitMix64,
) -> Vec<f32> {
    assert!(!img.is_empty(), "cannot augment an empty image");
    let p = random_resized_crop_params(rng, img.width, img.height, aug.scale, aug.ratio);
    let resized = resize_region(img, p.x, p.y, p.w, p.h, width, height);
    let flip = aug.hflip && rng.next_f64() < 0.5;
    normalized_chw(&resized, flip)
}
