//! Decoding and preprocessing (`nepa::image`): formats, colour conversion, EXIF orientation,
//! error kinds, the size guard, PIL-exact bilinear resampling, normalisation and the
//! RandomResizedCrop + flip augmentation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, Rgba};
use nepa::SplitMix64;
use nepa::image::{
    Augment, CropParams, ImageError, MAX_PIXELS, RgbImage, augment_train, crop, decode, from_gray,
    hflip, preprocess_eval, random_resized_crop_params, resize_bilinear, to_normalized_chw, to_png,
};

// ---------------------------------------------------------------------------------------------
// An allocator that records the largest single allocation made by the current thread while
// tracking is on (thread-local, so tests running in parallel do not disturb each other).
// ---------------------------------------------------------------------------------------------

struct TrackingAlloc;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

/// Runs `f` and returns its result with the largest single allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    (out, LARGEST.with(|l| l.get()))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A deterministic "random-looking" RGB image (the same formula generated the Pillow
/// reference values below).
fn pattern(w: usize, h: usize) -> RgbImage {
    let pixels = (0..w * h * 3)
        .map(|i| ((i * i * 7 + i * 31 + 5) % 256) as u8)
        .collect();
    RgbImage::new(w, h, pixels)
}

/// An image whose every pixel differs: R = x·s, G = y·s, B = const.
fn gradient(w: usize, h: usize) -> RgbImage {
    let mut pixels = Vec::new();
    for y in 0..h {
        for x in 0..w {
            pixels.extend_from_slice(&[(x * 7 % 256) as u8, (y * 11 % 256) as u8, 77]);
        }
    }
    RgbImage::new(w, h, pixels)
}

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .unwrap_or_else(|e| panic!("encoding {format:?}: {e}"));
    out.into_inner()
}

fn as_dynamic(img: &RgbImage) -> DynamicImage {
    DynamicImage::ImageRgb8(
        ImageBuffer::<Rgb<u8>, _>::from_raw(
            img.width as u32,
            img.height as u32,
            img.pixels.clone(),
        )
        .unwrap(),
    )
}

/// A 48×32 image: the top-left 16×16 block red, everything else blue (blocks aligned to JPEG
/// MCUs, so lossy coding keeps the colours clearly apart).
fn red_corner() -> RgbImage {
    let mut img = RgbImage::filled(48, 32, [0, 0, 255]);
    for y in 0..16 {
        for x in 0..16 {
            let i = (y * 48 + x) * 3;
            img.pixels[i..i + 3].copy_from_slice(&[255, 0, 0]);
        }
    }
    img
}

fn is_red(p: [u8; 3]) -> bool {
    p[0] > 200 && p[1] < 60 && p[2] < 60
}

fn is_blue(p: [u8; 3]) -> bool {
    p[0] < 60 && p[1] < 60 && p[2] > 200
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG whose (valid, CRC-checked) header declares `w × h` RGB8 pixels, with a tiny IDAT.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, adaptive filter, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A BMP (BITMAPINFOHEADER, 24-bit) declaring `w × h` pixels and holding none.
fn bmp_header_only(w: i32, h: i32) -> Vec<u8> {
    let mut out = b"BM".to_vec();
    out.extend_from_slice(&54u32.to_le_bytes()); // file size (not checked)
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&54u32.to_le_bytes()); // pixel data offset
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]); // compression, size, resolution, palette counts
    out
}

/// The EXIF APP1 segment `FF E1 …` holding only Orientation = `orientation` (big-endian TIFF).
fn exif_app1(orientation: u16) -> Vec<u8> {
    let mut body = b"Exif\0\0".to_vec();
    body.extend_from_slice(b"MM\x00\x2a\x00\x00\x00\x08"); // TIFF header, IFD0 at offset 8
    body.extend_from_slice(&1u16.to_be_bytes()); // one entry
    body.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    body.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    body.extend_from_slice(&1u32.to_be_bytes()); // count
    body.extend_from_slice(&orientation.to_be_bytes());
    body.extend_from_slice(&[0, 0]); // value padding
    body.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut out = vec![0xFF, 0xE1];
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "not a JPEG");
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&exif_app1(orientation));
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn max_abs_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    a.pixels
        .iter()
        .zip(&b.pixels)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

#[test]
fn decodes_lossless_formats_exactly() {
    let img = gradient(37, 23);
    // PNG, BMP and WebP (the `webp` feature's encoder is lossless) round-trip bit for bit.
    for format in [ImageFormat::Png, ImageFormat::Bmp, ImageFormat::WebP] {
        let bytes = encode(as_dynamic(&img), format);
        let out = decode(&bytes).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(out, img, "{format:?} did not round-trip");
    }
    // Our own PNG encoder too.
    assert_eq!(decode(&to_png(&img)).unwrap(), img);
}

#[test]
fn decodes_jpeg_and_gif_approximately() {
    // Smooth content: JPEG is lossy and GIF quantises to a 256-colour palette.
    let img = gradient(40, 24);
    let jpeg = encode(as_dynamic(&img), ImageFormat::Jpeg);
    let out = decode(&jpeg).unwrap();
    assert_eq!((out.width, out.height), (40, 24));
    assert!(max_abs_diff(&out, &img) < 40, "JPEG too far off");

    let flat = red_corner();
    let gif = encode(as_dynamic(&flat), ImageFormat::Gif);
    let out = decode(&gif).unwrap();
    assert_eq!((out.width, out.height), (48, 32));
    assert!(max_abs_diff(&out, &flat) <= 8, "GIF too far off");
}

#[test]
fn gif_decodes_the_first_frame() {
    use image::codecs::gif::GifEncoder;
    use image::{Delay, Frame};
    let red = ImageBuffer::from_pixel(8, 8, Rgba([255u8, 0, 0, 255]));
    let green = ImageBuffer::from_pixel(8, 8, Rgba([0u8, 255, 0, 255]));
    let mut bytes = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut bytes);
        for buf in [red, green] {
            enc.encode_frame(Frame::from_parts(
                buf,
                0,
                0,
                Delay::from_numer_denom_ms(100, 1),
            ))
            .unwrap();
        }
    }
    let out = decode(&bytes).unwrap();
    assert_eq!((out.width, out.height), (8, 8));
    assert!(out.pixels.chunks(3).all(|p| is_red([p[0], p[1], p[2]])));
}

#[test]
fn grayscale_is_replicated_to_rgb() {
    let gray = ImageBuffer::from_fn(5, 4, |x, y| Luma([(x * 50 + y) as u8]));
    let bytes = encode(DynamicImage::ImageLuma8(gray.clone()), ImageFormat::Png);
    let out = decode(&bytes).unwrap();
    assert_eq!(out, from_gray(5, 4, gray.as_raw()));
    assert_eq!(out.pixel(3, 2), [152, 152, 152]);

    // 16-bit grey: 0xFFFF → 255, 0 → 0, 0x8080 → 128.
    let gray16 = ImageBuffer::from_fn(3, 1, |x, _| Luma([[0u16, 0x8080, 0xFFFF][x as usize]]));
    let out = decode(&encode(DynamicImage::ImageLuma16(gray16), ImageFormat::Png)).unwrap();
    assert_eq!(out.pixels, vec![0, 0, 0, 128, 128, 128, 255, 255, 255]);
}

#[test]
fn alpha_is_composited_over_white() {
    // Opaque, fully transparent, half-transparent black, half-transparent red.
    let px = [
        [10u8, 20, 30, 255],
        [10, 20, 30, 0],
        [0, 0, 0, 128],
        [255, 0, 0, 51],
    ];
    let rgba = ImageBuffer::from_fn(4, 1, |x, _| Rgba(px[x as usize]));
    let out = decode(&encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Png)).unwrap();
    // round((c·a + 255·(255 − a))/255): 0 over white at a = 128 → 127; red at a = 51 → (255, 204, 204).
    assert_eq!(
        out.pixels,
        vec![10, 20, 30, 255, 255, 255, 127, 127, 127, 255, 204, 204]
    );

    // Grey + alpha and 16-bit RGBA take the same rule.
    let la = ImageBuffer::from_fn(2, 1, |x, _| LumaA([[0u8, 0], [100, 255]][x as usize]));
    let out = decode(&encode(DynamicImage::ImageLumaA8(la), ImageFormat::Png)).unwrap();
    assert_eq!(out.pixels, vec![255, 255, 255, 100, 100, 100]);

    let rgba16 = ImageBuffer::from_fn(2, 1, |x, _| {
        Rgba([[0u16, 0, 0, 0xFFFF], [0, 0, 0, 0x8000]][x as usize])
    });
    let out = decode(&encode(DynamicImage::ImageRgba16(rgba16), ImageFormat::Png)).unwrap();
    assert_eq!(out.pixels, vec![0, 0, 0, 127, 127, 127]);

    // WebP with alpha (lossless encoder).
    let rgba = ImageBuffer::from_fn(2, 2, |x, _| {
        Rgba([[0u8, 0, 255, 255], [0, 0, 255, 0]][x as usize])
    });
    let out = decode(&encode(DynamicImage::ImageRgba8(rgba), ImageFormat::WebP)).unwrap();
    assert_eq!(out.pixel(0, 1), [0, 0, 255]);
    assert_eq!(out.pixel(1, 1), [255, 255, 255]);
}

#[test]
fn sixteen_bit_alpha_is_converted_without_a_float_copy() {
    // Converting through RGBA f32 took 16 bytes a pixel, twice the decoded 16-bit buffer.
    let (w, h) = (256u32, 128u32);
    let rgba16 = ImageBuffer::from_fn(w, h, |x, y| {
        Rgba([
            (x * 256) as u16,
            (y * 512) as u16,
            0,
            ((x + y) * 170) as u16,
        ])
    });
    let png = encode(DynamicImage::ImageRgba16(rgba16), ImageFormat::Png);
    let (out, largest) = largest_allocation(|| decode(&png).unwrap());
    assert_eq!((out.width, out.height), (256, 128));
    let pixels = (w * h) as usize;
    assert!(
        largest <= pixels * 8 + 64 * 1024,
        "largest allocation {largest} bytes for {pixels} pixels"
    );
}

#[test]
fn exif_orientation_6_rotates_clockwise() {
    let stored = red_corner(); // 48 wide × 32 high, red block top-left
    let jpeg = encode(as_dynamic(&stored), ImageFormat::Jpeg);

    // Without EXIF: as stored.
    let plain = decode(&jpeg).unwrap();
    assert_eq!((plain.width, plain.height), (48, 32));
    assert!(is_red(plain.pixel(8, 8)) && is_blue(plain.pixel(40, 8)));

    // Orientation 6 (rotate 90° clockwise to display): 32 wide × 48 high and the red block
    // moves from the top-left to the top-right corner.
    let rotated = decode(&with_exif(&jpeg, 6)).unwrap();
    assert_eq!((rotated.width, rotated.height), (32, 48));
    assert!(is_red(rotated.pixel(24, 8)), "top-right should be red");
    assert!(is_blue(rotated.pixel(8, 8)), "top-left should be blue");
    assert!(
        is_blue(rotated.pixel(24, 40)),
        "bottom-right should be blue"
    );

    // Orientation 8 (90° counter-clockwise): the red block goes to the bottom-left.
    let ccw = decode(&with_exif(&jpeg, 8)).unwrap();
    assert_eq!((ccw.width, ccw.height), (32, 48));
    assert!(is_red(ccw.pixel(8, 40)) && is_blue(ccw.pixel(24, 8)));

    // Orientation 1 changes nothing.
    assert_eq!(decode(&with_exif(&jpeg, 1)).unwrap(), plain);
}

#[test]
fn garbage_is_not_an_image() {
    for bytes in [
        &b"hello, this is not an image at all"[..],
        &[][..],
        &[0u8; 3][..],
    ] {
        let err = decode(bytes).unwrap_err();
        assert!(matches!(err, ImageError::NotAnImage(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("not an image (or an unsupported format): "),
            "{msg}"
        );
        assert!(msg.len() > 45, "message should say more: {msg}");
    }
    // A recognised but unsupported format (TIFF's magic) is also NotAnImage.
    let err = decode(b"II*\0\x08\0\0\0\0\0\0\0\0\0\0\0").unwrap_err();
    assert!(matches!(err, ImageError::NotAnImage(_)), "{err:?}");
    assert!(err.to_string().contains("Tiff"), "{err}");
}

#[test]
fn truncated_files_are_errors_with_messages() {
    let img = gradient(64, 64);
    for format in [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Bmp,
        ImageFormat::WebP,
    ] {
        let bytes = encode(as_dynamic(&img), format);
        for cut in [bytes.len() / 2, 40] {
            let err = match decode(&bytes[..cut]) {
                Err(e) => e,
                // A lenient decoder may fill a truncated JPEG with grey; that is not an error.
                Ok(_) if format == ImageFormat::Jpeg => continue,
                Ok(_) => panic!("{format:?} cut at {cut} decoded"),
            };
            assert!(
                matches!(err, ImageError::Corrupt(_) | ImageError::NotAnImage(_)),
                "{format:?}: {err:?}"
            );
            assert!(err.to_string().len() > 30, "{format:?}: {err}");
        }
    }
    // The PNG case specifically is Corrupt: the format is known, the data is short.
    let png = to_png(&img);
    let err = decode(&png[..png.len() / 2]).unwrap_err();
    assert!(matches!(err, ImageError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("corrupt or truncated"), "{err}");
}

#[test]
fn huge_headers_are_refused_before_decoding() {
    let jpeg_huge = {
        // Patch the SOF0 dimensions of a real JPEG to 65535 × 65535.
        let mut jpeg = encode(as_dynamic(&gradient(16, 16)), ImageFormat::Jpeg);
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline SOF0");
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        jpeg
    };
    let gif_huge = {
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0]);
        gif.extend_from_slice(&[
            0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 2, 2, 0x4C, 0x01, 0,
        ]);
        gif.push(0x3B);
        gif
    };
    let webp_huge = {
        // Patch the VP8L header (14 bits each of width − 1 and height − 1) of a real lossless
        // WebP to 16383 × 16383. (image-webp reads 16384 as 0, so stay one below.)
        let mut webp = encode(as_dynamic(&gradient(4, 4)), ImageFormat::WebP);
        let chunk = webp
            .windows(4)
            .position(|w| w == b"VP8L")
            .expect("a simple lossless WebP");
        let h = chunk + 8;
        assert_eq!(webp[h], 0x2f, "VP8L signature");
        let mut bits = u32::from_le_bytes(webp[h + 1..h + 5].try_into().unwrap());
        bits = (bits & !0x0FFF_FFFF) | 0x3FFE | (0x3FFE << 14);
        webp[h + 1..h + 5].copy_from_slice(&bits.to_le_bytes());
        webp
    };
    let cases: [(&str, Vec<u8>, (u32, u32)); 5] = [
        ("png", png_header_only(100_000, 100_000), (100_000, 100_000)),
        // The BMP decoder itself refuses sides above 65535, so stay below that.
        ("bmp", bmp_header_only(60_000, 60_000), (60_000, 60_000)),
        ("jpeg", jpeg_huge, (65_535, 65_535)),
        ("gif", gif_huge, (65_535, 65_535)),
        ("webp", webp_huge, (16_383, 16_383)),
    ];
    for (name, bytes, (w, h)) in cases {
        let (result, largest) = largest_allocation(|| decode(&bytes));
        match result {
            Err(ImageError::TooLarge {
                width,
                height,
                max_pixels,
            }) => {
                assert_eq!((width, height, max_pixels), (w, h, MAX_PIXELS), "{name}");
            }
            other => panic!("{name}: expected TooLarge, got {other:?}"),
        }
        assert!(
            largest < 1 << 20,
            "{name}: allocated {largest} bytes at once before refusing"
        );
    }
    let msg = decode(&png_header_only(100_000, 100_000))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("too large") && msg.contains("100000 × 100000"),
        "{msg}"
    );

    // Just under the limit on one side is not refused for size (it fails later, as corrupt,
    // because there is no pixel data).
    let err = decode(&png_header_only(4, 4)).unwrap_err();
    assert!(matches!(err, ImageError::Corrupt(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Resampling
// ---------------------------------------------------------------------------------------------

#[test]
fn resize_of_a_constant_image_is_constant() {
    let img = RgbImage::filled(37, 23, [13, 200, 255]);
    for (w, h) in [(224, 224), (5, 3), (37, 7), (1, 1), (100, 23)] {
        let out = resize_bilinear(&img, w, h);
        assert_eq!((out.width, out.height), (w, h));
        assert!(
            out.pixels.chunks(3).all(|p| p == [13, 200, 255]),
            "{w}×{h} not constant"
        );
    }
}

#[test]
fn resize_to_the_same_size_is_identity() {
    let img = pattern(9, 6);
    assert_eq!(resize_bilinear(&img, 9, 6), img);
}

#[test]
fn upscaling_interpolates_at_half_pixel_centres() {
    // Output centres 0.25, 0.75, 1.25, 1.75 in input pixels; the outer two are clamped to the
    // edge pixels, the inner two are 3:1 blends.
    let img = RgbImage::new(2, 1, vec![0, 0, 0, 200, 100, 50]);
    let out = resize_bilinear(&img, 4, 1);
    assert_eq!(
        out.pixels,
        vec![0, 0, 0, 50, 25, 13, 150, 75, 38, 200, 100, 50]
    );
    // Same along the vertical axis.
    let tall = RgbImage::new(1, 2, vec![0, 0, 0, 200, 100, 50]);
    assert_eq!(resize_bilinear(&tall, 1, 4).pixels, out.pixels);
}

#[test]
fn downscaling_antialiases() {
    // 1-pixel stripes 0/255. Without antialiasing a 3× reduction would sample single stripes
    // (0 or 255); the widened triangle filter averages them. Pillow gives 128, 128.
    let stripes = from_gray(6, 1, &[0, 255, 0, 255, 0, 255]);
    assert_eq!(resize_bilinear(&stripes, 2, 1).pixels, vec![128; 6]);

    // 2×: triangle of support 2 around centres 1 and 3: weights 3/7, 3/7, 1/7 (Pillow: 109, 146).
    let stripes = from_gray(4, 1, &[0, 255, 0, 255]);
    assert_eq!(
        resize_bilinear(&stripes, 2, 1).pixels,
        vec![109, 109, 109, 146, 146, 146]
    );

    // A fine checkerboard reduced 8× is uniformly mid-grey (every input pixel counts).
    let checker: Vec<u8> = (0..64 * 64)
        .map(|i| if (i % 64 + i / 64) % 2 == 0 { 0 } else { 255 })
        .collect();
    let out = resize_bilinear(&from_gray(64, 64, &checker), 8, 8);
    assert!(
        out.pixels.iter().all(|&v| (120..=135).contains(&v)),
        "{:?}",
        out.pixels
    );
}

/// Reference values from Pillow (`Image.frombytes("RGB", …, pattern).resize(size,
/// Image.BILINEAR).tobytes()`, with the classic horizontal-then-vertical pass order): the
/// resize is bit-exact with Pillow.
#[test]
fn resize_matches_pillow_bit_for_bit() {
    type Case = ((usize, usize), (usize, usize), &'static [u8]);
    let cases: [Case; 4] = [
        (
            (7, 5),
            (3, 4),
            &[
                119, 134, 112, 123, 146, 149, 143, 150, 145, 154, 149, 99, 117, 107, 145, 164, 132,
                135, 105, 177, 107, 142, 107, 127, 163, 80, 136, 83, 162, 137, 153, 64, 118, 126,
                116, 97,
            ],
        ),
        (
            (4, 3),
            (9, 7),
            &[
                5, 43, 95, 31, 76, 92, 100, 164, 85, 162, 231, 85, 174, 147, 134, 186, 63, 183,
                147, 128, 181, 100, 215, 172, 83, 247, 169, 19, 45, 84, 45, 78, 87, 114, 165, 96,
                173, 231, 107, 168, 147, 140, 163, 63, 172, 136, 127, 167, 105, 213, 158, 94, 245,
                155, 62, 50, 52, 88, 82, 73, 154, 168, 128, 207, 233, 175, 151, 147, 157, 96, 61,
                139, 104, 124, 127, 120, 209, 116, 126, 240, 112, 105, 55, 19, 130, 87, 58, 195,
                171, 161, 240, 234, 242, 134, 147, 174, 28, 60, 106, 71, 121, 86, 135, 204, 74,
                159, 235, 69, 134, 46, 82, 140, 78, 103, 155, 160, 155, 162, 222, 198, 103, 133,
                177, 44, 45, 157, 92, 104, 141, 154, 186, 128, 178, 216, 122, 163, 38, 146, 151,
                68, 147, 115, 150, 149, 84, 210, 155, 72, 120, 181, 61, 29, 207, 113, 88, 197, 174,
                167, 181, 197, 197, 175, 173, 35, 167, 154, 65, 162, 102, 146, 147, 58, 206, 140,
                62, 115, 182, 66, 24, 224, 120, 82, 215, 180, 161, 199, 203, 191, 193,
            ],
        ),
        (
            (13, 11),
            (5, 3),
            &[
                113, 129, 132, 128, 132, 113, 138, 94, 122, 109, 130, 119, 127, 132, 125, 123, 113,
                143, 112, 126, 145, 155, 139, 135, 150, 140, 124, 100, 157, 122, 124, 129, 102,
                110, 98, 134, 134, 132, 112, 134, 113, 119, 121, 119, 136,
            ],
        ),
        // Height shrinks much more than width: classic Pillow (≤ 12.1) still resizes
        // horizontally first; Pillow 13 goes vertical-first here and gives 112, 146 for
        // bytes 5 and 6.
        (
            (3, 9),
            (4, 2),
            &[
                75, 150, 106, 107, 143, 111, 147, 137, 137, 180, 134, 174, 117, 156, 104, 135, 126,
                130, 148, 104, 139, 150, 96, 129,
            ],
        ),
    ];
    for ((w, h), (ow, oh), expected) in cases {
        let out = resize_bilinear(&pattern(w, h), ow, oh);
        assert_eq!(out.pixels, expected, "{w}×{h} → {ow}×{oh}");
    }
}

// ---------------------------------------------------------------------------------------------
// Normalisation and pipelines
// ---------------------------------------------------------------------------------------------

#[test]
fn normalisation_maps_0_to_minus_1_and_255_to_1_in_chw() {
    let img = RgbImage::new(2, 1, vec![0, 255, 51, 255, 0, 102]);
    let t = to_normalized_chw(&img);
    // CHW: R plane (0, 255), G plane (255, 0), B plane (51, 102).
    let expected = [-1.0, 1.0, 1.0, -1.0, -0.6, -0.2];
    assert_eq!(t.len(), 6);
    for (a, b) in t.iter().zip(expected) {
        assert!((a - b).abs() < 1e-6, "{t:?}");
    }
    assert_eq!(t[0], -1.0);
    assert_eq!(t[1], 1.0);
}

#[test]
fn preprocess_eval_resizes_without_crop() {
    let img = pattern(50, 30);
    let t = preprocess_eval(&img, 16, 24);
    assert_eq!(t.len(), 3 * 16 * 24);
    assert_eq!(t, to_normalized_chw(&resize_bilinear(&img, 24, 16)));
    assert!(t.iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn from_gray_replicates_channels() {
    let img = from_gray(3, 2, &[0, 10, 20, 30, 40, 255]);
    assert_eq!((img.width, img.height), (3, 2));
    assert_eq!(img.pixel(2, 1), [255, 255, 255]);
    assert_eq!(img.pixel(1, 0), [10, 10, 10]);
    // Fashion-MNIST style 28 → 32 upscaling keeps a constant background constant.
    let up = resize_bilinear(&from_gray(28, 28, &[0; 784]), 32, 32);
    assert!(up.pixels.iter().all(|&v| v == 0));
}

#[test]
fn crop_params_stay_inside_and_respect_scale_and_ratio() {
    let (width, height) = (400, 300);
    let aug = Augment::default();
    let mut rng = SplitMix64::new(1337);
    let (mut min_area, mut max_area) = (f64::MAX, 0.0f64);
    for _ in 0..5000 {
        let p = random_resized_crop_params(&mut rng, width, height, aug.scale, aug.ratio);
        assert!(p.w > 0 && p.h > 0, "{p:?}");
        assert!(p.x + p.w <= width && p.y + p.h <= height, "{p:?}");
        let area = (p.w * p.h) as f64 / (width * height) as f64;
        let ratio = p.w as f64 / p.h as f64;
        // Rounding w and h to integers moves area and ratio by a little.
        assert!((0.08 * 0.97..=1.0).contains(&area), "area {area} {p:?}");
        assert!(
            (0.75 * 0.97..=4.0 / 3.0 * 1.03).contains(&ratio),
            "ratio {ratio} {p:?}"
        );
        min_area = min_area.min(area);
        max_area = max_area.max(area);
    }
    // The whole scale range is used.
    assert!(min_area < 0.1 && max_area > 0.9, "{min_area} {max_area}");

    // Deterministic for a seed, different for another.
    let draw = |seed| {
        let mut rng = SplitMix64::new(seed);
        (0..20)
            .map(|_| random_resized_crop_params(&mut rng, width, height, aug.scale, aug.ratio))
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
}

#[test]
fn crop_params_fall_back_to_a_central_crop() {
    // A 100×10 strip cannot hold 90 % of its area at an aspect ratio ≤ 4/3, so all ten
    // attempts fail: central crop of full height, width round(10 · 4/3) = 13.
    let mut rng = SplitMix64::new(0);
    let p = random_resized_crop_params(&mut rng, 100, 10, (0.9, 1.0), (3.0 / 4.0, 4.0 / 3.0));
    assert_eq!(
        p,
        CropParams {
            x: 43,
            y: 0,
            w: 13,
            h: 10
        }
    );
    // Too tall: full width, height round(10 / (3/4)) = 13.
    let p = random_resized_crop_params(&mut rng, 10, 100, (0.9, 1.0), (3.0 / 4.0, 4.0 / 3.0));
    assert_eq!(
        p,
        CropParams {
            x: 0,
            y: 43,
            w: 10,
            h: 13
        }
    );
    // Ratio in range: the whole image.
    let p = random_resized_crop_params(&mut rng, 10, 10, (2.0, 3.0), (3.0 / 4.0, 4.0 / 3.0));
    assert_eq!(
        p,
        CropParams {
            x: 0,
            y: 0,
            w: 10,
            h: 10
        }
    );
}

#[test]
fn crop_and_hflip() {
    let img = gradient(10, 7);
    let c = crop(
        &img,
        CropParams {
            x: 3,
            y: 2,
            w: 4,
            h: 5,
        },
    );
    assert_eq!((c.width, c.height), (4, 5));
    assert_eq!(c.pixel(0, 0), img.pixel(3, 2));
    assert_eq!(c.pixel(3, 4), img.pixel(6, 6));

    let f = hflip(&img);
    assert_eq!(f.pixel(0, 3), img.pixel(9, 3));
    assert_ne!(f, img);
    assert_eq!(hflip(&f), img);
}

#[test]
fn augment_train_is_random_resized_crop_plus_flip() {
    let img = pattern(60, 40);
    let aug = Augment::default();
    assert_eq!(aug.scale, (0.08, 1.0));
    assert_eq!(aug.ratio, (0.75, 4.0 / 3.0));
    assert!(aug.hflip);

    // Deterministic for a seed; shape and range.
    let a = augment_train(&img, 16, 16, &aug, &mut SplitMix64::new(5));
    let b = augment_train(&img, 16, 16, &aug, &mut SplitMix64::new(5));
    assert_eq!(a, b);
    assert_eq!(a.len(), 3 * 16 * 16);
    assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));

    // It equals crop → resize → (flip) → normalise with the same draws.
    let mut rng = SplitMix64::new(5);
    let p = random_resized_crop_params(&mut rng, 60, 40, aug.scale, aug.ratio);
    let resized = resize_bilinear(&crop(&img, p), 16, 16);
    let flipped = rng.next_f64() < 0.5;
    let expected = if flipped { hflip(&resized) } else { resized };
    assert_eq!(a, to_normalized_chw(&expected));

    // With the crop pinned to the whole image it is the eval transform, flipped about half
    // the time.
    let whole = Augment {
        scale: (1.0, 1.0),
        ratio: (1.5, 1.5),
        hflip: true,
    };
    let eval = preprocess_eval(&img, 12, 20);
    let eval_flipped = to_normalized_chw(&hflip(&resize_bilinear(&img, 20, 12)));
    let mut rng = SplitMix64::new(11);
    let mut flips = 0;
    for _ in 0..200 {
        let t = augment_train(&img, 12, 20, &whole, &mut rng);
        if t == eval_flipped {
            flips += 1;
        } else {
            assert_eq!(t, eval);
        }
    }
    assert!((60..=140).contains(&flips), "{flips} flips in 200");

    let no_flip = Augment {
        hflip: false,
        ..whole
    };
    let mut rng = SplitMix64::new(11);
    for _ in 0..20 {
        assert_eq!(augment_train(&img, 12, 20, &no_flip, &mut rng), eval);
    }
}
