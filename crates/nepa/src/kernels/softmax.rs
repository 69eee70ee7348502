//! The attention probabilities on Flex: one kernel forward (the causal mask inside) and, under
//! autodiff, one backward step, where Burn composes a masked fill and a softmax of five
//! primitives, each with its own buffer and backward step (docs/performance.md §8). On other
//! backends Burn's `mask_fill` and `softmax` run.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::tensor::{Bool, Tensor, activation};

use super::flex::{Tracked, contiguous, unary_on_flex, values, values_mut};
use super::softmax_math::{self, Rows};

/// Softmax over the last dimension of attention logits `[B, H, T, T]`. `causal_mask` is the
/// model's cached causal mask (`[1, 1, T, T]`, true where the key comes after the query); the
/// kernel applies that rule itself, so only Burn's path reads the mask.
pub fn attention_softmax(scores: Tensor<4>, causal_mask: Option<&Tensor<4, Bool>>) -> Tensor<4> {
    let [_, _, queries, keys] = scores.dims();
    let shape = Rows {
        queries,
        keys,
        causal: causal_mask.is_some(),
    };
    unary_on_flex(
        scores,
        |t| forward(t, shape),
        |t, checkpointed| match checkpointed {
            true => tracked::<BalancedCheckpointing>(t, shape),
            false => tracked::<NoCheckpointing>(t, shape),
        },
        |scores| burn_softmax(scores, causal_mask),
    )
}

fn burn_softmax(scores: Tensor<4>, causal_mask: Option<&Tensor<4, Bool>>) -> Tensor<4> {
    let scores = match causal_mask {
        Some(mask) => {
            let dims = scores.dims();
            scores.mask_fill(mask.clone().expand(dims), f32::NEG_INFINITY)
        }
        None => scores,
    };
    activation::softmax(scores, 3)
}

/// The probabilities, computed in the logits' buffer when nothing else holds it.
fn forward(scores: FlexTensor, shape: Rows) -> FlexTensor {
    let mut probs = contiguous(scores);
    softmax_math::forward_in_place(values_mut(&mut probs), shape);
    probs
}

#[derive(Debug, Clone)]
struct State {
    probs: FlexTensor,
    shape: Rows,
}

/// The backward step: the output is the state.
#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let State { probs, shape } = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let mut grad = contiguous(grad);
            softmax_math::backward_in_place(values(&probs), values_mut(&mut grad), shape);
            grad
        });
    }
}

fn tracked<C: CheckpointStrategy>(t: Tracked, shape: Rows) -> Tracked {
    // Compute-bound: a checkpointing strategy keeps the output rather than recomputing it.
    match SoftmaxBackward
        .prepare::<C>([t.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let probs = forward(t.into_primitive(), shape);
            prep.finish(
                State {
                    probs: probs.clone(),
                    shape,
                },
                probs,
            )
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(t.into_primitive(), shape)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::flex::{on_flex, values_of};
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    /// Probabilities and the logits' gradient agree with Burn's masked fill + softmax, causal
    /// or not, on a plain and on a checkpointing autodiff device, and on a transposed input;
    /// the kernel's path is the one taken.
    #[test]
    fn matches_burn_forward_and_backward() {
        let t = 9;
        let causal: Vec<bool> = (0..t * t).map(|i| i % t > i / t).collect();
        for device in [
            Device::flex().autodiff(),
            Device::flex().autodiff().gradient_checkpointing(),
        ] {
            let mask =
                Tensor::<2, Bool>::from_data(TensorData::new(causal.clone(), [t, t]), &device)
                    .reshape([1, 1, t, t]);
            let logits = [
                Tensor::<4>::random([2, 3, t, t], Distribution::Normal(0.0, 3.0), &device),
                Tensor::<4>::random([2, 3, t, t], Distribution::Normal(0.0, 3.0), &device)
                    .swap_dims(2, 3),
            ];
            let weights =
                Tensor::<4>::random([2, 3, t, t], Distribution::Normal(0.0, 1.0), &device);
            let dispatch = logits[0].clone().require_grad().into_dispatch();
            assert_eq!(on_flex(&dispatch), Some(true), "the kernel's path is taken");
            type Softmax = fn(Tensor<4>, Option<&Tensor<4, Bool>>) -> Tensor<4>;
            let run = |f: Softmax, x: Tensor<4>, mask: Option<&Tensor<4, Bool>>| {
                let x = x.require_grad();
                let y = f(x.clone(), mask);
                let grads = (y.clone() * weights.clone()).sum().backward();
                (values_of(y), values_of(x.grad(&grads).unwrap()))
            };
            for (i, x) in logits.iter().enumerate() {
                for mask in [Some(&mask), None] {
                    let (ours, burn) = (
                        run(attention_softmax, x.clone(), mask),
                        run(burn_softmax, x.clone(), mask),
                    );
                    let case = format!("input {i}, causal {}", mask.is_some());
                    for (what, got, want) in [("y", &ours.0, &burn.0), ("dx", &ours.1, &burn.1)] {
                        for (j, (g, w)) in got.iter().zip(want).enumerate() {
                            assert!((g - w).abs() <= 1e-6, "{case}: {what}[{j}] {g} vs Burn {w}");
                        }
                    }
                }
            }
        }
    }
}
