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
//!   RGB (see its docs for what exactly is matched).
//! * [`preprocess_eval`] (spec §7.2): resize to exactly H×W, bilinear, no crop, then
//!   `(x/255 − 0.5)/0.5`, CHW.
//! * [`augment_train`] (spec §4): torchvision `RandomResizedCrop` (bilinear) +
//!   `RandomHorizontalFlip(0.5)` + `ToTensor` + `Normalize(0.5, 0.5)`, drawing from a seeded
//!   [`SplitMix64`] so a run is reproducible on native and wasm alike.

use std::io::Cursor;

use ::image::metadata::Orientation;
use ::image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use thiserror::Error;

use crate::rng::SplitMix64;

/// The largest image [`decode`] accepts, in pixels (width × height): 64 Mi ≈ 67.1 megapixels,
/// e.g. 8192 × 8192. Checked from the header, before the pixels are decoded, so a small file
/// that declares a huge image (a decompression bomb) is refused without allocating for it.
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Allocation ceiling handed to the decoders (`image::Limits::max_alloc`): 768 MiB. The largest
/// decoded buffer of an accepted image is `MAX_PIXELS` × 8 bytes (16-bit RGBA PNG) = 512 MiB;
/// this leaves room for the decoders' intermediate buffers. The conversion to 8-bit RGB then
/// adds `MAX_PIXELS` × 3 bytes and no more (no float intermediate).
pub const MAX_ALLOC_BYTES: u64 = MAX_PIXELS * 8 + 256 * 1024 * 1024;

/// The warning [`decode_with_warnings`] gives for a JPEG without its end-of-image marker.
pub const TRUNCATED_JPEG_WARNING: &str =
    "the JPEG data is truncated (no end-of-image marker): the missing part is shown grey";

/// Why an image could not be decoded. The messages are meant to be shown to users as they are.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The bytes are not in a format this crate decodes (JPEG, PNG, WebP, GIF, BMP).
    #[error("not an image (or an unsupported format): {0}")]
    NotAnImage(String),
    /// The format was recognised but the data is damaged, truncated or uses an unsupported
    /// feature of the format.
    #[error("the image data is corrupt or truncated: {0}")]
    Corrupt(String),
    /// The header declares more than [`MAX_PIXELS`] pixels.
    #[error(
        "the image is too large: {width} × {height} pixels, but at most {max_pixels} pixels \
         (about {} megapixels) are accepted",
        .max_pixels / 1_000_000
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// Decoding would exceed a limit of the decoders: the memory ceiling
    /// ([`MAX_ALLOC_BYTES`]) or the largest side. `limit` says which, with its value.
    #[error("the image is too large to decode: {format} decoding would exceed {limit}")]
    ExceedsLimit { format: &'static str, limit: String },
}

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

    fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes JPEG, PNG, WebP, GIF (first frame) or BMP bytes, the format guessed from the content.
///
/// Any colour type (grey, grey + alpha, palette, RGB, RGBA, 16-bit) becomes 8-bit RGB; alpha is
/// composited over white. The EXIF orientation (JPEG, PNG `eXIf`, WebP) is applied, so the
/// result is upright as a viewer shows it. Images with more than [`MAX_PIXELS`] pixels are
/// refused from their header ([`ImageError::TooLarge`]) before any pixel is decoded.
///
/// Damage the decoders tolerate (a truncated JPEG is decoded with its missing part grey) is
/// not reported here; [`decode_with_warnings`] reports it.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    decode_with_warnings(bytes).map(|(image, _)| image)
}

/// As [`decode`], also returning warnings about damage the decoder worked around, meant to be
/// shown to users (with the file name) as they are. Today: a JPEG whose data does not end
/// with the end-of-image marker ([`TRUNCATED_JPEG_WARNING`]).
pub fn decode_with_warnings(bytes: &[u8]) -> Result<(RgbImage, Vec<String>), ImageError> {
    decode_limited(bytes, MAX_ALLOC_BYTES)
}

/// [`decode_with_warnings`] with the decoders' allocation ceiling as a parameter (tests use a
/// small one to reach the limit error).
fn decode_limited(bytes: &[u8], max_alloc: u64) -> Result<(RgbImage, Vec<String>), ImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(ImageError::NotAnImage(describe_unknown(bytes)));
    };
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
    ) {
        return Err(ImageError::NotAnImage(format!(
            "{format:?} images are not supported (use JPEG, PNG, WebP, GIF or BMP)"
        )));
    }

    let mut limits = Limits::default();
    // A single side above MAX_PIXELS is over the area limit anyway; the decoders check these
    // while reading the header. The area itself is checked below, also before decoding.
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);

    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_error(e, format, max_alloc))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_pixels: MAX_PIXELS,
        });
    }
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt(format!(
            "the {} header declares an empty image ({width} × {height})",
            format_name(format)
        )));
    }
    // `from_decoder` allocates the whole output buffer without consulting the limits (only
    // `ImageReader::decode` reserves it), so the memory ceiling is checked here.
    if decoder.total_bytes() > max_alloc {
        use ::image::error::{LimitError, LimitErrorKind};
        let error = LimitError::from_kind(LimitErrorKind::InsufficientMemory);
        return Err(map_error(
            ::image::ImageError::Limits(error),
            format,
            max_alloc,
        ));
    }
    // A damaged EXIF block should not make an otherwise good image unreadable.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(|e| map_error(e, format, max_alloc))?;
    // Convert first, then orient: a rotation copies the image, and the 8-bit RGB copy is the
    // smallest one (3 bytes a pixel against up to 8 for 16-bit RGBA).
    let mut rgb = DynamicImage::ImageRgb8(to_rgb_over_white(image)?);
    rgb.apply_orientation(orientation);
    let rgb = rgb.into_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let image = RgbImage {
        width,
        height,
        pixels: rgb.into_raw(),
    };
    let mut warnings = Vec::new();
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        warnings.push(TRUNCATED_JPEG_WARNING.to_string());
    }
    Ok((image, warnings))
}

/// The largest side handed to the decoders: a single side above [`MAX_PIXELS`] is over the
/// area limit anyway.
const MAX_SIDE: u32 = if MAX_PIXELS > u32::MAX as u64 {
    u32::MAX
} else {
    MAX_PIXELS as u32
};

/// Whether JPEG data ends with the end-of-image marker `FF D9`, ignoring the zero or `FF`
/// padding some writers append. Without it the file was cut short, and the decoder fills
/// the missing rows with grey instead of failing.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0x00 && b != 0xFF)
        .map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xFF, 0xD9])
}

/// A readable description of bytes whose format could not be recognised.
fn describe_unknown(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the data is empty".to_string();
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!(
        "the format could not be recognised from its first bytes ({}); supported formats are \
         JPEG, PNG, WebP, GIF and BMP",
        head.join(" ")
    )
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Gif => "GIF",
        ImageFormat::Bmp => "BMP",
        _ => "image",
    }
}

fn map_error(error: ::image::ImageError, format: ImageFormat, max_alloc: u64) -> ImageError {
    use ::image::ImageError as E;
    use ::image::error::LimitErrorKind;
    let what = format!("{}: ", format_name(format));
    match error {
        E::Unsupported(e) => ImageError::NotAnImage(format!("{what}{e}")),
        // The limits are ours (see `decode_limited`): say which one, with its value, and
        // that the image is too large, not damaged.
        E::Limits(e) => ImageError::ExceedsLimit {
            format: format_name(format),
            limit: match e.kind() {
                LimitErrorKind::DimensionError => {
                    format!("the largest side the decoder accepts ({MAX_SIDE} pixels)")
                }
                LimitErrorKind::InsufficientMemory => format!(
                    "the decoding memory limit of {} MiB ({max_alloc} bytes)",
                    max_alloc >> 20
                ),
                other => format!("a decoder limit ({other:?})"),
            },
        },
        E::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageError::Corrupt(format!("{what}the data ends early (truncated file?)"))
        }
        e => ImageError::Corrupt(format!("{what}{}", tidy(&e.to_string()))),
    }
}

/// Drops the `image` crate's "Format error decoding Png: " prefix (the format is already
/// named) and trailing whitespace.
fn tidy(message: &str) -> &str {
    let message = message.trim();
    match message.strip_prefix("Format error decoding ") {
        Some(rest) => rest.split_once(": ").map_or(rest, |(_, m)| m).trim(),
        None => message,
    }
}

/// Converts any decoded colour type to 8-bit RGB, compositing alpha over white.
///
/// Works sample by sample on the decoded buffer, in integer arithmetic: no intermediate
/// image (a 16-bit RGBA image through RGBA f32 would take 16 bytes a pixel, twice the
/// decoded buffer).
fn to_rgb_over_white(image: DynamicImage) -> Result<::image::RgbImage, ImageError> {
    let (width, height) = (image.width(), image.height());
    if !image.color().has_alpha() {
        // Without alpha the `image` crate's conversion is direct (a move for RGB8).
        return Ok(image.into_rgb8());
    }
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    match &image {
        DynamicImage::ImageLumaA8(b) => over_white(&mut pixels, b.as_raw(), 2, 255, u64::from),
        DynamicImage::ImageRgba8(b) => over_white(&mut pixels, b.as_raw(), 4, 255, u64::from),
        DynamicImage::ImageLumaA16(b) => over_white(&mut pixels, b.as_raw(), 2, 65535, u64::from),
        DynamicImage::ImageRgba16(b) => over_white(&mut pixels, b.as_raw(), 4, 65535, u64::from),
        DynamicImage::ImageRgba32F(b) => {
            over_white(&mut pixels, b.as_raw(), 4, 65535, |v: f32| {
                // NaN clamps to 0 through `as`.
                (v.clamp(0.0, 1.0) * 65535.0).round() as u64
            })
        }
        // A colour type added to `image` later: its 16-bit conversion is exact for every
        // integer type and at most 8 bytes a pixel.
        other => over_white(&mut pixels, other.to_rgba16().as_raw(), 4, 65535, u64::from),
    }
    ::image::RgbImage::from_raw(width, height, pixels).ok_or_else(|| {
        ImageError::Corrupt(format!(
            "the decoded {width} × {height} image has an unexpected number of samples"
        ))
    })
}

/// Appends the RGB pixels of `samples` (grey + alpha when `channels` is 2, RGBA when 4, each
/// sample in `0..=max` after `value`) composited over white:
/// `round((c·a + max·(max − a)) / max · 255 / max)`, exact in u64.
fn over_white<T: Copy>(
    out: &mut Vec<u8>,
    samples: &[T],
    channels: usize,
    max: u64,
    value: impl Fn(T) -> u64,
) {
    let denominator = max * max;
    let blend = |c: u64, a: u64| {
        let numerator = (c.min(max) * a + max * (max - a)) * 255;
        ((numerator + denominator / 2) / denominator) as u8
    };
    for p in samples.chunks_exact(channels) {
        let a = value(p[channels - 1]).min(max);
        if channels == 2 {
            let v = blend(value(p[0]), a);
            out.extend_from_slice(&[v, v, v]);
        } else {
            for &c in &p[..3] {
                out.push(blend(value(c), a));
            }
        }
    }
}

/// Replicates a grey image (e.g. an idx data set such as Fashion-MNIST) to three channels.
/// Panics if `gray.len() != width * height`.
pub fn from_gray(width: usize, height: usize, gray: &[u8]) -> RgbImage {
    assert_eq!(
        gray.len(),
        width * height,
        "a grey image of {width}×{height} needs {} bytes, got {}",
        width * height,
        gray.len()
    );
    let pixels = gray.iter().flat_map(|&g| [g, g, g]).collect();
    RgbImage::new(width, height, pixels)
}

/// Encodes as an 8-bit RGB PNG. Panics on an empty image or one wider or taller than
/// `u32::MAX` (the PNG format cannot hold either).
pub fn to_png(img: &RgbImage) -> Vec<u8> {
    use ::image::ImageEncoder;
    use ::image::codecs::png::PngEncoder;
    let width = u32::try_from(img.width).expect("PNG width must fit in u32");
    let height = u32::try_from(img.height).expect("PNG height must fit in u32");
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(&img.pixels, width, height, ::image::ExtendedColorType::Rgb8)
        .expect("encoding a non-empty RGB8 image as PNG into memory cannot fail");
    out
}

// ---------------------------------------------------------------------------------------------
// Resampling (PIL's bilinear, antialiased)
// ---------------------------------------------------------------------------------------------

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

/// PIL's `precompute_coeffs` for the triangle (bilinear) filter, support 1, on an input of
/// `in_size` samples, followed by `normalize_coeffs_8bpc`.
fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    // Downscaling widens the filter by the scale factor (antialiasing); upscaling does not.
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support (1.0) × filterscale
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
            *w = (1.0 - t.abs()).max(0.0);
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
fn resize_region(
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
        let t = taps(w, out_w);
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
    let t = taps(h, out_h);
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

/// Evaluation preprocessing (spec §7.2, `ViTImageProcessor`): resize to exactly
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

/// The pretraining augmentation (spec §4).
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

/// Training augmentation (spec §4): `RandomResizedCrop((height, width), scale, ratio,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tripped_decoder_limit_says_too_large_and_names_the_limit() {
        let png = to_png(&RgbImage::filled(64, 64, [1, 2, 3]));
        assert!(decode_limited(&png, MAX_ALLOC_BYTES).is_ok());
        let Err(e) = decode_limited(&png, 1000) else {
            panic!("decoded past the memory limit");
        };
        assert!(matches!(e, ImageError::ExceedsLimit { .. }), "{e:?}");
        let message = e.to_string();
        assert!(
            message.contains("too large") && message.contains("1000 bytes"),
            "{message}"
        );
    }

    #[test]
    fn the_jpeg_end_marker_is_found_past_padding() {
        assert!(jpeg_has_end_marker(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9]));
        assert!(jpeg_has_end_marker(&[0xFF, 0xD8, 0xFF, 0xD9, 0, 0, 0xFF]));
        assert!(!jpeg_has_end_marker(&[0xFF, 0xD8, 1, 2, 3]));
        assert!(!jpeg_has_end_marker(&[0xFF, 0xD8, 0xD9, 0, 0]));
        assert!(!jpeg_has_end_marker(&[]));
        assert!(!jpeg_has_end_marker(&[0xFF, 0xFF]));
    }

    #[test]
    fn sixteen_bit_alpha_is_composited_in_integer_arithmetic() {
        // The exact rule, checked against the float formula on a grid of values.
        let mut samples = Vec::new();
        for c in (0..=65535u32).step_by(4099) {
            for a in (0..=65535u32).step_by(3001) {
                samples.extend_from_slice(&[c as u16, c as u16, c as u16, a as u16]);
            }
        }
        let mut out = Vec::new();
        over_white(&mut out, &samples, 4, 65535, u64::from);
        for (p, o) in samples.chunks_exact(4).zip(out.chunks_exact(3)) {
            let (c, a) = (f64::from(p[0]) / 65535.0, f64::from(p[3]) / 65535.0);
            let float = ((c * a + 1.0 - a) * 255.0).round();
            assert!((f64::from(o[0]) - float).abs() <= 1.0, "{p:?} → {o:?}");
        }
    }
}
