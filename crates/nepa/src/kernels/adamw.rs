//! AdamW's update of one parameter: on Flex one pass over the parameter, its gradient and its
//! two moments, in their buffers; elsewhere Burn's element-wise operations, which a GPU's
//! fusion merges (docs/performance.md §8).

use burn::backend::flex::FlexTensor;
use burn::backend::{BackendTensor, DispatchTensor, DispatchTensorKind};
use burn::tensor::Tensor;

use super::flex::{contiguous, on_flex, values, values_mut};
use super::simd::vectorised;

/// Elements per rayon task.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
const CHUNK: usize = 16 * 1024;

/// The constants of one step: β₁, β₂, ε, the learning rate, the weight decay, and the bias
/// corrections 1 − β₁ᵗ and 1 − β₂ᵗ.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub lr: f64,
    pub weight_decay: f64,
    pub bias1: f64,
    pub bias2: f64,
}

/// `[p', m', v']` from the parameter `p`, its gradient `g` and the moments `m`, `v` (all flat,
/// one length, none recording gradients):
///
/// m' = β₁·m + (1 − β₁)·g, v' = β₂·v + (1 − β₂)·g²,
/// p' = p·(1 − lr·λ) − lr/(1 − β₁ᵗ) · m' / (√v' / √(1 − β₂ᵗ) + ε).
pub fn adamw_update(
    p: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    s: &AdamWStep,
) -> [Tensor<1>; 3] {
    let all = [p, g, m, v].map(Tensor::into_dispatch);
    if !all.iter().all(|t| on_flex(t) == Some(false)) {
        let [p, g, m, v] = all.map(Tensor::from_dispatch);
        return composed(p, g, m, v, s);
    }
    let autodiff = all[0].autodiff;
    let [p, g, m, v] = all.map(|t| match t.kind {
        DispatchTensorKind::Flex(BackendTensor::Float(t)) => contiguous(t),
        _ => unreachable!("on_flex accepted only plain Flex tensors"),
    });
    let [p, m, v] = on_flex_in_place(p, &g, m, v, s);
    [p, m, v].map(|t| {
        let kind = DispatchTensorKind::Flex(BackendTensor::Float(t));
        Tensor::from_dispatch(DispatchTensor { kind, autodiff })
    })
}

/// The update as Burn's element-wise operations (every backend but Flex, and the test's
/// reference).
fn composed(
    p: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    s: &AdamWStep,
) -> [Tensor<1>; 3] {
    let m = m * s.beta1 + g.clone() * (1.0 - s.beta1);
    let v = v * s.beta2 + g.square() * (1.0 - s.beta2);
    let denom = (v.clone().sqrt() / s.bias2.sqrt()).add_scalar(s.eps);
    let p = p * (1.0 - s.lr * s.weight_decay) - (m.clone() / denom) * (s.lr / s.bias1);
    [p, m, v]
}

fn on_flex_in_place(
    mut p: FlexTensor,
    g: &FlexTensor,
    mut m: FlexTensor,
    mut v: FlexTensor,
    s: &AdamWStep,
) -> [FlexTensor; 3] {
    // The constants in f32, as Burn's scalar operations on f32 tensors take them.
    let c = [
        s.beta1,
        1.0 - s.beta1,
        s.beta2,
        1.0 - s.beta2,
        s.bias2.sqrt(),
        s.eps,
        1.0 - s.lr * s.weight_decay,
        s.lr / s.bias1,
    ]
    .map(|x| x as f32);
    let (ps, ms, vs, gs) = (
        values_mut(&mut p),
        values_mut(&mut m),
        values_mut(&mut v),
        values(g),
    );
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        ps.par_chunks_mut(CHUNK)
            .zip(ms.par_chunks_mut(CHUNK))
            .zip(vs.par_chunks_mut(CHUNK))
            .zip(gs.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| update(p, m, v, g, c));
    }
    #[cfg(target_arch = "wasm32")]
    update(ps, ms, vs, gs, c);
    [p, m, v]
}

vectorised!(update(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], c: [f32; 8]) {
    let [b1, one_minus_b1, b2, one_minus_b2, sqrt_bias2, eps, decay, step] = c;
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        *m = *m * b1 + g * one_minus_b1;
        *v = *v * b2 + g * g * one_minus_b2;
        let denom = v.sqrt() / sqrt_bias2 + eps;
        *p = *p * decay - *m / denom * step;
    }
});

#[cfg(test)]
mod tests {
    use super::super::flex::values_of;
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// Flex's one pass gives what Burn's operations give, over three steps (the moments carried),
    /// on a length that is not a multiple of the vector width or of a task.
    #[test]
    fn flex_pass_matches_burns_operations() {
        let device = Device::flex();
        let n = 2 * CHUNK + 37;
        let normal = |std| Tensor::<1>::random([n], Distribution::Normal(0.0, std), &device);
        let (mut ours, mut theirs) = {
            let (p, m, v) = (
                normal(1.0),
                Tensor::zeros([n], &device),
                Tensor::zeros([n], &device),
            );
            ([p.clone(), m.clone(), v.clone()], [p, m, v])
        };
        for t in 1..=3 {
            let g = normal(0.1);
            let s = AdamWStep {
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                lr: 1e-3,
                weight_decay: 0.05,
                bias1: 1.0 - 0.9f64.powi(t),
                bias2: 1.0 - 0.95f64.powi(t),
            };
            let [p, m, v] = ours;
            ours = adamw_update(p, g.clone(), m, v, &s);
            let [p, m, v] = theirs;
            theirs = composed(p, g, m, v, &s);
        }
        for (name, (a, b)) in ["p", "m", "v"].iter().zip(ours.into_iter().zip(theirs)) {
            for (i, (x, y)) in values_of(a).iter().zip(values_of(b)).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-6 * y.abs().max(1e-3),
                    "{name}[{i}]: {x} vs Burn {y}"
                );
            }
        }
    }
}
