//! GELU and its derivative over f32 slices: one pass, branch-free so that LLVM vectorises it,
//! AVX2 + FMA where the CPU has them, split over Flex's rayon threads natively
//! (docs/performance.md §8).
//!
//! Φ(x) = ½·erfc(−x/√2) comes from Abramowitz & Stegun 7.1.26: erfc(z) ≈ (a₁t + … + a₅t⁵)·e^{−z²},
//! t = 1/(1 + p·z), z ≥ 0, absolute error ≤ 1.5·10⁻⁷ (docs/performance.md §8). The same e^{−x²/2}
//! gives the derivative's density φ(x), so the backward pass costs one exponential too.

const P: f32 = 0.327_591_1;
const A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_7,
    -1.453_152,
    1.061_405_4,
];
const FRAC_1_SQRT_2: f32 = core::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

use super::simd::{exp, vectorised};

/// (Φ(x), φ(x)): the standard normal's distribution function and density.
#[inline(always)]
fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    let z = x.abs() * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let mut poly = A[4];
    for a in [A[3], A[2], A[1], A[0]] {
        poly = poly * t + a;
    }
    let e = exp(-z * z);
    // ½·erfc(|x|/√2) is the tail beyond |x|; no cancellation on either side.
    let tail = 0.5 * poly * t * e;
    let cdf = if x >= 0.0 { 1.0 - tail } else { tail };
    (cdf, INV_SQRT_2PI * e)
}

#[inline(always)]
pub(super) fn gelu_one(x: f32) -> f32 {
    x * normal_cdf_pdf(x).0
}

#[inline(always)]
pub(super) fn gelu_grad_one(x: f32, grad: f32) -> f32 {
    let (cdf, pdf) = normal_cdf_pdf(x);
    grad * (cdf + x * pdf)
}

vectorised!(gelu_chunk(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = gelu_one(*x);
    }
});

vectorised!(gelu_grad_chunk(xs: &[f32], grads: &mut [f32]) {
    for (g, &x) in grads.iter_mut().zip(xs) {
        *g = gelu_grad_one(x, *g);
    }
});

/// Elements per task: large enough that a task outweighs rayon's scheduling.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
const CHUNK: usize = 1 << 14;

/// xs ← GELU(xs).
pub fn gelu_in_place(xs: &mut [f32]) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        xs.par_chunks_mut(CHUNK).for_each(gelu_chunk);
    }
    #[cfg(target_arch = "wasm32")]
    gelu_chunk(xs);
}

/// grads ← grads · GELU′(xs).
pub fn gelu_grad_in_place(xs: &[f32], grads: &mut [f32]) {
    assert_eq!(
        xs.len(),
        grads.len(),
        "GELU backward: input and gradient sizes differ"
    );
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        grads
            .par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(g, x)| gelu_grad_chunk(x, g));
    }
    #[cfg(target_arch = "wasm32")]
    gelu_grad_chunk(xs, grads);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Φ in f64: erf's Maclaurin series below |z| = 2, erfc's continued fraction above
    /// (both good to ~1e-14 there), the reference for the f32 kernel.
    fn cdf_f64(x: f64) -> f64 {
        let z = x.abs() / std::f64::consts::SQRT_2;
        let tail = if z < 2.0 {
            let (mut term, mut sum, mut n) = (z, z, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -z * z / n;
                sum += term / (2.0 * n + 1.0);
            }
            0.5 * (1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum)
        } else {
            let mut k = z;
            for n in (1..=80).rev() {
                k = z + n as f64 / 2.0 / k;
            }
            0.5 * (-z * z).exp() / (std::f64::consts::PI.sqrt() * k)
        };
        if x >= 0.0 { 1.0 - tail } else { tail }
    }

    #[test]
    fn gelu_and_its_derivative_match_the_f64_formulas() {
        let mut worst = (0.0f64, 0.0f64);
        for i in -12_000..=12_000 {
            let x = i as f64 * 1e-3;
            let want = x * cdf_f64(x);
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want_grad = cdf_f64(x) + x * pdf;
            let got = gelu_one(x as f32) as f64;
            let got_grad = gelu_grad_one(x as f32, 1.0) as f64;
            worst.0 = worst.0.max((got - want).abs() / x.abs().max(1.0));
            worst.1 = worst.1.max((got_grad - want_grad).abs());
        }
        // A&S 7.1.26's 1.5e-7 on erfc, halved by Φ, plus f32 rounding (measured 2.0e-7 / 2.7e-7).
        assert!(
            worst.0 < 3e-7,
            "GELU error {:e} (relative to max(|x|, 1))",
            worst.0
        );
        assert!(worst.1 < 5e-7, "GELU' error {:e}", worst.1);
    }

    #[test]
    fn slices_of_every_length_take_the_same_values_as_one_element() {
        for n in [0, 1, 7, 8, 9, CHUNK - 1, CHUNK + 5, 3 * CHUNK] {
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 1001) as f32 - 500.0) * 0.013)
                .collect();
            let mut ys = xs.clone();
            gelu_in_place(&mut ys);
            let mut gs: Vec<f32> = (0..n).map(|i| 1.0 + (i % 3) as f32).collect();
            let g0 = gs.clone();
            gelu_grad_in_place(&xs, &mut gs);
            for i in 0..n {
                assert_eq!(ys[i], gelu_one(xs[i]), "GELU at {i} of {n}");
                assert_eq!(gs[i], gelu_grad_one(xs[i], g0[i]), "GELU' at {i} of {n}");
            }
        }
    }
}
