//! Attention for inference: softmax(q·kᵀ)·v with the scale already folded into q
//! (docs/performance.md §7–8). On Flex, nepa's softmax kernel between two matrix products:
//! Flex's fused attention op evaluates its exponential with libm one element at a time (the
//! gain is measured in docs/results/cpu-vs-pytorch.md). Every other backend gets Burn's
//! `attention` op without a `scale` (Burn 0.22.1's cubecl backends skip their fused kernels
//! when one is given; docs/performance.md §8), or nepa's fused kernels (docs/attention.md).

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor};

use std::sync::atomic::{AtomicBool, Ordering};

use super::flex::on_flex;
use super::softmax::attention_softmax;

/// Which attention the model takes on the cubecl backends (wgpu, WebGPU, Vulkan, CUDA):
/// nepa's fused kernels (docs/attention.md §Fused attention), or softmax(q·kᵀ)·v written out
/// with Burn's operations, the probabilities materialised. Flex always takes its own path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionMode {
    Fused,
    Decomposed,
}

impl AttentionMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fused => "fused",
            Self::Decomposed => "decomposed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fused" => Some(Self::Fused),
            "decomposed" => Some(Self::Decomposed),
            _ => None,
        }
    }
}

static FUSED: AtomicBool = AtomicBool::new(false);

/// The process's attention on the cubecl backends. Default: decomposed, the faster of the two
/// on lavapipe (docs/results/attention.md); the fused kernels keep O(T) memory for backward.
pub fn attention_mode() -> AttentionMode {
    match FUSED.load(Ordering::Relaxed) {
        true => AttentionMode::Fused,
        false => AttentionMode::Decomposed,
    }
}

pub fn set_attention_mode(mode: AttentionMode) {
    FUSED.store(mode == AttentionMode::Fused, Ordering::Relaxed);
}

/// Attention through nepa's fused kernels when the mode says so and q, k and v are float
/// tensors (f32, f16, bf16) of a cubecl backend; `Err` hands the inputs back for any other
/// path.
#[cfg(feature = "cube")]
pub fn fused_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    causal: bool,
) -> Result<Tensor<4>, Box<[Tensor<4>; 3]>> {
    if attention_mode() == AttentionMode::Decomposed {
        return Err(Box::new([q, k, v]));
    }
    super::flash::flash_attention(q, k, v, causal, 1.0)
}

/// Whether attention on `device` takes nepa's fused kernels (the mode is fused and the device
/// a cubecl one).
#[cfg(feature = "cube")]
pub fn takes_fused_kernels(device: &burn::tensor::Device) -> bool {
    attention_mode() == AttentionMode::Fused
        && super::flash::on_cube(&Tensor::<1>::zeros([1], device).into_dispatch())
}

/// Whether attention over `q` (and k, v of its kind) takes nepa's fused kernels.
#[cfg(feature = "cube")]
pub fn fused_kernels_take(q: &Tensor<4>) -> bool {
    attention_mode() == AttentionMode::Fused && super::flash::on_cube(&q.clone().into_dispatch())
}

#[cfg(not(feature = "cube"))]
pub fn takes_fused_kernels(_device: &burn::tensor::Device) -> bool {
    false
}

#[cfg(not(feature = "cube"))]
pub fn fused_kernels_take(_q: &Tensor<4>) -> bool {
    false
}

/// Without the cubecl kernels compiled in, every tensor takes Burn's operations.
#[cfg(not(feature = "cube"))]
pub fn fused_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    _causal: bool,
) -> Result<Tensor<4>, Box<[Tensor<4>; 3]>> {
    Err(Box::new([q, k, v]))
}

/// `[B, H, T, head_dim]` each; `causal_mask` as for [`attention_softmax`].
pub fn attention_inference(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    causal_mask: Option<&Tensor<4, Bool>>,
) -> Tensor<4> {
    let plain_on_flex = |t: &Tensor<4>| on_flex(&t.clone().into_dispatch()) == Some(false);
    if plain_on_flex(&q) && plain_on_flex(&k) && plain_on_flex(&v) {
        let probs = attention_softmax(q.matmul(k.swap_dims(2, 3)), causal_mask);
        return probs.matmul(v);
    }
    // Burn's cubecl backends take their fused kernels only without a `scale`: q, which carries
    // 1/√d already (docs/performance.md §7), is scaled back and Burn applies 1/√d itself. On
    // lavapipe that op ran 5× faster than the decomposed path (docs/results/attention.md).
    let head_dim = q.dims()[3] as f32;
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal_mask.is_some(),
    };
    attention(q * head_dim.sqrt(), k, v, None, None, options)
}

#[cfg(test)]
mod tests {
    use super::super::flex::values_of;
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    /// On Flex the products with nepa's softmax give Burn's fused op's result, causal or not,
    /// with the heads as strided views (as the model passes them).
    #[test]
    fn flex_matches_burns_fused_op() {
        let device = Device::flex();
        let t = 11;
        let causal: Vec<bool> = (0..t * t).map(|i| i % t > i / t).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(causal, [t, t]), &device)
            .reshape([1, 1, t, t]);
        let qkv = Tensor::<4>::random([2, t, 9, 8], Distribution::Normal(0.0, 1.0), &device)
            .swap_dims(1, 2);
        let [q, k, v] = [0, 1, 2].map(|i| qkv.clone().narrow(1, 3 * i, 3));
        for mask in [Some(&mask), None] {
            let ours = attention_inference(q.clone(), k.clone(), v.clone(), mask);
            let options = AttentionModuleOptions {
                scale: Some(1.0),
                softcap: None,
                is_causal: mask.is_some(),
            };
            let burn = attention(q.clone(), k.clone(), v.clone(), None, None, options);
            let (ours, burn) = (values_of(ours), values_of(burn));
            for (i, (a, b)) in ours.iter().zip(&burn).enumerate() {
                assert!(
                    (a - b).abs() < 1e-5,
                    "causal {}: [{i}] {a} vs {b}",
                    mask.is_some()
                );
            }
        }
    }
}
