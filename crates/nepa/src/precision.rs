//! Mixed precision for training and inference (docs/performance.md §3).
//!
//! The weights, the gradients' accumulation into them and the AdamW state stay f32 (the
//! "master weights"); only the matrix products run in bf16 or f16: every linear layer, the
//! patch embedding, QKᵀ and P·V. Their inputs are cast down just before the product and the
//! product is cast back to f32 at once, so LayerNorm, softmax, RoPE, the residual stream and
//! the loss all run in f32, as under PyTorch's autocast (which the official recipe trains
//! with). A cast is differentiable: backward casts the gradient back to f32.
//!
//! f16 has a narrow exponent range: without loss scaling, gradients below ~6e-8 flush to
//! zero. bf16 has f32's range and needs no scaling; it is the one to use where the device
//! has it (CUDA). wgpu offers f16 only where the adapter has the `shader-f16` feature.

use burn::tensor::module::linear;
use burn::tensor::{Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::NepaError;

/// The floating-point type of the matrix products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Matrix products in bfloat16 (8-bit exponent, 7-bit mantissa).
    Bf16,
    /// Matrix products in float16 (5-bit exponent, 10-bit mantissa).
    F16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    /// `"f32"`, `"bf16"` or `"f16"`: the CLI's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The run report's `dtype` (docs/run-report.md §1.2).
    pub fn report_dtype(self) -> &'static str {
        match self {
            Precision::F32 => "float32",
            Precision::Bf16 => "bfloat16-mixed",
            Precision::F16 => "float16-mixed",
        }
    }

    pub fn parse(text: &str) -> Result<Self, NepaError> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                NepaError::Config(format!("precision `{text}`: expected f32, bf16 or f16"))
            })
    }

    /// The low-precision type of the products, `None` for f32.
    pub fn product_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F16 => Some(FloatDType::F16),
        }
    }

    /// Refuses a precision the device cannot compute in, with a message that says what to
    /// use instead (computing in an unsupported type gives garbage, not an error). The
    /// message names precisions, not a front end's switch: the CLI adds its flag.
    pub fn check(self, device: &Device) -> Result<(), NepaError> {
        match self.product_dtype() {
            Some(dtype) if !device.supports_dtype(dtype) => Err(NepaError::Config(format!(
                "this device cannot compute in {}: use f32{}",
                self.name(),
                if self == Precision::F16 {
                    " or bf16"
                } else {
                    " or f16"
                }
            ))),
            _ => Ok(()),
        }
    }

    /// `x` in the products' type (f32 stays f32).
    pub(crate) fn down<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self.product_dtype() {
            Some(dtype) => x.cast(dtype),
            None => x,
        }
    }

    /// `x` back in f32.
    pub(crate) fn up<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self.product_dtype() {
            Some(_) => x.cast(FloatDType::F32),
            None => x,
        }
    }

    /// `x · w + b` in this precision, returned in f32, as one `[rows, d_in] · [d_in, d_out]`
    /// product over every leading dimension of `x` (docs/performance.md §7).
    ///
    /// Burn's `linear` keeps a batched product, the weight broadcast over the batch, whenever
    /// folding the batch into the rows would make the output less square: for NEPA-B at batch
    /// 256 on Vulkan a step then asked for one buffer of exactly one MLP weight per image
    /// (256 × 768 × 3072 f32, 2.25 GiB, over the device's largest buffer), and on Flex the
    /// projections back to D ran as one small product per image. One flat product is what
    /// PyTorch's `linear` computes.
    pub fn linear<const D: usize>(
        self,
        x: Tensor<D>,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    ) -> Tensor<D> {
        let mut dims = x.dims();
        let d_in = dims[D - 1];
        dims[D - 1] = weight.dims()[1];
        let rows = x.shape().num_elements() / d_in.max(1);
        self.linear_2d(x.reshape([rows, d_in]), weight, bias)
            .reshape(dims)
    }

    fn linear_2d(self, x: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
        if self == Precision::F32 {
            return linear(x, weight, bias);
        }
        self.up(linear(
            self.down(x),
            self.down(weight),
            bias.map(|b| self.down(b)),
        ))
    }

    /// `a · b` (batched) in this precision, returned in f32.
    pub fn matmul<const D: usize>(self, a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
        if self == Precision::F32 {
            return a.matmul(b);
        }
        self.up(self.down(a).matmul(self.down(b)))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
        }
        assert_eq!(Precision::parse(" BF16 ").unwrap(), Precision::Bf16);
        let err = Precision::parse("fp8").unwrap_err().to_string();
        assert!(err.contains("fp8") && err.contains("bf16"), "{err}");
    }

    #[test]
    fn low_precision_products_are_close_to_f32_and_come_back_in_f32() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<2>::random([16, 8], Distribution::Normal(0.0, 0.25), &device);
        let b = Tensor::<1>::random([8], Distribution::Normal(0.0, 1.0), &device);
        let exact = Precision::F32.linear(x.clone(), w.clone(), Some(b.clone()));
        for p in [Precision::Bf16, Precision::F16] {
            p.check(&device).unwrap();
            let low = p.linear(x.clone(), w.clone(), Some(b.clone()));
            assert_eq!(
                low.dtype(),
                exact.dtype(),
                "{p}: the product comes back in f32"
            );
            // bf16 keeps 8 bits of mantissa: relative error ~2⁻⁸ per operand.
            low.into_data()
                .assert_approx_eq::<f32>(&exact.clone().into_data(), Tolerance::absolute(0.1));
        }
    }
}
