//! From map values to colours (docs/nepa.md §6.5): the similarity softmax, the display
//! normalisation and gamma, and the jet colormap.

/// Gamma applied to the normalised attention map (docs/nepa.md §6.5): < 1 lifts the long tail of
/// small weights so that long-range attention is visible.
pub const ATTENTION_GAMMA: f32 = 0.25;
/// Gamma applied to the normalised similarity softmax (docs/nepa.md §6.5): ≫ 1 keeps only the
/// patches the prediction is closest to.
pub const SIMILARITY_GAMMA: f32 = 10.0;
/// Lower end `m` of the [`normalize_except_zero`] range used by the display helpers.
pub const NORMALIZE_MIN: f32 = 0.0;

/// `softmax(values / temperature)`, then top-p (nucleus) filtering and renormalisation, as
/// the visualization script: sort descending, drop every value whose preceding cumulative
/// mass already exceeds `top_p` (the largest always stays), renormalise. The result is in
/// the input's order. `top_p >= 1` is "off" (no filtering): it must not depend on a
/// cumulative sum that rounds to slightly above 1.
pub fn softmax_top_p(values: &[f32], temperature: f32, top_p: f32) -> Vec<f32> {
    if values.is_empty() {
        return Vec::new();
    }
    let temperature = f64::from(temperature);
    let max = values
        .iter()
        .map(|&v| f64::from(v) / temperature)
        .fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = values
        .iter()
        .map(|&v| (f64::from(v) / temperature - max).exp())
        .collect();
    let total: f64 = exp.iter().sum();
    let mut probs: Vec<f64> = exp.iter().map(|e| e / total).collect();
    if top_p < 1.0 {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]).then(i.cmp(&j)));
        let mut cumulative = 0.0;
        for &i in &order {
            let before = cumulative;
            cumulative += probs[i];
            if before > f64::from(top_p) {
                probs[i] = 0.0;
            }
        }
        let kept: f64 = probs.iter().sum();
        for p in &mut probs {
            *p /= kept;
        }
    }
    probs.into_iter().map(|p| p as f32).collect()
}

/// The paper's similarity distribution: softmax of the raw cosines with temperature 1 and
/// top-p off (docs/nepa.md §6.4).
pub fn similarity_softmax(raw: &[f32]) -> Vec<f32> {
    softmax_top_p(raw, 1.0, 1.0)
}

/// Display normalisation (docs/nepa.md §6.5): values that are exactly 0 stay 0 (so the causal mask
/// remains visible); the other values are min–max rescaled to `[m, 1]` using the min and max
/// of the non-zero values only. If all non-zero values are equal they map to 1. Non-finite
/// values are treated like zeros.
pub fn normalize_except_zero(values: &[f32], m: f32) -> Vec<f32> {
    let keep = |v: f32| v != 0.0 && v.is_finite();
    let (lo, hi) = values
        .iter()
        .copied()
        .filter(|&v| keep(v))
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    values
        .iter()
        .map(|&v| {
            if !keep(v) {
                0.0
            } else if hi > lo {
                m + (1.0 - m) * (v - lo) / (hi - lo)
            } else {
                1.0
            }
        })
        .collect()
}

/// `value^g` elementwise. Meant for values already in [0, 1]; negatives are clamped to 0
/// first so that a non-integer exponent cannot produce NaN.
pub fn gamma(values: &[f32], g: f32) -> Vec<f32> {
    values.iter().map(|&v| v.max(0.0).powf(g)).collect()
}

/// The paper's attention rendering values: `gamma(normalize_except_zero(map, 0), 0.25)`.
pub fn attention_display(patches: &[f32]) -> Vec<f32> {
    gamma(
        &normalize_except_zero(patches, NORMALIZE_MIN),
        ATTENTION_GAMMA,
    )
}

/// The paper's similarity rendering values:
/// `gamma(normalize_except_zero(softmax(raw), 0), 10)`.
pub fn similarity_display(raw: &[f32]) -> Vec<f32> {
    gamma(
        &normalize_except_zero(&similarity_softmax(raw), NORMALIZE_MIN),
        SIMILARITY_GAMMA,
    )
}

// ---------------------------------------------------------------------------------------
// Colormap
// ---------------------------------------------------------------------------------------

/// Piecewise-linear interpolation through `(x, y)` knots sorted by x, covering [0, 1].
fn interp(x: f32, knots: &[(f32, f32)]) -> f32 {
    for pair in knots.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if x <= x1 {
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
        }
    }
    knots[knots.len() - 1].1
}

/// Matplotlib's `jet` colormap, evaluated from its segment data (continuous, not the
/// 256-entry LUT, so it can differ from `cm.jet(v, bytes=True)` by about one level). `v`
/// is clamped to [0, 1]; NaN maps like 0. jet(0) = (0, 0, 128) dark blue, jet(1) =
/// (128, 0, 0) dark red.
pub fn jet(v: f32) -> [u8; 3] {
    const RED: [(f32, f32); 5] = [
        (0.0, 0.0),
        (0.35, 0.0),
        (0.66, 1.0),
        (0.89, 1.0),
        (1.0, 0.5),
    ];
    const GREEN: [(f32, f32); 6] = [
        (0.0, 0.0),
        (0.125, 0.0),
        (0.375, 1.0),
        (0.64, 1.0),
        (0.91, 0.0),
        (1.0, 0.0),
    ];
    const BLUE: [(f32, f32); 5] = [
        (0.0, 0.5),
        (0.11, 1.0),
        (0.34, 1.0),
        (0.65, 0.0),
        (1.0, 0.0),
    ];
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let byte = |c: f32| (c * 255.0).round().clamp(0.0, 255.0) as u8;
    [
        byte(interp(v, &RED)),
        byte(interp(v, &GREEN)),
        byte(interp(v, &BLUE)),
    ]
}

/// Jet colours of `values` rescaled from `[vmin, vmax]` to [0, 1] (clamped). A degenerate
/// range (`vmax <= vmin`) maps everything to the middle colour.
pub fn colorize(values: &[f32], vmin: f32, vmax: f32) -> Vec<[u8; 3]> {
    values
        .iter()
        .map(|&v| {
            if vmax > vmin {
                jet((v - vmin) / (vmax - vmin))
            } else {
                jet(0.5)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probs ∝ e^v: the largest alone has > 0.5 of the mass.
        let p = softmax_top_p(&[0.0, 3.0, 1.0], 1.0, 0.5);
        assert_eq!(p, vec![0.0, 1.0, 0.0]);
        // top_p = 1 is off even though the cumulative sum may round above 1.
        let p = softmax_top_p(&[0.0, 3.0, 1.0], 1.0, 1.0);
        assert!(p.iter().all(|&x| x > 0.0));
    }
}
