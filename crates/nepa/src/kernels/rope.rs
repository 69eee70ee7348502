//! RoPE on Flex through nepa's kernel (`rope_math`): one pass forward and one backward step
//! under autodiff, where Burn's composition takes two narrows, a negation, a concatenation,
//! two products with the expanded tables, a sum, and the narrow and concatenation that keep CLS
//! apart, each with its own buffer and backward step (docs/performance.md §8). Every other
//! backend gets that composition.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::{BackendTensor, DispatchTensorKind, Flex, TensorMetadata};
use burn::tensor::{DType, Tensor};

use super::flex::{Tracked, contiguous, unary_on_flex, values, values_mut};
use super::rope_math::Rotation;
use crate::rope::RopeTables;

/// Rotates every token of `u` `[B, H, T, head_dim]` but the first (CLS is never rotated) with
/// the tables `[T − 1, head_dim]` (docs/nepa.md §2).
pub fn rotate_patches(u: Tensor<4>, rope: &RopeTables) -> Tensor<4> {
    let Some(tables) = Tables::of(rope) else {
        return burn_rotate_patches(u, rope);
    };
    let [_, _, tokens, head_dim] = u.dims();
    if u.dtype() != DType::F32 || tables.cos.shape().dims::<2>() != [tokens - 1, head_dim] {
        return burn_rotate_patches(u, rope);
    }
    unary_on_flex(
        u,
        |t| tables.forward(t),
        |t, checkpointed| match checkpointed {
            true => tracked::<BalancedCheckpointing>(t, tables.clone()),
            false => tracked::<NoCheckpointing>(t, tables.clone()),
        },
        |u| burn_rotate_patches(u, rope),
    )
}

/// Burn's composition, for every backend but Flex.
fn burn_rotate_patches(u: Tensor<4>, rope: &RopeTables) -> Tensor<4> {
    let [_, _, t, _] = u.dims();
    let cls = u.clone().narrow(2, 0, 1);
    let patches = rope.apply(u.narrow(2, 1, t - 1));
    Tensor::cat(vec![cls, patches], 2)
}

/// The cos/sin tables as Flex buffers: constants (RoPE has no parameters; a training step's
/// rescaled tables are a function of constants too).
#[derive(Debug, Clone)]
struct Tables {
    cos: FlexTensor,
    sin: FlexTensor,
}

impl Tables {
    /// `None` unless both tables are f32 on Flex and record no gradient.
    fn of(rope: &RopeTables) -> Option<Self> {
        let flex = |t: &Tensor<2>| -> Option<FlexTensor> {
            if t.dtype() != DType::F32 || t.is_require_grad() {
                return None;
            }
            match t.clone().into_dispatch().kind {
                DispatchTensorKind::Flex(BackendTensor::Float(t)) => Some(contiguous(t)),
                DispatchTensorKind::Autodiff(inner) => match *inner {
                    DispatchTensorKind::Flex(BackendTensor::Autodiff(t)) => {
                        Some(contiguous(t.into_primitive()))
                    }
                    _ => None,
                },
                _ => None,
            }
        };
        Some(Self {
            cos: flex(&rope.cos)?,
            sin: flex(&rope.sin)?,
        })
    }

    fn rotation(&self, head_dim: usize) -> Rotation<'_> {
        let cos = values(&self.cos);
        Rotation {
            cos,
            sin: values(&self.sin),
            tokens: cos.len() / head_dim + 1,
            head_dim,
        }
    }

    /// u rotated, in u's buffer when nothing else holds it.
    fn forward(&self, u: FlexTensor) -> FlexTensor {
        let mut u = contiguous(u);
        let head_dim = u.shape()[3];
        self.rotation(head_dim).forward_in_place(values_mut(&mut u));
        u
    }
}

/// The backward step: the tables are the state (the rotation is linear in u).
#[derive(Debug)]
struct RopeBackward;

impl Backward<Flex, 1> for RopeBackward {
    type State = Tables;

    fn backward(self, ops: Ops<Tables, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let tables = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let mut grad = contiguous(grad);
            let head_dim = grad.shape()[3];
            tables
                .rotation(head_dim)
                .backward_in_place(values_mut(&mut grad));
            grad
        });
    }
}

fn tracked<C: CheckpointStrategy>(t: Tracked, tables: Tables) -> Tracked {
    // Compute-bound: a checkpointing strategy keeps the state rather than recomputing it.
    match RopeBackward
        .prepare::<C>([t.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = tables.forward(t.into_primitive());
            prep.finish(tables, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(tables.forward(t.into_primitive())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::flex::values_of;
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn assert_close(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: sizes");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-6, "{what}[{i}]: {g} vs Burn {w}");
        }
    }

    /// The rotation and its gradient agree with Burn's composition: without autodiff, under
    /// autodiff with and without checkpointing, on a transposed input; the tables are taken.
    #[test]
    fn matches_burn_forward_and_backward() {
        let (rows, cols, head_dim) = (3, 4, 8);
        for device in [
            Device::flex(),
            Device::flex().autodiff(),
            Device::flex().autodiff().gradient_checkpointing(),
        ] {
            let rope = RopeTables::new(rows, cols, head_dim, 100.0, 1.3, &device);
            assert!(Tables::of(&rope).is_some(), "the kernel's path is taken");
            let t = rows * cols + 1;
            let normal = Distribution::Normal(0.0, 1.0);
            let inputs = [
                Tensor::<4>::random([2, 3, t, head_dim], normal, &device),
                Tensor::<4>::random([2, t, 3, head_dim], normal, &device).swap_dims(1, 2),
            ];
            let weights = Tensor::<4>::random([2, 3, t, head_dim], normal, &device);
            for (i, u) in inputs.iter().enumerate() {
                let case = format!("{device:?}, input {i}");
                if !device.is_autodiff() {
                    let (ours, burn) = (
                        rotate_patches(u.clone(), &rope),
                        burn_rotate_patches(u.clone(), &rope),
                    );
                    assert_close(&case, &values_of(ours), &values_of(burn));
                    continue;
                }
                type Rotate = fn(Tensor<4>, &RopeTables) -> Tensor<4>;
                let run = |f: Rotate| {
                    let u = u.clone().require_grad();
                    let y = f(u.clone(), &rope);
                    let grads = (y.clone() * weights.clone()).sum().backward();
                    (values_of(y), values_of(u.grad(&grads).unwrap()))
                };
                let (ours, burn) = (run(rotate_patches), run(burn_rotate_patches));
                assert_close(&format!("{case}: y"), &ours.0, &burn.0);
                assert_close(&format!("{case}: du"), &ours.1, &burn.1);
            }
        }
    }
}
