//! The query patch a first view opens on (docs/nepa.md §6.6): a patch inside the photo's
//! subject whose prediction the model makes confidently, so that the first maps a visitor sees
//! show a prediction rather than the corner patch, where causal attention sees only itself.
//!
//! The rule uses the model's own outputs and two priors that hold for most photographs:
//! 1. **Centre.** Subjects are framed near the centre: candidates are the patches whose centres
//!    lie in the middle half of the image, both ways (every patch on grids under 4 × 4).
//! 2. **Unlike the frame.** What touches the frame is mostly background: each candidate's
//!    saliency is `1 − cos(z_p, z̄_ring)`, with `z̄_ring` the mean input embedding of the outer
//!    ring of patches; candidates less than halfway from the least to the most salient one
//!    are dropped (a small subject in a plain centre keeps only the subject).
//! 3. **Confident.** Of those, the query `t` whose prediction `ẑ[t]` best matches the patch it
//!    predicts, `cos(ẑ[t], z[t+1])` (the last patch predicts nothing and is never chosen).
//!    Ties go to the lower token, so the choice is a pure function of the outputs.

use super::maps::{PatchMaps, cosine};

/// The first view's query patch `(row, col)` for one image's outputs (see the module docs).
pub fn first_query(maps: &PatchMaps) -> (usize, usize) {
    let grid = maps.grid();
    let (rows, cols) = (grid.rows, grid.cols);
    let central = |i: usize, n: usize| {
        // Centre of patch i in units of the image side, against the middle half [¼, ¾].
        let centre = (2 * i + 1) as f64 / (2 * n) as f64;
        n < 4 || (0.25..=0.75).contains(&centre)
    };
    let last = grid.patches() - 1;
    let candidates: Vec<usize> = (0..grid.patches())
        .filter(|&p| p != last && central(p / cols, rows) && central(p % cols, cols))
        .collect();
    if candidates.is_empty() {
        // A 1 × 1 grid: its one patch.
        return (0, 0);
    }
    let ring = ring_mean(maps);
    let saliency: Vec<f32> = candidates
        .iter()
        .map(|&p| 1.0 - cosine(maps.z_token(1 + p), &ring))
        .collect();
    let (low, high) = saliency
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &s| {
            (l.min(s), h.max(s))
        });
    let halfway = low + 0.5 * (high - low);
    let confidence = |p: usize| cosine(maps.z_hat_token(1 + p), maps.z_token(2 + p));
    let mut best: Option<(usize, f32)> = None;
    for (&p, &s) in candidates.iter().zip(&saliency) {
        if s.is_nan() || s < halfway {
            continue;
        }
        let c = confidence(p);
        // NaN never wins; ties keep the lower patch (candidates are in increasing order).
        if best.is_none_or(|(_, b)| c > b) {
            best = Some((p, c));
        }
    }
    let p = best.map_or(candidates[0], |(p, _)| p);
    (p / cols, p % cols)
}

/// Mean input embedding z of the outer ring of patches (all patches on grids under 3 × 3).
fn ring_mean(maps: &PatchMaps) -> Vec<f32> {
    let grid = maps.grid();
    let on_ring = |p: usize| {
        let (r, c) = (p / grid.cols, p % grid.cols);
        grid.rows < 3
            || grid.cols < 3
            || r == 0
            || c == 0
            || r == grid.rows - 1
            || c == grid.cols - 1
    };
    let dim = maps.dims().dim;
    let mut sum = vec![0.0f64; dim];
    let mut count = 0usize;
    for p in (0..grid.patches()).filter(|&p| on_ring(p)) {
        for (s, &v) in sum.iter_mut().zip(maps.z_token(1 + p)) {
            *s += f64::from(v);
        }
        count += 1;
    }
    sum.iter()
        .map(|&s| (s / count.max(1) as f64) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::viz::grid::{Grid, MapDims};

    /// Maps of a `rows × cols` grid with D = 2: z of patch p is `z(p)`, ẑ of token t is
    /// `z_hat(t)`, and no attention.
    fn maps(
        rows: usize,
        cols: usize,
        z: impl Fn(usize) -> [f32; 2],
        z_hat: impl Fn(usize) -> [f32; 2],
    ) -> PatchMaps {
        let t = 1 + rows * cols;
        let mut zs = vec![1.0, 0.0];
        zs.extend((0..rows * cols).flat_map(z));
        let hats: Vec<f32> = (0..t).flat_map(z_hat).collect();
        let dims = MapDims {
            grid: Grid::new(rows, cols),
            dim: 2,
            heads: 1,
        };
        PatchMaps::from_output_data::<Vec<f32>>(dims, &zs, &hats, &[]).unwrap()
    }

    #[test]
    fn picks_the_confident_salient_centre_patch() {
        // 8 × 8: background z = (1, 0); a subject z = (0, 1) on rows 2..6, cols 2..7. Every
        // prediction is the background, except token 1 + 3·8 + 4 (patch (3, 4)) which
        // predicts the subject patch (3, 5) exactly.
        let subject = |p: usize| (2..6).contains(&(p / 8)) && (2..7).contains(&(p % 8));
        let m = maps(
            8,
            8,
            |p| if subject(p) { [0.0, 1.0] } else { [1.0, 0.0] },
            |t| {
                if t == 1 + 3 * 8 + 4 {
                    [0.0, 1.0]
                } else {
                    [1.0, 0.0]
                }
            },
        );
        assert_eq!(first_query(&m), (3, 4));
    }

    #[test]
    fn background_in_the_centre_loses_to_the_subject() {
        // Every prediction is the background (1, 0), so background patches are the most
        // confidently predicted; the subject (a column at col 4) must still win.
        let m = maps(
            8,
            8,
            |p| if p % 8 == 4 { [0.0, 1.0] } else { [1.0, 0.0] },
            |t| {
                if t == 1 + 4 * 8 + 4 {
                    [0.3, 1.0]
                } else {
                    [1.0, 0.0]
                }
            },
        );
        assert_eq!(first_query(&m).1, 4, "{:?}", first_query(&m));
    }

    #[test]
    fn never_the_corner_nor_outside_the_centre() {
        let m = maps(12, 12, |p| [1.0, p as f32], |t| [1.0, t as f32]);
        let (r, c) = first_query(&m);
        assert!((3..=8).contains(&r) && (3..=8).contains(&c), "({r}, {c})");
    }

    #[test]
    fn tiny_grids_answer_inside_the_grid() {
        for (rows, cols) in [(1, 1), (1, 2), (2, 2), (3, 3), (2, 5)] {
            let m = maps(rows, cols, |p| [1.0, p as f32], |_| [1.0, 1.0]);
            let (r, c) = first_query(&m);
            assert!(r < rows && c < cols, "({r}, {c}) on {rows}×{cols}");
            assert!(
                rows * cols == 1 || 1 + r * cols + c < rows * cols,
                "the last patch"
            );
        }
    }
}
