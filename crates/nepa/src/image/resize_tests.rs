//! Tests of `resize.rs`.

use super::*;

#[test]
fn bicubic_keeps_a_constant_image() {
    let img = RgbImage::filled(7, 5, [3, 128, 250]);
    for (w, h) in [(3, 2), (11, 9), (7, 1), (1, 5)] {
        assert_eq!(
            resize_bicubic(&img, w, h),
            RgbImage::filled(w, h, [3, 128, 250])
        );
    }
}

#[test]
fn bicubic_matches_pillow() {
    // Pillow 13.0 `Image.frombytes('RGB', (5, 4), px).resize((3, 2), Image.BICUBIC)` with
    // px[i] = (37·i + 11) mod 256: downscaling (antialiased kernel).
    let px: Vec<u8> = (0..60).map(|i| ((i * 37 + 11) % 256) as u8).collect();
    let down = resize_bicubic(&RgbImage::new(5, 4, px), 3, 2);
    let want = [
        83, 124, 148, 125, 100, 136, 165, 133, 106, 162, 146, 135, 138, 152, 131, 118, 141, 135,
    ];
    assert_eq!(down.pixels, want);
    // Upscaling 3×2 → 4×3, where the negative lobes overshoot and are clipped.
    let small = RgbImage::new(
        3,
        2,
        vec![
            0, 255, 0, 255, 0, 255, 10, 200, 90, 255, 255, 255, 0, 0, 0, 128, 64, 32,
        ],
    );
    let want = [
        0, 255, 0, 183, 80, 176, 191, 60, 225, 0, 219, 84, 128, 255, 128, 132, 86, 132, 106, 32,
        106, 68, 139, 58, 255, 255, 255, 80, 92, 88, 20, 3, 0, 144, 58, 31,
    ];
    assert_eq!(resize_bicubic(&small, 4, 3).pixels, want);
}
