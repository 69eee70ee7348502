//! PIL's `Image.resize(..., BILINEAR | BICUBIC)` on 8-bit RGB, reproduced bit for bit.

use super::RgbImage;

/// Fixed-point precision of PIL's 8-bit resampling (`PRECISION_BITS = 32 − 8 − 2`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per-output-pixel filter taps along one axis: the first input index, the tap count and
/// `ksize` fixed-point weights per output pixel.
struct Taps {
    start: Vec<usize>,
    count: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
}

/// The resampling kernels PIL offers that this crate uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    /// Triangle, support 1.
    Bilinear,
    /// Keys cubic with a = −0.5, support 2 (PIL's `bicubic_filter`).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// PIL's `precompute_coeffs` for `filter` on an input of `in_size` samples, followed by
/// `normalize_coeffs_8bpc`.
fn taps(in_size: usize, out_size: usize, filter: Filter) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    // Downscaling widens the filter by the scale factor (antialiasing); upscaling does not.
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv = 1.0 / filterscale;
    let mut taps = Taps {
        start: Vec::with_capacity(out_size),
        count: Vec::with_capacity(out_size),
        ksize,
        weights: vec![0; out_size * ksize],
    };
    let mut k = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `as i64` truncates toward zero like C's `(int)`; both ends are then clamped.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64)
            .min(in_size as i64)
            .max(xmin as i64) as usize;
        let n = xmax - xmin;
        let mut total = 0.0;
        for (x, w) in k.iter_mut().enumerate().take(n) {
            let t = ((x + xmin) as f64 - center + 0.5) * inv;
            *w = filter.eval(t);
            total += *w;
        }
        let row = &mut taps.weights[xx * ksize..(xx + 1) * ksize];
        for x in 0..n {
            let w = if total != 0.0 { k[x] / total } else { k[x] };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            row[x] = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        taps.start.push(xmin);
        taps.count.push(n);
    }
    taps
}

/// PIL's `clip8`: undo the fixed point (the rounding half was added up front) and saturate.
#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples the `w × h` region at `(x0, y0)` of `img` to `out_w × out_h`, as PIL resizes the
/// image `img.crop((x0, y0, x0 + w, y0 + h))`: horizontal pass, then vertical pass, each with
/// 8-bit rounding.
pub(super) fn resize_region(
    img: &RgbImage,
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
) -> RgbImage {
    resize_region_with(Filter::Bilinear, img, x0, y0, w, h, out_w, out_h)
}

/// [`resize_region`] with any of PIL's filters. Panics as it does.
#[allow(clippy::too_many_arguments)]
fn resize_region_with(
    filter: Filter,
    img: &RgbImage,
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
) -> RgbImage {
    assert!(
        x0 + w <= img.width && y0 + h <= img.height,
        "region {w}×{h} at ({x0}, {y0}) is outside the {}×{} image",
        img.width,
        img.height
    );
    if out_w == 0 || out_h == 0 {
        return RgbImage::new(out_w, out_h, Vec::new());
    }
    assert!(
        w > 0 && h > 0,
        "cannot resize an empty image to {out_w}×{out_h}"
    );
    let half = 1i64 << (PRECISION_BITS - 1);

    // Horizontal pass: rows y0..y0+h → `mid` (out_w × h). Skipped (copied) when the width does
    // not change, as PIL does.
    let mid: Vec<u8> = if out_w == w {
        let mut mid = Vec::with_capacity(w * h * 3);
        for y in y0..y0 + h {
            let row = (y * img.width + x0) * 3;
            mid.extend_from_slice(&img.pixels[row..row + w * 3]);
        }
        mid
    } else {
        let t = taps(w, out_w, filter);
        let mut mid = vec![0u8; out_w * h * 3];
        for (yy, y) in (y0..y0 + h).enumerate() {
            let row = &img.pixels[(y * img.width + x0) * 3..(y * img.width + x0 + w) * 3];
            let out = &mut mid[yy * out_w * 3..(yy + 1) * out_w * 3];
            for xx in 0..out_w {
                let k = &t.weights[xx * t.ksize..xx * t.ksize + t.count[xx]];
                let src = &row[t.start[xx] * 3..];
                let mut acc = [half; 3];
                for (x, &kw) in k.iter().enumerate() {
                    let kw = i64::from(kw);
                    acc[0] += i64::from(src[x * 3]) * kw;
                    acc[1] += i64::from(src[x * 3 + 1]) * kw;
                    acc[2] += i64::from(src[x * 3 + 2]) * kw;
                }
                out[xx * 3] = clip8(acc[0]);
                out[xx * 3 + 1] = clip8(acc[1]);
                out[xx * 3 + 2] = clip8(acc[2]);
            }
        }
        mid
    };

    // Vertical pass: `mid` (out_w × h) → out_w × out_h.
    if out_h == h {
        return RgbImage::new(out_w, out_h, mid);
    }
    let t = taps(h, out_h, filter);
    let stride = out_w * 3;
    let mut out = vec![0u8; out_w * out_h * 3];
    let mut acc = vec![0i64; stride];
    for yy in 0..out_h {
        acc.fill(half);
        let k = &t.weights[yy * t.ksize..yy * t.ksize + t.count[yy]];
        for (y, &kw) in k.iter().enumerate() {
            let kw = i64::from(kw);
            let src = &mid[(t.start[yy] + y) * stride..(t.start[yy] + y + 1) * stride];
            for (a, &s) in acc.iter_mut().zip(src) {
                *a += i64::from(s) * kw;
            }
        }
        for (o, &a) in out[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    RgbImage::new(out_w, out_h, out)
}

/// Resizes to `out_w × out_h` with PIL's bilinear filter (`Image.resize(size,
/// Image.BILINEAR)`, default `reducing_gap=None`), which is also what torchvision's `Resize`
/// and `RandomResizedCrop` do on PIL images.
///
/// What is matched, exactly (same integer arithmetic, so the bytes agree with Pillow; checked
/// against Pillow on several hundred random sizes, 1–500 px, up and down):
/// * pixel centres at half-integers: output pixel `i` samples input coordinate
///   `(i + 0.5)·in/out`;
/// * the triangle kernel `max(0, 1 − |t|)`; when downscaling its support is widened by the
///   factor `in/out` (antialiasing: every input pixel contributes), when upscaling it is the
///   plain 2-tap linear interpolation; taps beyond the edge are dropped and the remaining
///   weights renormalised (edges are not darkened);
/// * separable, horizontal pass first, then vertical, each rounded to 8 bits, with 22-bit
///   fixed-point weights as in Pillow's `ImagingResample`.
///
/// Pass order: this is Pillow up to 12.1 (all 2025 releases, the NEPA era), which always
/// resizes horizontally first. Pillow 12.2–12.3 go vertical-first for images more than 100×
/// taller than wide, and Pillow 13 whenever the height shrinks by more than twice as many
/// pixels as the width; the double rounding then differs by at most one grey level.
///
/// torchvision's tensor path (`antialias=True`) and `transformers`' fast image processor use
/// the same kernel in floating point (no intermediate rounding) and differ from this by about
/// one grey level at most. Panics when the image is empty but the output is not.
pub fn resize_bilinear(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    resize_region(img, 0, 0, img.width, img.height, out_w, out_h)
}

/// Resizes to `out_w × out_h` with PIL's bicubic filter (`Image.resize(size, Image.BICUBIC)`),
/// the interpolation of the fine-tuning recipe's crops and eval resize (timm's
/// `interpolation='bicubic'`, see `crate::recipe`).
///
/// The same arithmetic as [`resize_bilinear`] (half-integer pixel centres, the kernel widened
/// by `in/out` when downscaling, edge taps dropped and renormalised, 22-bit fixed point,
/// horizontal pass first, 8-bit rounding after each pass) with the Keys cubic kernel,
/// a = −0.5, support 2. Its negative lobes can overshoot, so each pass saturates to 0..=255
/// as Pillow's `clip8` does. Panics when the image is empty but the output is not.
pub fn resize_bicubic(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    resize_region_with(
        Filter::Bicubic,
        img,
        0,
        0,
        img.width,
        img.height,
        out_w,
        out_h,
    )
}

/// [`resize_bicubic`] of the rectangle `region` (PIL's `img.crop(box).resize(size, BICUBIC)`,
/// which is what torchvision's `resized_crop` does). Panics if `region` is not inside the
/// image, or is empty while the output is not.
pub fn resize_region_bicubic(
    img: &RgbImage,
    region: super::CropParams,
    out_w: usize,
    out_h: usize,
) -> RgbImage {
    resize_region_with(
        Filter::Bicubic,
        img,
        region.x,
        region.y,
        region.w,
        region.h,
        out_w,
        out_h,
    )
}

#[cfg(test)]
#[path = "resize_tests.rs"]
mod tests;
