//! Fine-tuning head (docs/nepa.md §2.4): mean of the patch tokens of ẑ (not CLS) → fc_norm →
//! Linear.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::config::NepaConfig;
use crate::error::NepaError;
use crate::model::{Dense, ForwardOptions, NepaModel, NepaOutput, Norm};

/// `ViTNepaForImageClassification`: the backbone (bidirectional by default) plus a head.
#[derive(Module, Debug)]
pub struct NepaClassifier {
    pub vit_nepa: NepaModel,
    pub fc_norm: Norm,
    pub classifier: Dense,
}

impl NepaClassifier {
    /// A new classifier with a random backbone and a zero-initialised head, as the official
    /// `init_nepa_cls_from_pretrain.py` leaves it. `num_labels` must be in
    /// `1..=`[`crate::config::MAX_LABELS`], and the whole within the memory budget.
    pub fn new(config: &NepaConfig, num_labels: usize, device: &Device) -> Result<Self, NepaError> {
        config.validate_classifier(num_labels)?;
        Ok(Self::from_backbone(
            NepaModel::new(config, device)?,
            num_labels,
            device,
        ))
    }

    /// Wraps a (pretrained) backbone with a fresh zero head; attention becomes
    /// bidirectional, as in the official fine-tuning.
    pub fn from_backbone(backbone: NepaModel, num_labels: usize, device: &Device) -> Self {
        let d = backbone.hidden_size();
        let eps = backbone.layernorm.eps;
        Self {
            vit_nepa: backbone.set_causal(false),
            fc_norm: Norm::new(d, eps, true, true, device),
            classifier: Dense::new(d, num_labels, true, 0.0, device),
        }
    }

    pub fn num_labels(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    /// Mean-pooled, normalised patch features `[B, D]` from a backbone output.
    pub fn pooled(&self, output: &NepaOutput) -> Tensor<2> {
        let [b, t, d] = output.last_hidden_state.dims();
        let patches = output.last_hidden_state.clone().narrow(1, 1, t - 1);
        self.fc_norm.forward(patches.mean_dim(1).reshape([b, d]))
    }

    /// Logits `[B, num_labels]` and the backbone output.
    pub fn forward_with_output(
        &self,
        pixels: Tensor<4>,
        options: &ForwardOptions,
    ) -> (Tensor<2>, NepaOutput) {
        let output = self.vit_nepa.forward(pixels, options);
        let logits = self.classifier.forward(self.pooled(&output));
        (logits, output)
    }

    /// Logits `[B, num_labels]`.
    pub fn forward(&self, pixels: Tensor<4>, options: &ForwardOptions) -> Tensor<2> {
        self.forward_with_output(pixels, options).0
    }
}
