//! nepa's own CPU kernels for operations where Flex's generic ones dominate a step's time
//! (docs/performance.md §8). Each one takes a Flex tensor when it has one and hands every
//! other backend (wgpu, CUDA, ...) Burn's own operation, so a caller never branches on the
//! device.

mod adamw;
mod attention;
#[cfg(feature = "cube")]
mod flash;
mod flex;
mod gelu;
mod gelu_math;
mod layer_norm;
mod layer_norm_math;
mod rope;
mod rope_math;
mod simd;
mod softmax;
mod softmax_math;

pub use adamw::{AdamWStep, adamw_update};
pub use attention::{
    AttentionMode, attention_inference, attention_mode, fused_attention, fused_kernels_take,
    set_attention_mode, takes_fused_kernels,
};
#[cfg(feature = "cube")]
pub use flash::{flash_attention, fused_attention_calls};
pub use gelu::gelu;
pub use layer_norm::layer_norm;
pub use rope::rotate_patches;
pub use softmax::attention_softmax;
