//! Vector math the kernels share: an exponential and sums LLVM can vectorise, and a way to
//! compile a loop for AVX-512 and AVX2 + FMA next to the baseline target (docs/performance.md §8).

/// e^x, branch-free: x = k·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor series to r⁷ (relative
/// error below 10⁻⁸ there), 2^k written into the float's exponent. Inputs are clamped to
/// [−87, 88], where 2^k stays a normal float; GELU and softmax only need e^x ≤ 1.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer without a call to roundf.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * core::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // k sits in the low bits of `shifted`: reading it there, not by `k as i32` (a saturating
    // cast LLVM does one lane at a time), keeps the loop vectorised.
    let k_bits = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    p * f32::from_bits(((k_bits + 127) << 23) as u32)
}

/// Running sums kept side by side in [`lane_sum`]: one AVX-512 register of f32.
pub(super) const LANES: usize = 16;

/// Σ f(x) over `xs` in [`LANES`] running sums added at the end. One running sum is a chain of
/// additions LLVM must keep in order, so it stays scalar; independent sums become one vector
/// register (docs/performance.md §8). The result differs from a left-to-right sum by rounding.
#[inline(always)]
pub(super) fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut sums = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (sum, &x) in sums.iter_mut().zip(chunk) {
            *sum += f(x);
        }
    }
    let total = sums.iter().sum::<f32>();
    chunks
        .remainder()
        .iter()
        .fold(total, |total, &x| total + f(x))
}

/// Σ a·b over two slices of one length, as [`lane_sum`] adds.
#[inline(always)]
pub(super) fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((sum, &x), &y) in sums.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    let total = sums.iter().sum::<f32>();
    let rest = ca.remainder().iter().zip(cb.remainder());
    rest.fold(total, |total, (&x, &y)| total + x * y)
}

/// The largest of `xs` (−∞ for none), in [`LANES`] running maxima.
#[inline(always)]
pub(super) fn lane_max(xs: &[f32]) -> f32 {
    let mut maxima = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &x) in maxima.iter_mut().zip(chunk) {
            *m = m.max(x);
        }
    }
    let max = maxima.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    chunks.remainder().iter().fold(max, |m, &x| m.max(x))
}

/// Defines `$name(args)` running `$body` over the slices, compiled three times: for AVX-512
/// (16 lanes) and for AVX2 + FMA (8 lanes), each picked at run time when the CPU has it, and for
/// the baseline target.
macro_rules! vectorised {
    ($name:ident ($($arg:ident : $ty:ty),*) $body:block) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn widest($($arg: $ty),*) $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $body
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `widest` was compiled for (every
                    // AVX-512 CPU has AVX2 and FMA).
                    return unsafe { widest($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `wide` was compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $body
        }
    };
}

pub(super) use vectorised;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_reductions_match_plain_ones() {
        // Lengths below, at and past a multiple of the lanes: the remainder is included.
        for n in [0, 1, 15, 16, 17, 64, 65, 192, 200] {
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let ys: Vec<f32> = (0..n)
                .map(|i| ((i * 11 % 29) as f32 - 14.0) / 3.0)
                .collect();
            let close =
                |got: f32, want: f64| (got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0);
            let sum: f64 = xs.iter().map(|&x| x as f64 * x as f64).sum();
            assert!(close(lane_sum(&xs, |x| x * x), sum), "n {n}: sum");
            let dot: f64 = xs.iter().zip(&ys).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!(close(lane_dot(&xs, &ys), dot), "n {n}: dot");
            let max = xs.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            assert_eq!(lane_max(&xs), max, "n {n}: max");
        }
    }

    #[test]
    fn exp_is_within_a_few_ulp_of_std() {
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let (got, want) = (exp(x), (x as f64).exp());
            assert!(
                ((got as f64 - want) / want).abs() < 4e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
    }
}
