//! LayerNorm under autodiff on Flex: one kernel forward and one backward (three gradients),
//! where Burn composes it from nine primitives, each with its own buffer and backward step
//! (docs/performance.md §8). Without autodiff, and on other backends, Burn's `layer_norm`
//! runs (Flex's is already one pass forward).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{
    BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind, Flex,
    TensorMetadata,
};
use burn::tensor::module;
use burn::tensor::{Tensor, TensorData};

use super::flex::{
    Tracked, checkpoints, contiguous, from_tracked, from_vec, on_flex, values, values_mut,
};
use super::layer_norm_math;

/// LayerNorm over the last dimension: (x − mean)/√(var + eps)·γ + β.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Option<Tensor<1>>,
    eps: f64,
) -> Tensor<D> {
    let (x, gamma) = (x.into_dispatch(), gamma.into_dispatch());
    let beta = beta.map(Tensor::into_dispatch);
    let inputs = [Some(&x), Some(&gamma), beta.as_ref()];
    let all_f32_on_flex = inputs.iter().flatten().all(|t| on_flex(t).is_some());
    let any_tracked = inputs.iter().flatten().any(|t| on_flex(t) == Some(true));
    if !(all_f32_on_flex && any_tracked) {
        let beta = beta.map(Tensor::from_dispatch);
        return module::layer_norm(
            Tensor::from_dispatch(x),
            Tensor::from_dispatch(gamma),
            beta,
            eps,
        );
    }
    let autodiff = inputs.iter().flatten().map(|t| t.autodiff).fold(
        DispatchAutodiffContext::Disabled,
        DispatchAutodiffContext::merge,
    );
    let beta = beta.map(lift).unwrap_or_else(|| {
        Tracked::new(FlexTensor::from_data(TensorData::zeros::<f32, _>([gamma
            .kind
            .shape()[0]])))
    });
    let (x, gamma) = (lift(x), lift(gamma));
    let out = if checkpoints(autodiff) {
        tracked::<BalancedCheckpointing>(x, gamma, beta, eps)
    } else {
        tracked::<NoCheckpointing>(x, gamma, beta, eps)
    };
    from_tracked(out, autodiff)
}

/// An autodiff tensor for an input `on_flex` accepted; a plain one becomes a constant.
fn lift(t: DispatchTensor) -> Tracked {
    match t.kind {
        DispatchTensorKind::Flex(BackendTensor::Float(t)) => Tracked::new(t),
        DispatchTensorKind::Autodiff(inner) => match *inner {
            DispatchTensorKind::Flex(BackendTensor::Autodiff(t)) => t,
            _ => unreachable!("on_flex accepted only Flex tensors"),
        },
        _ => unreachable!("on_flex accepted only Flex tensors"),
    }
}

#[derive(Debug, Clone)]
struct State {
    x: FlexTensor,
    gamma: FlexTensor,
    eps: f32,
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let State { x, gamma, eps } = ops.state;
        // The output's gradient becomes x's, overwritten in place.
        let mut dx = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, gamma) = (contiguous(x), contiguous(gamma));
        let (dgamma, dbeta) =
            layer_norm_math::backward(values(&x), values(&gamma), eps, values_mut(&mut dx));
        let [px, pgamma, pbeta] = ops.parents;
        let d = gamma.shape();
        for (parent, grad) in [
            (px, dx),
            (pgamma, from_vec(dgamma, d.clone())),
            (pbeta, from_vec(dbeta, d)),
        ] {
            if let Some(parent) = parent {
                grads.register::<Flex>(parent.id, grad);
            }
        }
    }
}

fn tracked<C: CheckpointStrategy>(x: Tracked, gamma: Tracked, beta: Tracked, eps: f64) -> Tracked {
    let (xs, gs) = (
        contiguous(x.primitive().clone()),
        contiguous(gamma.primitive().clone()),
    );
    let bs = contiguous(beta.primitive().clone());
    let mut ys = vec![0.0f32; xs.layout().num_elements()];
    layer_norm_math::forward(values(&xs), values(&gs), values(&bs), eps as f32, &mut ys);
    let out = from_vec(ys, xs.shape());
    // Compute-bound: a checkpointing strategy keeps the inputs rather than recomputing them.
    match LayerNormBackward
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = State {
                x: xs,
                gamma: gs,
                eps: eps as f32,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[cfg(test)]
mod tests {
    use super::super::flex::values_of;
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn assert_close(what: &str, got: Vec<f32>, want: Vec<f32>) {
        assert_eq!(got.len(), want.len(), "{what}: sizes");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 2e-5 * w.abs().max(1.0),
                "{what}[{i}]: {g} vs Burn {w}"
            );
        }
    }

    /// Output and the gradients of x, γ and β agree with Burn's composed LayerNorm, with γ and
    /// β tracked, γ a constant (the QK-norm's cached weight), β absent, and a transposed input.
    #[test]
    fn matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        let normal = |shape: [usize; 3], std| {
            Tensor::<3>::random(shape, Distribution::Normal(0.5, std), &device)
        };
        let x = normal([5, 33, 24], 2.0);
        let gamma = Tensor::<1>::random([24], Distribution::Normal(1.0, 0.5), &device);
        let beta = Tensor::<1>::random([24], Distribution::Normal(0.0, 0.5), &device);
        let weights = normal([5, 33, 24], 1.0);
        type Norm = fn(Tensor<3>, Tensor<1>, Option<Tensor<1>>, f64) -> Tensor<3>;
        let run = |f: Norm, x: Tensor<3>, track_gamma: bool, with_beta: bool| {
            let x = x.require_grad();
            let g = if track_gamma {
                gamma.clone().require_grad()
            } else {
                gamma.clone().inner()
            };
            let b = beta.clone().require_grad();
            let y = f(x.clone(), g.clone(), with_beta.then(|| b.clone()), 1e-6);
            let grads = (y.clone() * weights.clone()).sum().backward();
            let grad = |t: Option<Tensor<1>>| t.map(values_of).unwrap_or_default();
            (
                values_of(y),
                values_of(x.grad(&grads).unwrap()),
                grad(g.grad(&grads)),
                grad(if with_beta { b.grad(&grads) } else { None }),
            )
        };
        let inputs = [x.clone(), normal([33, 5, 24], 2.0).swap_dims(0, 1)];
        // The kernel's path is taken: a tracked Flex tensor is recognised as one.
        assert_eq!(
            on_flex(&x.clone().require_grad().into_dispatch()),
            Some(true)
        );
        assert_eq!(on_flex(&x.clone().inner().into_dispatch()), Some(false));
        for (input, track_gamma, with_beta) in [
            (0, true, true),
            (0, false, true),
            (0, true, false),
            (1, true, true),
        ] {
            let ours = run(layer_norm, inputs[input].clone(), track_gamma, with_beta);
            let burn = run(
                module::layer_norm,
                inputs[input].clone(),
                track_gamma,
                with_beta,
            );
            let case = format!("input {input}, gamma tracked {track_gamma}, beta {with_beta}");
            assert_close(&format!("{case}: y"), ours.0, burn.0);
            assert_close(&format!("{case}: dx"), ours.1, burn.1);
            assert_close(&format!("{case}: dgamma"), ours.2, burn.2);
            assert_close(&format!("{case}: dbeta"), ours.3, burn.3);
        }
    }
}
