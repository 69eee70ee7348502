//! Fused attention on the cubecl backends (wgpu, WebGPU, Vulkan, CUDA) as nepa's own CubeCL
//! kernels (docs/attention.md §Fused attention): softmax(scale·q·kᵀ)·v without the `[B, H, T, T]`
//! probabilities, forward (O and the row log-sum-exp) and backward (dQ, dK, dV recomputed from
//! Q, K and the log-sum-exp). It is a Burn backend extension: Burn routes it to the cubecl
//! backend, to a lazy operation of the fusion backend around it, and under autodiff to one
//! operation whose saved state is Q, K, V, O and the log-sum-exp.

mod backward;
mod cube;
mod forward;

use std::sync::atomic::{AtomicU64, Ordering};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, BackendTensor, Dispatch, DispatchTensor, DispatchTensorKind, TensorMetadata,
    backend_extension,
};
use burn::tensor::{DType, Tensor};

#[cfg(feature = "fusion")]
use burn::backend::fusion::custom::TensorSpec;

/// O is shaped as q with v's last dimension; the log-sum-exp as q without its last one.
#[cfg(feature = "fusion")]
fn forward_meta(
    q: &TensorSpec,
    _k: &TensorSpec,
    v: &TensorSpec,
    _causal: &bool,
    _scale: &f32,
) -> (TensorSpec, TensorSpec) {
    let [b, h, t, _] = q.shape.dims::<4>();
    let dv = v.shape.dims::<4>()[3];
    (
        TensorSpec::new([b, h, t, dv].into(), q.dtype),
        TensorSpec::new([b, h, t].into(), DType::F32),
    )
}

#[cfg(feature = "fusion")]
#[allow(clippy::too_many_arguments)]
fn backward_meta(
    q: &TensorSpec,
    k: &TensorSpec,
    v: &TensorSpec,
    _out: &TensorSpec,
    _lse: &TensorSpec,
    _grad: &TensorSpec,
    _causal: &bool,
    _scale: &f32,
) -> (TensorSpec, TensorSpec, TensorSpec) {
    (q.clone(), k.clone(), v.clone())
}

/// Fused attention over `[B, H, T, d]` float tensors (f32, f16, bf16; the log-sum-exp is f32).
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"), Autodiff)]
pub trait FlashAttentionOps: Backend {
    /// O = softmax(scale·q·kᵀ, causal or not)·v and the row log-sum-exp `[B, H, T]`.
    #[fusion(meta = forward_meta)]
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// dQ, dK, dV from the forward's inputs, O, its log-sum-exp and dO.
    #[fusion(meta = backward_meta)]
    #[allow(clippy::too_many_arguments)]
    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        causal: bool,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Whether the kernels take this tensor: f32, f16 or bf16 on a cubecl device, under autodiff
/// or not.
pub fn on_cube(t: &DispatchTensor) -> bool {
    if !matches!(t.kind.dtype(), DType::F32 | DType::F16 | DType::BF16) {
        return false;
    }
    match &t.kind {
        DispatchTensorKind::Cube(BackendTensor::Float(_)) => true,
        DispatchTensorKind::Autodiff(inner) => {
            matches!(
                inner.as_ref(),
                DispatchTensorKind::Cube(BackendTensor::Autodiff(_))
            )
        }
        _ => false,
    }
}

static CALLS: AtomicU64 = AtomicU64::new(0);

/// How many attention calls the fused kernels have taken in this process.
pub fn fused_attention_calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// softmax(scale·q·kᵀ)·v by the fused kernels when q, k and v are float tensors (f32, f16,
/// bf16) of a cubecl backend (`[B, H, T, d]`, any strides); `Err` hands the inputs back
/// otherwise.
pub fn flash_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    causal: bool,
    scale: f32,
) -> Result<Tensor<4>, Box<[Tensor<4>; 3]>> {
    let [q, k, v] = [q, k, v].map(Tensor::into_dispatch);
    let same_type = q.kind.dtype() == k.kind.dtype() && k.kind.dtype() == v.kind.dtype();
    if !(same_type && on_cube(&q) && on_cube(&k) && on_cube(&v)) {
        return Err(Box::new([q, k, v].map(Tensor::from_dispatch)));
    }
    CALLS.fetch_add(1, Ordering::Relaxed);
    let (out, _lse) = <Dispatch as FlashAttentionOps>::flash_attention(q, k, v, causal, scale);
    Ok(Tensor::from_dispatch(out))
}

#[derive(Debug)]
struct FlashBackward;

type SavedState<B> = (
    [FloatTensor<B>; 5], // q, k, v, O, log-sum-exp
    bool,
    f32,
);

impl<B: FlashAttentionOps> Backward<B, 3> for FlashBackward {
    type State = SavedState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let ([q, k, v, out, lse], causal, scale) = ops.state;
        let (dq, dk, dv) = B::flash_attention_backward(q, k, v, out, lse, grad, causal, scale);
        for (parent, g) in ops.parents.into_iter().zip([dq, dk, dv]) {
            if let Some(parent) = parent {
                grads.register::<B>(parent.id, g);
            }
        }
    }
}

/// One autodiff operation: the state kept for backward is Q, K, V, O and the log-sum-exp,
/// never the probabilities (docs/attention.md §Backward).
impl<B: FlashAttentionOps, C: CheckpointStrategy> FlashAttentionOps for Autodiff<B, C> {
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [q.node(), k.node(), v.node()];
        let [q, k, v] = [q, k, v].map(|t| t.into_primitive());
        let (out, lse) = B::flash_attention(q.clone(), k.clone(), v.clone(), causal, scale);
        let lse_out = FloatTensor::<Self>::new(lse.clone());
        // Compute-bound: a checkpointing strategy keeps the state rather than recomputing it.
        let out = match FlashBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                prep.finish(([q, k, v, out.clone(), lse], causal, scale), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        (out, lse_out)
    }

    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        causal: bool,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Gradients of gradients are not needed: the result is a constant.
        let [q, k, v, out, lse, grad] = [q, k, v, out, lse, grad].map(|t| t.into_primitive());
        let (dq, dk, dv) = B::flash_attention_backward(q, k, v, out, lse, grad, causal, scale);
        (
            FloatTensor::<Self>::new(dq),
            FloatTensor::<Self>::new(dk),
            FloatTensor::<Self>::new(dv),
        )
    }
}
