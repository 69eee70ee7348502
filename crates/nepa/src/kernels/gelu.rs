//! GELU on Flex through nepa's kernel (`gelu_math`), with its own backward pass under autodiff;
//! every other backend gets Burn's `gelu` for inference and the erf form written with tensor
//! operations under autodiff (docs/performance.md §8).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ActivationOps;
use burn::tensor::{Tensor, activation};

use super::flex::{Tracked, contiguous, contiguous_f32, unary_on_flex, values, values_mut};
use super::gelu_math::{gelu_grad_in_place, gelu_in_place};

/// GELU (the erf form, as PyTorch's `nn.GELU()`), element-wise.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    unary_on_flex(
        x,
        forward,
        |t, checkpointed| match checkpointed {
            true => tracked::<BalancedCheckpointing>(t),
            false => tracked::<NoCheckpointing>(t),
        },
        other_backends,
    )
}

/// GELU off Flex. Burn's `gelu` computes the erf form, but Burn 0.22.1's backward for it (the
/// default `ActivationOps::gelu_backward`, which the cubecl backends keep) is the derivative
/// of the tanh approximation: on wgpu the PyTorch parity fixtures' gradients were 1e-3 off
/// (relative) with it. Under autodiff the erf form is written out, x·½(1 + erf(x/√2)), so that
/// autodiff takes erf's exact derivative (2/√π·e^(−x²)); fusion runs it as one kernel.
fn other_backends<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !x.is_autodiff() {
        return activation::gelu(x);
    }
    let cdf = (x.clone() * std::f32::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5);
    x * cdf
}

/// GELU of an f32 tensor (`unary_on_flex` passes only those), in its buffer when nothing else
/// holds it.
fn forward(t: FlexTensor) -> FlexTensor {
    let mut t = contiguous(t);
    gelu_in_place(values_mut(&mut t));
    t
}

fn backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
    let (x, mut grad) = match (contiguous_f32(x), contiguous_f32(grad)) {
        (Ok(x), Ok(grad)) => (x, grad),
        (x, grad) => {
            return Flex::gelu_backward(x.unwrap_or_else(|t| t), grad.unwrap_or_else(|t| t));
        }
    };
    gelu_grad_in_place(values(&x), values_mut(&mut grad));
    grad
}

/// The backward step: the input is the state.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| backward(x, grad));
    }
}

fn tracked<C: CheckpointStrategy>(t: Tracked) -> Tracked {
    // Compute-bound: a checkpointing strategy keeps the input rather than recomputing it.
    match GeluBackward
        .prepare::<C>([t.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let x = t.primitive().clone();
            prep.finish(x.clone(), forward(x))
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(t.into_primitive())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::flex::values_of;
    use super::super::gelu_math::{gelu_grad_one, gelu_one};
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// Flex runs nepa's kernel (its values bit for bit), on contiguous and transposed inputs,
    /// and agrees with Burn's GELU.
    #[test]
    fn flex_takes_the_kernel_and_matches_burn() {
        let device = Device::flex();
        let x = Tensor::<2>::random([37, 45], Distribution::Normal(0.0, 3.0), &device);
        for input in [x.clone(), x.clone().swap_dims(0, 1)] {
            let xs = values_of(input.clone());
            let got = values_of(gelu(input.clone()));
            let burn = values_of(activation::gelu(input));
            for ((g, b), x) in got.iter().zip(&burn).zip(&xs) {
                assert_eq!(*g, gelu_one(*x));
                assert!(
                    (g - b).abs() <= 3e-7 * x.abs().max(1.0),
                    "GELU({x}): {g} vs Burn {b}"
                );
            }
        }
    }

    /// Under autodiff the gradient is nepa's derivative, and it agrees with Burn's.
    #[test]
    fn the_backward_pass_matches_burn() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::random([29, 31], Distribution::Normal(0.0, 3.0), &device);
        let weights = Tensor::<2>::random([29, 31], Distribution::Normal(0.0, 1.0), &device);
        let grad_of = |f: fn(Tensor<2>) -> Tensor<2>| {
            let x = x.clone().require_grad();
            let grads = (f(x.clone()) * weights.clone()).sum().backward();
            values_of(x.grad(&grads).unwrap())
        };
        let (ours, burn) = (grad_of(gelu), grad_of(activation::gelu));
        let (xs, ws) = (values_of(x.clone()), values_of(weights.clone()));
        for i in 0..xs.len() {
            assert_eq!(
                ours[i],
                gelu_grad_one(xs[i], ws[i]),
                "burn {} x {} w {}",
                burn[i],
                xs[i],
                ws[i]
            );
            assert!(
                (ours[i] - burn[i]).abs() <= 1e-6 * ws[i].abs().max(1.0),
                "at {i}"
            );
        }
    }
}
