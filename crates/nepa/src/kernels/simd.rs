//! Vector math the kernels share: an exponential LLVM can vectorise, and a way to compile a
//! loop for AVX2 + FMA next to the baseline target (docs/performance.md §8).

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
