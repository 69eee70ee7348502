//! What the kernels share: Flex buffers as f32 slices, and the checkpointing strategy a
//! dispatch tensor carries.

use burn::backend::flex::FlexTensor;
use burn::backend::{DispatchAutodiffContext, GradientCheckpointingStrategy};
use burn::tensor::{DType, Shape, TensorData};

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

pub fn from_vec(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Whether the operation's autodiff context asks for gradient checkpointing: the kernels then
/// record their step with Burn's `BalancedCheckpointing`, else with `NoCheckpointing`.
pub fn checkpoints(context: DispatchAutodiffContext) -> bool {
    context == DispatchAutodiffContext::Enabled(GradientCheckpointingStrategy::Balanced)
}
