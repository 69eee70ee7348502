//! Model configuration: the fields of the official `ViTNepaConfig` (docs/nepa.md §2.1), with
//! presets.

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::NepaError;

// Upper bounds on every size a config file can set. They are far above the published models
// (ViT-L: D 1024, 24 layers, 16 heads, MLP 4096, 224 px, patch 14) and exist so that a hostile
// or damaged file is refused by `validate` before anything is allocated.

/// Largest `hidden_size` accepted.
pub const MAX_HIDDEN_SIZE: usize = 8192;
/// Largest `num_hidden_layers` accepted.
pub const MAX_LAYERS: usize = 256;
/// Largest `num_attention_heads` accepted.
pub const MAX_HEADS: usize = 256;
/// Largest `intermediate_size` accepted.
pub const MAX_INTERMEDIATE_SIZE: usize = 65536;
/// Largest image height or width (pixels) accepted.
pub const MAX_IMAGE_SIDE: usize = 4096;
/// Largest `patch_size` accepted.
pub const MAX_PATCH_SIZE: usize = 256;
/// Largest sequence length (CLS + patches) accepted: a 128 × 128 patch grid.
pub const MAX_SEQ_LEN: usize = 1 + 128 * 128;
/// Largest number of classes of a classifier head.
pub const MAX_LABELS: usize = 100_000;

/// Memory the f32 parameters of one model may take: 4 GiB natively (ViT-L is 1.2 GB), 2 GiB
/// in the browser, whose wasm32 address space is 4 GiB in all.
#[cfg(not(target_family = "wasm"))]
pub const MODEL_MEMORY_BUDGET_BYTES: u64 = 4 << 30;
/// Memory the f32 parameters of one model may take: 4 GiB natively (ViT-L is 1.2 GB), 2 GiB
/// in the browser, whose wasm32 address space is 4 GiB in all.
#[cfg(target_family = "wasm")]
pub const MODEL_MEMORY_BUDGET_BYTES: u64 = 2 << 30;

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
            intermediate_size: hidden_size.saturating_mul(4),
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

    /// `hidden_size / num_attention_heads` (0 when there are no heads: an invalid config).
    pub fn head_dim(&self) -> usize {
        self.hidden_size
            .checked_div(self.num_attention_heads)
            .unwrap_or(0)
    }

    /// Patch grid `(rows, cols)` for an image of `height × width` pixels.
    pub fn grid_for(&self, height: usize, width: usize) -> (usize, usize) {
        // checked_div: an unvalidated config may have patch_size 0.
        (
            height.checked_div(self.patch_size).unwrap_or(0),
            width.checked_div(self.patch_size).unwrap_or(0),
        )
    }

    /// Patch grid of the configured image size.
    pub fn grid(&self) -> (usize, usize) {
        self.grid_for(self.image_size[0], self.image_size[1])
    }

    /// Sequence length `1 + rows·cols` (CLS first).
    pub fn seq_len(&self) -> usize {
        let (rows, cols) = self.grid();
        rows.saturating_mul(cols).saturating_add(1)
    }

    /// Checks the invariants the model relies on, with a message naming the field: every
    /// size positive and at most its `MAX_*` bound, the divisibilities the layers need, RGB
    /// input, finite floats in range, and the parameter memory within
    /// [`MODEL_MEMORY_BUDGET_BYTES`] ([`NepaError::TooLarge`]). Nothing is allocated, so a
    /// hostile file is refused before the model is built.
    pub fn validate(&self) -> Result<(), NepaError> {
        let err = |m: String| Err(NepaError::Config(m));
        // Upper bounds first: they keep every product below (seq_len, num_params) far from
        // overflow, and a checkpoint with absurd sizes is named as such.
        let bounded = [
            ("hidden_size", self.hidden_size, MAX_HIDDEN_SIZE),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            (
                "intermediate_size",
                self.intermediate_size,
                MAX_INTERMEDIATE_SIZE,
            ),
            ("patch_size", self.patch_size, MAX_PATCH_SIZE),
            ("image_size height", self.image_size[0], MAX_IMAGE_SIDE),
            ("image_size width", self.image_size[1], MAX_IMAGE_SIDE),
        ];
        for (field, value, max) in bounded {
            if value == 0 || value > max {
                return err(format!("{field} is {value}; it must be in 1..={max}"));
            }
        }
        if self.num_channels != 3 {
            // The preprocessing (decode, resize, normalise) only ever makes RGB.
            return err(format!(
                "num_channels is {}; only 3 (RGB) is supported",
                self.num_channels
            ));
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
        let [h, w] = self.image_size;
        if !h.is_multiple_of(self.patch_size) || !w.is_multiple_of(self.patch_size) {
            return err(format!(
                "image_size {h}×{w} must be a positive multiple of patch_size {}",
                self.patch_size
            ));
        }
        if self.seq_len() > MAX_SEQ_LEN {
            return err(format!(
                "image_size {h}×{w} with patch_size {} gives {} tokens; at most {MAX_SEQ_LEN} \
                 are supported (attention memory grows with its square)",
                self.patch_size,
                self.seq_len()
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path_prob) {
            return err(format!(
                "drop_path_prob {} must be in [0, 1)",
                self.drop_path_prob
            ));
        }
        let positive = [
            ("layer_norm_eps", self.layer_norm_eps),
            ("rope_theta", self.rope_theta),
        ];
        for (field, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return err(format!("{field} is {value}; it must be finite and > 0"));
            }
        }
        if !self.layerscale_value.is_finite() {
            return err(format!(
                "layerscale_value is {}; it must be finite",
                self.layerscale_value
            ));
        }
        if !(self.initializer_range.is_finite() && self.initializer_range >= 0.0) {
            return err(format!(
                "initializer_range is {}; it must be finite and >= 0",
                self.initializer_range
            ));
        }
        if let Some(rescale) = self.pos_embed_rescale
            && !rescale.is_finite()
        {
            return err(format!(
                "pos_embed_rescale is {rescale}; it must be finite (or null)"
            ));
        }
        // One image's attention probabilities in one layer: heads × T² f32 values, all held at
        // once. A config whose single-image attention is over the budget cannot run anywhere
        // (a 4096 px image in 32 px patches, 16,385 tokens, 12 heads: 12.0 GiB).
        let t = self.seq_len() as u64;
        let attention = (self.num_attention_heads as u64)
            .saturating_mul(t.saturating_mul(t))
            .saturating_mul(4);
        if attention > MODEL_MEMORY_BUDGET_BYTES {
            return Err(NepaError::TooLarge(format!(
                "one image's attention ({} heads × {t}² tokens) would need {}, over the budget \
                 of {}: use a smaller image_size or a larger patch_size",
                self.num_attention_heads,
                human_bytes(attention),
                human_bytes(MODEL_MEMORY_BUDGET_BYTES)
            )));
        }
        check_budget("the model", self.param_bytes())
    }

    /// As [`NepaConfig::validate`], for a classifier with `num_labels` classes: the labels in
    /// `1..=`[`MAX_LABELS`] and backbone plus head within the memory budget.
    pub fn validate_classifier(&self, num_labels: usize) -> Result<(), NepaError> {
        self.validate()?;
        if num_labels == 0 || num_labels > MAX_LABELS {
            return Err(NepaError::Config(format!(
                "the classifier has {num_labels} labels; it must have 1..={MAX_LABELS}"
            )));
        }
        check_budget("the classifier", self.classifier_param_bytes(num_labels))
    }

    /// Bytes of the backbone's parameters in f32, saturating at `u64::MAX` (never overflows,
    /// whatever the sizes): what [`NepaConfig::validate`] holds against the budget.
    pub fn param_bytes(&self) -> u64 {
        self.num_params_u64().saturating_mul(4)
    }

    /// Bytes of a classifier's parameters in f32 (backbone, `fc_norm`, `classifier`),
    /// saturating.
    pub fn classifier_param_bytes(&self, num_labels: usize) -> u64 {
        let d = self.hidden_size as u64;
        let labels = num_labels as u64;
        // fc_norm weight + bias, classifier weight [d, labels] + bias.
        let head = d
            .saturating_mul(2)
            .saturating_add(d.saturating_add(1).saturating_mul(labels));
        self.num_params_u64().saturating_add(head).saturating_mul(4)
    }

    /// Stochastic-depth rate of layer `index` (`linspace(0, p, L)`).
    pub fn drop_path_rate(&self, index: usize) -> f64 {
        if self.num_hidden_layers <= 1 {
            return 0.0;
        }
        self.drop_path_prob * index as f64 / (self.num_hidden_layers - 1) as f64
    }

    /// Number of parameters of the backbone (no classification head), saturating at
    /// `usize::MAX` for sizes no valid config has.
    pub fn num_params(&self) -> usize {
        usize::try_from(self.num_params_u64()).unwrap_or(usize::MAX)
    }

    /// [`NepaConfig::num_params`] in saturating u64 arithmetic: a config read from a file
    /// may hold any sizes, and counting them must not overflow (nor panic in debug builds).
    fn num_params_u64(&self) -> u64 {
        let d = self.hidden_size as u64;
        let i = self.intermediate_size as u64;
        let p = self.patch_size as u64;
        let c = self.num_channels as u64;
        let heads = (self.num_attention_heads as u64).max(1);
        let (add, mul) = (u64::saturating_add, u64::saturating_mul);
        let embed = add(mul(mul(d, c), mul(p, p)), mul(2, d));
        let qk_norm = if self.qk_norm && self.qk_norm_affine {
            mul(2, d / heads)
        } else {
            0
        };
        let attention = add(mul(4, add(mul(d, d), d)), qk_norm);
        let gates = if self.use_gated_mlp { 2 } else { 1 };
        let mlp_in = mul(gates, add(mul(d, i), i));
        let mlp = add(add(mlp_in, mul(i, d)), d);
        let layer = add(add(add(mul(4, d), attention), mlp), mul(2, d));
        add(
            add(embed, mul(self.num_hidden_layers as u64, layer)),
            mul(2, d),
        )
    }
}

/// Checks `bytes` of f32 parameters against [`MODEL_MEMORY_BUDGET_BYTES`].
fn check_budget(what: &str, bytes: u64) -> Result<(), NepaError> {
    if bytes > MODEL_MEMORY_BUDGET_BYTES {
        return Err(NepaError::TooLarge(format!(
            "{what} would need {} of f32 parameters ({bytes} bytes), over the budget of {} \
             ({MODEL_MEMORY_BUDGET_BYTES} bytes)",
            human_bytes(bytes),
            human_bytes(MODEL_MEMORY_BUDGET_BYTES)
        )));
    }
    Ok(())
}

/// `bytes` in GiB or MiB, one decimal.
fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= 1024.0 * MIB {
        format!("{:.1} GiB", b / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field name and an edit that makes it invalid.
    type Case = (&'static str, fn(&mut NepaConfig));

    /// Each case, applied to the tiny preset, is a `Config` error whose message names the field.
    fn assert_config_errors_naming(cases: &[Case]) {
        for (field, set) in cases {
            let mut config = NepaConfig::tiny();
            set(&mut config);
            let e = config.validate().unwrap_err();
            assert!(matches!(e, NepaError::Config(_)), "{field}: {e:?}");
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
    }

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

    #[test]
    fn sizes_above_their_bounds_are_config_errors_naming_the_field() {
        let cases: [Case; 8] = [
            ("hidden_size", |c| c.hidden_size = MAX_HIDDEN_SIZE + 4),
            ("num_hidden_layers", |c| {
                c.num_hidden_layers = MAX_LAYERS + 1
            }),
            ("num_attention_heads", |c| {
                c.num_attention_heads = MAX_HEADS + 1
            }),
            ("intermediate_size", |c| c.intermediate_size = usize::MAX),
            ("patch_size", |c| c.patch_size = MAX_PATCH_SIZE * 2),
            ("image_size height", |c| c.image_size = [usize::MAX, 224]),
            ("image_size width", |c| {
                c.image_size = [224, MAX_IMAGE_SIDE + 14]
            }),
            ("num_channels", |c| c.num_channels = 1),
        ];
        assert_config_errors_naming(&cases);
        // 4096 px at patch 1 is within each bound but is 16.8 M tokens.
        let e = NepaConfig::tiny()
            .with_patch_size(1)
            .with_image_size(4096, 4096)
            .validate()
            .unwrap_err();
        assert!(
            matches!(e, NepaError::Config(_)) && e.to_string().contains("tokens"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_floats_are_config_errors() {
        let cases: [Case; 6] = [
            ("layerscale_value", |c| c.layerscale_value = f64::NAN),
            ("initializer_range", |c| c.initializer_range = f64::INFINITY),
            ("initializer_range", |c| c.initializer_range = -1.0),
            ("pos_embed_rescale", |c| {
                c.pos_embed_rescale = Some(f64::NAN)
            }),
            ("layer_norm_eps", |c| c.layer_norm_eps = f64::INFINITY),
            ("rope_theta", |c| c.rope_theta = f64::NAN),
        ];
        assert_config_errors_naming(&cases);
        let e = NepaConfig::tiny().with_drop_path(f64::NAN).validate();
        assert!(matches!(e, Err(NepaError::Config(_))));
    }

    #[test]
    fn the_memory_budget_is_checked_without_overflow() {
        // Every size within its bound, the whole far over the budget.
        let config = NepaConfig::new(MAX_HIDDEN_SIZE, MAX_LAYERS, 64)
            .with_intermediate_size(MAX_INTERMEDIATE_SIZE);
        let e = config.validate().unwrap_err();
        assert!(matches!(e, NepaError::TooLarge(_)), "{e:?}");
        let message = e.to_string();
        assert!(
            message.contains("budget") && message.contains("GiB"),
            "{message}"
        );
        assert!(config.param_bytes() > MODEL_MEMORY_BUDGET_BYTES);
        // Hostile sizes saturate instead of overflowing.
        let mut huge = NepaConfig::tiny();
        huge.hidden_size = usize::MAX;
        huge.intermediate_size = usize::MAX;
        huge.num_hidden_layers = usize::MAX;
        assert_eq!(huge.param_bytes(), u64::MAX);
        assert_eq!(huge.num_params(), usize::MAX);
        assert_eq!(NepaConfig::large().param_bytes(), 4 * 302_967_808);
        NepaConfig::large().validate().unwrap();
    }

    #[test]
    fn classifier_labels_are_bounded() {
        let config = NepaConfig::tiny();
        config.validate_classifier(10).unwrap();
        for labels in [0, MAX_LABELS + 1] {
            let e = config.validate_classifier(labels).unwrap_err();
            assert!(matches!(e, NepaError::Config(_)), "{e:?}");
            assert!(e.to_string().contains("labels"), "{e}");
        }
        // Each within bounds, together over the budget.
        let wide = NepaConfig::new(MAX_HIDDEN_SIZE, 1, 64).with_intermediate_size(4);
        wide.validate().unwrap();
        let e = wide.validate_classifier(MAX_LABELS).unwrap_err();
        assert!(matches!(e, NepaError::TooLarge(_)), "{e:?}");
    }

    #[test]
    fn hostile_json_is_an_error_not_a_panic() {
        for json in [
            r#"{"hidden_size": 0}"#,
            r#"{"hidden_size": 18446744073709551615}"#,
            r#"{"num_attention_heads": 0}"#,
            r#"{"patch_size": 0}"#,
            r#"{"image_size": [0, 224]}"#,
            r#"{"num_channels": 1}"#,
            r#"{"hidden_size": -1}"#,
            r#"{"layerscale_value": 1e999}"#,
            r#"{"num_hidden_layers": 1e9}"#,
        ] {
            assert!(NepaConfig::from_json(json).is_err(), "{json}");
        }
    }

    #[test]
    fn an_attention_over_the_budget_is_too_large() {
        // 4096 px in 32 px patches: 16,385 tokens, under MAX_SEQ_LEN, but 12 heads of T² f32
        // attention for one image are 12 GiB.
        let config = NepaConfig::base()
            .with_image_size(4096, 4096)
            .with_patch_size(32);
        let e = config.validate().unwrap_err();
        assert!(matches!(e, NepaError::TooLarge(_)), "{e:?}");
        assert!(e.to_string().contains("attention"), "{e}");
        // The official 224 px / patch 14 models are far below it.
        NepaConfig::base().validate().unwrap();
        NepaConfig::large().validate().unwrap();
    }
}
