//! Drawing on RGB images: patch rectangles, flat per-patch colours, the heat-map overlay
//! with the query outlines (docs/nepa.md §6.5), the de-normalised display image and the
//! nearest-neighbour upscale.

use super::color::colorize;
use super::grid::Grid;
use crate::error::NepaError;
use crate::image::RgbImage;

/// Opacity of the heat-map rectangles over the image (docs/nepa.md §6.5).
pub const OVERLAY_ALPHA: f32 = 0.55;
/// Outline of the query patch `t` (the paper's red box).
pub const QUERY_COLOR: [u8; 3] = [255, 0, 0];
/// Outline of the next patch `t + 1`, the one `ẑ[t]` predicts. Magenta does not occur in
/// the jet colormap, so it cannot be mistaken for a heat value.
pub const NEXT_COLOR: [u8; 3] = [255, 0, 255];
/// Outline width in pixels (the paper's 3-px box).
pub const OUTLINE_THICKNESS: usize = 3;

/// A half-open pixel rectangle `[x0, x1) × [y0, y1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

/// Pixel bounds of patch `(row, col)` in a `width × height` image covered by `grid`.
/// Exact cells when the size is a multiple of the grid (224 = 16·14); otherwise the cells
/// differ by at most one pixel and still tile the image.
pub fn patch_rect(grid: Grid, width: usize, height: usize, row: usize, col: usize) -> Rect {
    Rect {
        x0: col * width / grid.cols,
        x1: (col + 1) * width / grid.cols,
        y0: row * height / grid.rows,
        y1: (row + 1) * height / grid.rows,
    }
}

/// The patch index (row-major) under pixel `(x, y)`, consistent with [`patch_rect`].
fn patch_at(grid: Grid, width: usize, height: usize, x: usize, y: usize) -> usize {
    // Largest col with col·width/cols ≤ x, i.e. floor(((x+1)·cols − 1)/width).
    let col = ((x + 1) * grid.cols - 1) / width;
    let row = ((y + 1) * grid.rows - 1) / height;
    row * grid.cols + col
}

/// One flat rectangle of `cell × cell` pixels per patch: an image of
/// `(cols·cell) × (rows·cell)` pixels (width × height).
pub fn upsample_nearest(colors: &[[u8; 3]], grid: Grid, cell: usize) -> RgbImage {
    assert_eq!(colors.len(), grid.patches(), "one colour per patch");
    let (width, height) = (grid.cols * cell, grid.rows * cell);
    let mut out = RgbImage::filled(width, height, [0; 3]);
    for y in 0..height {
        for x in 0..width {
            out.set_pixel(x, y, colors[(y / cell) * grid.cols + x / cell]);
        }
    }
    out
}

/// One flat colour per patch over a `width × height` image, with the cells of
/// [`patch_rect`]: the PCA panels, at exactly the size of the heat-map panels.
pub fn fill_patches(grid: Grid, width: usize, height: usize, colors: &[[u8; 3]]) -> RgbImage {
    assert_eq!(colors.len(), grid.patches(), "one colour per patch");
    let mut out = RgbImage::filled(width, height, [0; 3]);
    for y in 0..height {
        for x in 0..width {
            out.set_pixel(x, y, colors[patch_at(grid, width, height, x, y)]);
        }
    }
    out
}

/// Alpha-blends one flat colour per patch over `base`:
/// `out = (1 − alpha)·base + alpha·colour`, rounded. The paper uses alpha 0.55
/// ([`OVERLAY_ALPHA`]) over every patch, zeros included (they show as jet's dark blue).
pub fn overlay(base: &RgbImage, grid: Grid, colors: &[[u8; 3]], alpha: f32) -> RgbImage {
    assert_eq!(colors.len(), grid.patches(), "one colour per patch");
    let alpha = alpha.clamp(0.0, 1.0);
    let mut out = base.clone();
    for y in 0..base.height {
        for x in 0..base.width {
            let top = colors[patch_at(grid, base.width, base.height, x, y)];
            let under = base.pixel(x, y);
            let mut px = [0u8; 3];
            for c in 0..3 {
                let v = (1.0 - alpha) * f32::from(under[c]) + alpha * f32::from(top[c]);
                px[c] = v.round().clamp(0.0, 255.0) as u8;
            }
            out.set_pixel(x, y, px);
        }
    }
    out
}

/// Draws the outline of `rect` (clipped to the image), `thickness` pixels wide, inside it.
pub fn draw_rect_outline(image: &mut RgbImage, rect: Rect, color: [u8; 3], thickness: usize) {
    let x1 = rect.x1.min(image.width);
    let y1 = rect.y1.min(image.height);
    for y in rect.y0..y1 {
        for x in rect.x0..x1 {
            let edge = x < rect.x0 + thickness
                || x + thickness >= x1
                || y < rect.y0 + thickness
                || y + thickness >= y1;
            if edge {
                image.set_pixel(x, y, color);
            }
        }
    }
}

/// Outlines patch `(row, col)` of `grid` in `image`.
pub fn outline_patch(
    image: &mut RgbImage,
    grid: Grid,
    (row, col): (usize, usize),
    color: [u8; 3],
    thickness: usize,
) {
    let rect = patch_rect(grid, image.width, image.height, row, col);
    draw_rect_outline(image, rect, color, thickness);
}

/// A complete panel as in the paper: `values` (display values in [0, 1], e.g. from
/// [`attention_display`]) coloured with jet, blended at alpha 0.55 over `base`, then — if a
/// query token is given — the query patch outlined in red and the next patch (t + 1, the
/// one ẑ[t] predicts) in magenta. A CLS query (token 0) has no box of its own.
pub fn heatmap_panel(
    base: &RgbImage,
    grid: Grid,
    values: &[f32],
    query_token: Option<usize>,
) -> RgbImage {
    let mut out = overlay(base, grid, &colorize(values, 0.0, 1.0), OVERLAY_ALPHA);
    if let Some(t) = query_token {
        outline_query(&mut out, grid, t);
    }
    out
}

/// Outlines the query token's patch in red and the next patch (t + 1, the one ẑ[t]
/// predicts) in magenta. The next patch is drawn first, so that the query box is on top
/// where they touch. A CLS query (token 0) has no box of its own.
pub fn outline_query(image: &mut RgbImage, grid: Grid, query_token: usize) {
    if let Some(next) = grid.next_patch(query_token) {
        outline_patch(image, grid, next, NEXT_COLOR, OUTLINE_THICKNESS);
    }
    if let Some(query) = grid.patch_of(query_token) {
        outline_patch(image, grid, query, QUERY_COLOR, OUTLINE_THICKNESS);
    }
}

/// Nearest-neighbour upscale by an integer `factor`: every source pixel becomes a
/// `factor × factor` block, so patch edges stay on exact pixel boundaries.
pub fn upscale_nearest(image: &RgbImage, factor: usize) -> RgbImage {
    let factor = factor.max(1);
    let (width, height) = (image.width * factor, image.height * factor);
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let row = &image.pixels[(y / factor) * image.width * 3..(y / factor + 1) * image.width * 3];
        for p in row.chunks_exact(3) {
            for _ in 0..factor {
                pixels.extend_from_slice(p);
            }
        }
    }
    RgbImage::new(width, height, pixels)
}

/// The display image from normalised CHW pixels (`[3·height·width]`, as fed to the model):
/// `x·std + mean` per channel, then ×255, rounded and clamped. NEPA's preprocessing
/// (docs/nepa.md §7.2) uses mean = std = 0.5 for all channels.
pub fn denormalize_chw(
    pixels: &[f32],
    height: usize,
    width: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<RgbImage, NepaError> {
    if pixels.len() != 3 * height * width {
        return Err(NepaError::Input(format!(
            "{} values are not a 3×{height}×{width} image",
            pixels.len()
        )));
    }
    let plane = height * width;
    let mut out = RgbImage::filled(width, height, [0; 3]);
    for i in 0..plane {
        for c in 0..3 {
            let v = (pixels[c * plane + i] * std[c] + mean[c]) * 255.0;
            out.pixels[i * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_at_inverts_patch_rect() {
        for (w, h, grid) in [
            (224, 224, Grid::new(16, 16)),
            (13, 10, Grid::new(3, 4)),
            (7, 5, Grid::new(5, 7)),
        ] {
            for row in 0..grid.rows {
                for col in 0..grid.cols {
                    let r = patch_rect(grid, w, h, row, col);
                    for y in r.y0..r.y1 {
                        for x in r.x0..r.x1 {
                            assert_eq!(patch_at(grid, w, h, x, y), row * grid.cols + col);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn outline_is_inside_the_rect() {
        let mut img = RgbImage::filled(12, 12, [0; 3]);
        draw_rect_outline(
            &mut img,
            Rect {
                x0: 2,
                y0: 2,
                x1: 10,
                y1: 10,
            },
            [255, 0, 0],
            3,
        );
        assert_eq!(img.pixel(2, 2), [255, 0, 0]);
        assert_eq!(img.pixel(4, 6), [255, 0, 0]);
        assert_eq!(img.pixel(9, 9), [255, 0, 0]);
        assert_eq!(img.pixel(5, 5), [0, 0, 0]); // interior
        assert_eq!(img.pixel(6, 6), [0, 0, 0]);
        assert_eq!(img.pixel(1, 1), [0, 0, 0]); // outside
        assert_eq!(img.pixel(10, 5), [0, 0, 0]);
    }
}
