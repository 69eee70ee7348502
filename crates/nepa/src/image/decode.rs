//! Decoding JPEG, PNG, WebP, GIF and BMP bytes to 8-bit RGB, with size guards checked from the
//! header before any pixel is decoded, and PNG encoding for outputs.

use std::io::Cursor;

use ::image::metadata::Orientation;
use ::image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use thiserror::Error;

use super::RgbImage;

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
