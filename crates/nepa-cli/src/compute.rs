//! How a training command computes: the precision of the matrix products and gradient
//! checkpointing (docs/performance.md §3–§4). Shared by `pretrain`, `finetune` and `bench`.

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use nepa::Precision;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionChoice {
    /// Everything in f32.
    F32,
    /// Matrix products in bfloat16; weights, optimizer, norms, softmax and loss in f32
    /// (CUDA; Flex computes it too, slowly).
    Bf16,
    /// Matrix products in float16 (wgpu adapters with shader-f16, CUDA), the rest in f32.
    F16,
}

impl From<PrecisionChoice> for Precision {
    fn from(choice: PrecisionChoice) -> Self {
        match choice {
            PrecisionChoice::F32 => Precision::F32,
            PrecisionChoice::Bf16 => Precision::Bf16,
            PrecisionChoice::F16 => Precision::F16,
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct ComputeArgs {
    /// Type of the matrix products; master weights and AdamW state stay f32.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::F32)]
    pub precision: PrecisionChoice,
    /// Recompute cheap activations in the backward pass instead of keeping them: less device
    /// memory (NEPA-B at batch 256 on one 80 GB GPU), a slower step.
    #[arg(long)]
    pub gradient_checkpointing: bool,
}

impl ComputeArgs {
    pub fn precision(&self) -> Precision {
        self.precision.into()
    }

    /// The autodiff device for training on `device`, after checking that it computes in
    /// the chosen precision.
    pub fn training_device(&self, device: &Device) -> Result<Device> {
        self.precision().check(device).context("--precision")?;
        let device = device.clone().autodiff();
        Ok(if self.gradient_checkpointing {
            device.gradient_checkpointing()
        } else {
            device
        })
    }

    /// What the run's first lines say about it.
    pub fn describe(&self) -> String {
        format!(
            "precision {}{}",
            self.precision(),
            if self.gradient_checkpointing {
                ", gradient checkpointing"
            } else {
                ""
            }
        )
    }
}
