//! Model configuration: the fields of the official `ViTNepaConfig` (spec §2.1), with presets.

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::NepaError;

/// Non-linearity of the MLP (`hidden_act` in the official config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Exact (erf) GELU, as in the released checkpoints.
    Gelu,
    /// SiLU; with `use_gated_mlp` this is the paper's SwiGLU.
    Silu,
}

/// Configuration of a NEPA vision transformer.
///
/// Field names follow the official Hugging Face `config.json`, so `serde_json` reads one
/// directly (extra fields are ignored). `image_size` may be a single number (square) or
/// `[height, width]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NepaConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// `[height, width]` in pixels; both must be multiples of `patch_size`.
    #[serde(deserialize_with = "deserialize_image_size")]
    pub image_size: [usize; 2],
    pub patch_size: usize,
    pub num_channels: usize,
    pub qkv_bias: bool,
    /// Whether queries and keys are LayerNorm'ed over the head dimension.
    pub qk_norm: bool,
    /// Whether that QK LayerNorm has a learnable weight (it never has a bias).
    pub qk_norm_affine: bool,
    /// Initial LayerScale value on both residual branches; `0` disables LayerScale.
    pub layerscale_value: f64,
    pub layer_norm_eps: f64,
    pub rope_theta: f64,
    /// Training-time RoPE coordinate augmentation: coordinates are multiplied by
    /// `exp(U(-ln s, ln s))`; `None` or values `<= 1` disable it.
    pub pos_embed_rescale: Option<f64>,
    /// Causal attention (pretraining) or bidirectional (fine-tuning).
    pub is_causal: bool,
    pub use_gated_mlp: bool,
    pub hidden_act: Activation,
    /// Maximum stochastic-depth rate; layer `l` uses `linspace(0, p, L)[l]`.
    pub drop_path_prob: f64,
    pub initializer_range: f64,
}

fn deserialize_image_size<'de, D: Deserializer<'de>>(d: D) -> Result<[usize; 2], D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Square(usize),
        Rect([usize; 2]),
    }
    Ok(match Size::deserialize(d)? {
        Size::Square(s) => [s, s],
        Size::Rect(r) => r,
    })
}

impl Default for NepaConfig {
    /// ViT-B/14 at 224 px, as the released pretraining checkpoint.
    fn default() -> Self {
        Self::base()
    }
}

impl NepaConfig {
    /// A free-size model with the official defaults for everything but the sizes.
    pub fn new(hidden_size: usize, num_hidden_layers: usize, num_attention_heads: usize) -> Self {
        Self {
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size: 4 * hidden_size,
            image_size: [224, 224],
            patch_size: 14,
            num_channels: 3,
            qkv_bias: true,
            qk_norm: true,
            qk_norm_affine: false,
            layerscale_value: 1e-5,
            layer_norm_eps: 1e-12,
            rope_theta: 100.0,
            pos_embed_rescale: Some(2.0),
            is_causal: true,
            use_gated_mlp: false,
            hidden_act: Activation::Gelu,
            drop_path_prob: 0.0,
            initializer_range: 0.02,
        }
    }

    /// ViT-Ti: D 192, 12 layers, 3 heads.
    pub fn tiny() -> Self {
        Self::new(192, 12, 3)
    }
    /// ViT-S: D 384, 12 layers, 6 heads.
    pub fn small() -> Self {
        Self::new(384, 12, 6)
    }
    /// ViT-B: D 768, 12 layers, 12 heads (`SixAILab/nepa-base-patch14-224`).
    pub fn base() -> Self {
        Self::new(768, 12, 12)
    }
    /// ViT-L: D 1024, 24 layers, 16 heads (`SixAILab/nepa-large-patch14-224`, QK-norm affine).
    pub fn large() -> Self {
        Self::new(1024, 24, 16).with_qk_norm_affine(true)
    }

    /// A preset by name: `tiny`, `small`, `base` or `large`.
    pub fn preset(name: &str) -> Result<Self, NepaError> {
        match name {
            "tiny" => Ok(Self::tiny()),
            "small" => Ok(Self::small()),
            "base" => Ok(Self::base()),
            "large" => Ok(Self::large()),
            other => Err(NepaError::Config(format!(
                "unknown preset `{other}` (expected tiny, small, base or large)"
            ))),
        }
    }

    /// Reads an official Hugging Face `config.json` (or one this crate wrote).
    pub fn from_json(json: &str) -> Result<Self, NepaError> {
        let config: Self = serde_json::from_str(json)
            .map_err(|e| NepaError::Config(format!("invalid NEPA config JSON: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    pub fn with_image_size(mut self, height: usize, width: usize) -> Self {
        self.image_size = [height, width];
        self
    }
    pub fn with_patch_size(mut self, patch_size: usize) -> Self {
        self.patch_size = patch_size;
        self
    }
    pub fn with_intermediate_size(mut self, intermediate_size: usize) -> Self {
        self.intermediate_size = intermediate_size;
        self
    }
    pub fn with_causal(mut self, is_causal: bool) -> Self {
        self.is_causal = is_causal;
        self
    }
    pub fn with_qk_norm(mut self, qk_norm: bool) -> Self {
        self.qk_norm = qk_norm;
        self
    }
    pub fn with_qk_norm_affine(mut self, affine: bool) -> Self {
        self.qk_norm_affine = affine;
        self
    }
    /// SwiGLU (`true`: gated MLP with SiLU) or the released GELU MLP (`false`).
    pub fn with_swiglu(mut self, swiglu: bool) -> Self {
        self.use_gated_mlp = swiglu;
        self.hidden_act = if swiglu {
            Activation::Silu
        } else {
            Activation::Gelu
        };
        self
    }
    pub fn with_drop_path(mut self, drop_path_prob: f64) -> Self {
        self.drop_path_prob = drop_path_prob;
        self
    }
    pub fn with_layerscale(mut self, value: f64) -> Self {
        self.layerscale_value = value;
        self
    }
    pub fn with_pos_embed_rescale(mut self, rescale: Option<f64>) -> Self {
        self.pos_embed_rescale = rescale;
        self
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Patch grid `(rows, cols)` for an image of `height × width` pixels.
    pub fn grid_for(&self, height: usize, width: usize) -> (usize, usize) {
        (height / self.patch_size, width / self.patch_size)
    }

    /// Patch grid of the configured image size.
    pub fn grid(&self) -> (usize, usize) {
        self.grid_for(self.image_size[0], self.image_size[1])
    }

    /// Sequence length `1 + rows·cols` (CLS first).
    pub fn seq_len(&self) -> usize {
        let (rows, cols) = self.grid();
        1 + rows * cols
    }

    /// Checks the invariants the model relies on, with a message naming the field.
    pub fn validate(&self) -> Result<(), NepaError> {
        let err = |m: String| Err(NepaError::Config(m));
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.num_hidden_layers == 0 {
            return err(
                "hidden_size, num_attention_heads and num_hidden_layers must be > 0".into(),
            );
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(4) {
            return err(format!(
                "head dimension {} must be divisible by 4 for 2D RoPE",
                self.head_dim()
            ));
        }
        if self.patch_size == 0 {
            return err("patch_size must be > 0".into());
        }
        let [h, w] = self.image_size;
        if h == 0
            || w == 0
            || !h.is_multiple_of(self.patch_size)
            || !w.is_multiple_of(self.patch_size)
        {
            return err(format!(
                "image_size {h}×{w} must be a positive multiple of patch_size {}",
                self.patch_size
            ));
        }
        if self.intermediate_size == 0 || self.num_channels == 0 {
            return err("intermediate_size and num_channels must be > 0".into());
        }
        if !(0.0..1.0).contains(&self.drop_path_prob) {
            return err(format!(
                "drop_path_prob {} must be in [0, 1)",
                self.drop_path_prob
            ));
        }
        if self.layer_norm_eps.is_nan()
            || self.layer_norm_eps <= 0.0
            || self.rope_theta.is_nan()
            || self.rope_theta <= 0.0
        {
            return err("layer_norm_eps and rope_theta must be > 0".into());
        }
        Ok(())
    }

    /// Stochastic-depth rate of layer `index` (`linspace(0, p, L)`).
    pub fn drop_path_rate(&self, index: usize) -> f64 {
        if self.num_hidden_layers <= 1 {
            return 0.0;
        }
        self.drop_path_prob * index as f64 / (self.num_hidden_layers - 1) as f64
    }

    /// Number of parameters of the backbone (no classification head).
    pub fn num_params(&self) -> usize {
        let d = self.hidden_size;
        let i = self.intermediate_size;
        let p = self.patch_size;
        let embed = d * self.num_channels * p * p + d + d;
        let qk_norm = if self.qk_norm && self.qk_norm_affine {
            2 * self.head_dim()
        } else {
            0
        };
        let attention = 4 * (d * d + d) + qk_norm;
        let mlp_in = if self.use_gated_mlp { 2 } else { 1 } * (d * i + i);
        let mlp = mlp_in + i * d + d;
        let layer = 2 * (2 * d) + attention + mlp + 2 * d;
        embed + self.num_hidden_layers * layer + 2 * d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_official_parameter_counts() {
        // Spec §2.1: ViT-B pretrain 85,527,552 and ViT-L pretrain 302,967,808.
        assert_eq!(NepaConfig::base().num_params(), 85_527_552);
        assert_eq!(NepaConfig::large().num_params(), 302_967_808);
        assert_eq!(NepaConfig::base().seq_len(), 257);
    }

    #[test]
    fn reads_hf_config_json_with_integer_image_size() {
        let json = r#"{"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "image_size": 224, "patch_size": 14, "qk_norm": true,
            "qk_norm_affine": false, "is_causal": true, "hidden_act": "gelu",
            "use_gated_mlp": false, "model_type": "vit_nepa", "layerscale_value": 1e-5}"#;
        let config = NepaConfig::from_json(json).unwrap();
        assert_eq!(config, NepaConfig::base());
    }

    #[test]
    fn invalid_configs_name_the_problem() {
        let e = NepaConfig::new(30, 2, 4)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not divisible"), "{e}");
        let e = NepaConfig::tiny()
            .with_image_size(30, 28)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("multiple of patch_size"), "{e}");
    }
}
