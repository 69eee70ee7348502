//! The RandAugment image operations, each as Pillow computes it on 8-bit RGB (`ImageOps`,
//! `ImageEnhance`, `Image.transform(AFFINE)`), which is what timm's `auto_augment` calls.

use crate::image::RgbImage;

/// Applies a per-channel lookup table.
fn map(img: &RgbImage, luts: &[[u8; 256]; 3]) -> RgbImage {
    let mut out = img.clone();
    for (i, p) in out.pixels.iter_mut().enumerate() {
        *p = luts[i % 3][usize::from(*p)];
    }
    out
}

fn same_lut(f: impl Fn(u8) -> u8) -> [[u8; 256]; 3] {
    let lut: [u8; 256] = std::array::from_fn(|i| f(i as u8));
    [lut; 3]
}

fn histograms(img: &RgbImage) -> [[u64; 256]; 3] {
    let mut h = [[0u64; 256]; 3];
    for (i, &p) in img.pixels.iter().enumerate() {
        h[i % 3][usize::from(p)] += 1;
    }
    h
}

pub fn invert(img: &RgbImage) -> RgbImage {
    map(img, &same_lut(|v| 255 - v))
}

/// `ImageOps.posterize`: keep the top `bits` bits (8 or more: unchanged).
pub fn posterize(img: &RgbImage, bits: u32) -> RgbImage {
    if bits >= 8 {
        return img.clone();
    }
    let mask = !((1u8 << (8 - bits)) - 1);
    map(img, &same_lut(|v| v & mask))
}

/// `ImageOps.solarize`: invert values at or above `threshold` (256: unchanged).
pub fn solarize(img: &RgbImage, threshold: u32) -> RgbImage {
    map(
        img,
        &same_lut(|v| {
            if u32::from(v) >= threshold {
                255 - v
            } else {
                v
            }
        }),
    )
}

/// timm's `solarize_add`: add `add` (saturating) to values below 128.
pub fn solarize_add(img: &RgbImage, add: u32) -> RgbImage {
    map(
        img,
        &same_lut(|v| {
            if v < 128 {
                (u32::from(v) + add).min(255) as u8
            } else {
                v
            }
        }),
    )
}

/// `ImageOps.autocontrast(cutoff=0)`: per channel, stretch [lo, hi] to [0, 255] with
/// `int(v·scale + offset)`; a channel with one value is left alone.
pub fn autocontrast(img: &RgbImage) -> RgbImage {
    let h = histograms(img);
    let luts = std::array::from_fn(|c| {
        let lo = h[c].iter().position(|&n| n > 0);
        let hi = h[c].iter().rposition(|&n| n > 0);
        match (lo, hi) {
            (Some(lo), Some(hi)) if hi > lo => {
                let scale = 255.0 / (hi - lo) as f64;
                let offset = -(lo as f64) * scale;
                std::array::from_fn(|v| (v as f64 * scale + offset).clamp(0.0, 255.0) as u8)
            }
            _ => std::array::from_fn(|v| v as u8),
        }
    });
    map(img, &luts)
}

/// `ImageOps.equalize`: per channel, `step = (n − count of the last used value) // 256` and
/// `lut[i] = (step // 2 + Σ_{j<i} h[j]) // step`; identity when `step` is 0.
pub fn equalize(img: &RgbImage) -> RgbImage {
    let h = histograms(img);
    let luts = std::array::from_fn(|c| {
        let last = h[c].iter().rev().find(|&&n| n > 0).copied().unwrap_or(0);
        let step = (h[c].iter().sum::<u64>() - last) / 256;
        if step == 0 {
            return std::array::from_fn(|v| v as u8);
        }
        let mut n = step / 2;
        std::array::from_fn(|i| {
            let v = (n / step).min(255) as u8;
            n += h[c][i];
            v
        })
    });
    map(img, &luts)
}

/// Pillow's `Image.blend(degenerate, img, factor)` (what every `ImageEnhance` does):
/// `in1 + factor·(in2 − in1)` in single precision, clipped and truncated.
fn blend(degenerate: &RgbImage, img: &RgbImage, factor: f64) -> RgbImage {
    let alpha = factor as f32;
    let pixels = degenerate
        .pixels
        .iter()
        .zip(&img.pixels)
        .map(|(&a, &b)| {
            let a = f32::from(a);
            (a + alpha * (f32::from(b) - a)).clamp(0.0, 255.0) as u8
        })
        .collect();
    RgbImage::new(img.width, img.height, pixels)
}

/// Pillow's RGB → L: `(19595·R + 38470·G + 7471·B + 0x8000) >> 16`.
fn luma(p: &[u8]) -> u8 {
    ((19595 * u32::from(p[0]) + 38470 * u32::from(p[1]) + 7471 * u32::from(p[2]) + 0x8000) >> 16)
        as u8
}

/// `ImageEnhance.Color`: blend with the greyscale image.
pub fn color(img: &RgbImage, factor: f64) -> RgbImage {
    let grey = img
        .pixels
        .chunks_exact(3)
        .flat_map(|p| [luma(p); 3])
        .collect();
    blend(&RgbImage::new(img.width, img.height, grey), img, factor)
}

/// `ImageEnhance.Contrast`: blend with a flat image at the rounded mean luma.
pub fn contrast(img: &RgbImage, factor: f64) -> RgbImage {
    let n = (img.width * img.height).max(1) as f64;
    let sum: u64 = img.pixels.chunks_exact(3).map(|p| u64::from(luma(p))).sum();
    let mean = (sum as f64 / n + 0.5) as u8;
    blend(
        &RgbImage::filled(img.width, img.height, [mean; 3]),
        img,
        factor,
    )
}

/// `ImageEnhance.Brightness`: blend with black.
pub fn brightness(img: &RgbImage, factor: f64) -> RgbImage {
    blend(
        &RgbImage::filled(img.width, img.height, [0; 3]),
        img,
        factor,
    )
}

/// `ImageEnhance.Sharpness`: blend with `ImageFilter.SMOOTH` (3×3 kernel of ones with 5 in
/// the centre, / 13, rounded; the border rows and columns are copied unchanged).
pub fn sharpness(img: &RgbImage, factor: f64) -> RgbImage {
    let (w, h) = (img.width, img.height);
    let mut smooth = img.clone();
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            for c in 0..3 {
                let mut s = 0.0f32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let k = if dx == 1 && dy == 1 { 5.0 } else { 1.0 };
                        let v = img.pixels[((y + dy - 1) * w + x + dx - 1) * 3 + c];
                        s += f32::from(v) * (k / 13.0);
                    }
                }
                smooth.pixels[(y * w + x) * 3 + c] = (s + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
    }
    blend(&smooth, img, factor)
}

/// Pillow's `Image.transform(size, AFFINE, m, BILINEAR, fillcolor=fill)`: output pixel
/// `(x, y)` samples the input at `(m0·x' + m1·y' + m2, m3·x' + m4·y' + m5)` with
/// `x' = x + 0.5`, `y' = y + 0.5`, bilinearly (neighbours clamped to the edge, truncated to
/// 8 bits); samples outside the input get `fill`.
pub fn affine(img: &RgbImage, m: [f64; 6], fill: [u8; 3]) -> RgbImage {
    let (w, h) = (img.width, img.height);
    let mut out = RgbImage::filled(w, h, fill);
    let px = |x: i64, y: i64, c: usize| {
        let x = x.clamp(0, w as i64 - 1) as usize;
        let y = y.clamp(0, h as i64 - 1) as usize;
        f64::from(img.pixels[(y * w + x) * 3 + c])
    };
    for y in 0..h {
        for x in 0..w {
            let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
            let xin = m[0] * xo + m[1] * yo + m[2];
            let yin = m[3] * xo + m[4] * yo + m[5];
            if !(0.0..w as f64).contains(&xin) || !(0.0..h as f64).contains(&yin) {
                continue;
            }
            let (xs, ys) = (xin - 0.5, yin - 0.5);
            let (x0, y0) = (xs.floor() as i64, ys.floor() as i64);
            let (dx, dy) = (xs - x0 as f64, ys - y0 as f64);
            for c in 0..3 {
                let v1 = px(x0, y0, c) + (px(x0 + 1, y0, c) - px(x0, y0, c)) * dx;
                // Pillow reuses the first row when the second is outside the image.
                let v2 = if y0 + 1 < h as i64 {
                    px(x0, y0 + 1, c) + (px(x0 + 1, y0 + 1, c) - px(x0, y0 + 1, c)) * dx
                } else {
                    v1
                };
                out.pixels[(y * w + x) * 3 + c] = (v1 + (v2 - v1) * dy) as u8;
            }
        }
    }
    out
}

/// `Image.rotate(degrees, BILINEAR, fillcolor=fill)` about the centre, same size.
pub fn rotate(img: &RgbImage, degrees: f64, fill: [u8; 3]) -> RgbImage {
    if degrees.rem_euclid(360.0) == 0.0 {
        return img.clone();
    }
    // Pillow rounds the matrix entries to 15 decimals.
    let r15 = |v: f64| (v * 1e15).round() / 1e15;
    let a = -degrees.to_radians();
    let (cos, sin) = (r15(a.cos()), r15(a.sin()));
    let (cx, cy) = (img.width as f64 / 2.0, img.height as f64 / 2.0);
    let m2 = cos * -cx + sin * -cy + cx;
    let m5 = -sin * -cx + cos * -cy + cy;
    affine(img, [cos, sin, m2, -sin, cos, m5], fill)
}
