//! What the kernels share: which tensors are theirs (f32 on Flex, under autodiff or not), the
//! entry of a one-input kernel, Flex buffers as f32 slices, and the checkpointing strategy a
//! dispatch tensor carries.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind, Flex,
    GradientCheckpointingStrategy, TensorMetadata,
};
use burn::tensor::{DType, Shape, Tensor, TensorData};

/// A Flex tensor under autodiff.
pub type Tracked = FloatTensor<Autodiff<Flex>>;

/// `Some(tracked)` for an f32 Flex tensor (under autodiff or not), `None` for anything else.
pub fn on_flex(t: &DispatchTensor) -> Option<bool> {
    if t.kind.dtype() != DType::F32 {
        return None;
    }
    match &t.kind {
        DispatchTensorKind::Flex(BackendTensor::Float(_)) => Some(false),
        DispatchTensorKind::Autodiff(inner) => match inner.as_ref() {
            DispatchTensorKind::Flex(BackendTensor::Autodiff(_)) => Some(true),
            _ => None,
        },
        _ => None,
    }
}

/// The tensor for a kernel's output under autodiff, in the inputs' autodiff context.
pub fn from_tracked<const D: usize>(t: Tracked, autodiff: DispatchAutodiffContext) -> Tensor<D> {
    let kind = DispatchTensorKind::Autodiff(Box::new(DispatchTensorKind::Flex(
        BackendTensor::Autodiff(t),
    )));
    Tensor::from_dispatch(DispatchTensor { kind, autodiff })
}

/// The entry of a one-input kernel: `plain` runs on an f32 Flex tensor, `tracked` on one under
/// autodiff (told whether the run checkpoints), `other` (Burn's own operation) on anything else.
pub fn unary_on_flex<const D: usize>(
    x: Tensor<D>,
    plain: impl FnOnce(FlexTensor) -> FlexTensor,
    tracked: impl FnOnce(Tracked, bool) -> Tracked,
    other: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    let x = x.into_dispatch();
    if on_flex(&x).is_none() {
        return other(Tensor::from_dispatch(x));
    }
    let DispatchTensor { kind, autodiff } = x;
    match kind {
        DispatchTensorKind::Flex(BackendTensor::Float(t)) => {
            let kind = DispatchTensorKind::Flex(BackendTensor::Float(plain(t)));
            Tensor::from_dispatch(DispatchTensor { kind, autodiff })
        }
        DispatchTensorKind::Autodiff(inner) => match *inner {
            DispatchTensorKind::Flex(BackendTensor::Autodiff(t)) => {
                from_tracked(tracked(t, checkpoints(autodiff)), autodiff)
            }
            _ => unreachable!("on_flex accepted only Flex tensors"),
        },
        _ => unreachable!("on_flex accepted only Flex tensors"),
    }
}

/// The tensor with its values in one buffer from offset 0 (a copy only when they are not).
pub fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t
    } else {
        t.to_contiguous()
    }
}

/// `contiguous` for f32 tensors; any other dtype comes back as `Err`.
pub fn contiguous_f32(t: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    if t.dtype() == DType::F32 {
        Ok(contiguous(t))
    } else {
        Err(t)
    }
}

/// The values of a tensor `contiguous` returned.
pub fn values(t: &FlexTensor) -> &[f32] {
    &t.storage::<f32>()[..t.layout().num_elements()]
}

/// The same values, writable: in place when the tensor holds the only reference to its
/// buffer, else in a copy it then owns (Flex's copy-on-write; autodiff keeps shared inputs).
pub fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
    let n = t.layout().num_elements();
    &mut t.storage_mut::<f32>()[..n]
}

/// A tensor's values as f32: what the kernels' tests compare with Burn's.
#[cfg(test)]
pub fn values_of<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

pub fn from_vec(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Whether the operation's autodiff context asks for gradient checkpointing: the kernels then
/// record their step with Burn's `BalancedCheckpointing`, else with `NoCheckpointing`.
pub fn checkpoints(context: DispatchAutodiffContext) -> bool {
    context == DispatchAutodiffContext::Enabled(GradientCheckpointingStrategy::Balanced)
}
