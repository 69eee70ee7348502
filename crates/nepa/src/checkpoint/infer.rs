//! What a checkpoint says about itself: the config and class names this crate stores in its
//! metadata, or a config inferred from its tensor shapes (official files carry none).

use safetensors::tensor::SafeTensors;

use super::{BACKBONE_PREFIX, CLASSES_METADATA_KEY, CONFIG_METADATA_KEY, detect_prefix, parse};
use crate::config::{
    Activation, MAX_HIDDEN_SIZE, MAX_INTERMEDIATE_SIZE, MAX_LAYERS, MAX_PATCH_SIZE, NepaConfig,
};
use crate::error::NepaError;

/// The config this crate stored in a checkpoint's metadata, if any.
pub fn config_from_metadata(bytes: &[u8]) -> Result<Option<NepaConfig>, NepaError> {
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| NepaError::Parse(e.to_string()))?;
    match metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CONFIG_METADATA_KEY))
    {
        Some(json) => NepaConfig::from_json(json).map(Some),
        None => Ok(None),
    }
}

/// The class names a classifier file stores in its metadata (`None` if it has none).
pub fn classes_from_metadata(bytes: &[u8]) -> Result<Option<Vec<String>>, NepaError> {
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| NepaError::Parse(e.to_string()))?;
    match metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CLASSES_METADATA_KEY))
    {
        Some(json) => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| NepaError::Parse(format!("{CLASSES_METADATA_KEY}: {e}"))),
        None => Ok(None),
    }
}

/// A config for a checkpoint: the stored one if present, else inferred from tensor shapes.
///
/// Shapes fix every size but the head count when QK-norm is not affine (then 64-wide heads,
/// the official head size, are assumed) and the image size (16 × 16 patches assumed, as the
/// official 224/14 models). Causal unless the file holds a classification head.
pub fn infer_config(bytes: &[u8]) -> Result<NepaConfig, NepaError> {
    if let Some(config) = config_from_metadata(bytes)? {
        return Ok(config);
    }
    let file = parse(bytes)?;
    let prefix = if detect_prefix(&file) {
        BACKBONE_PREFIX
    } else {
        ""
    };
    let shape = |key: &str| -> Result<Vec<usize>, NepaError> {
        let full = format!("{prefix}{key}");
        file.tensor(&full)
            .map(|v| v.shape().to_vec())
            .map_err(|_| NepaError::MissingTensor {
                key: full,
                expected: vec![],
                hint: " (is this a NEPA checkpoint?)".into(),
            })
    };
    // Every shape is checked (rank, then each size within its config bound) before it is
    // used: a file may hold any shape, including 0-dim tensors and zero or huge sizes.
    let bad_shape = |key: &str, expected: Vec<usize>, found: Vec<usize>| {
        Err(NepaError::ShapeMismatch {
            key: format!("{prefix}{key}"),
            expected,
            found,
        })
    };
    let in_bounds = |key: &str, what: &str, value: usize, max: usize| {
        if value == 0 || value > max {
            Err(NepaError::Config(format!(
                "checkpoint tensor `{prefix}{key}` implies {what} {value}; it must be in 1..={max}"
            )))
        } else {
            Ok(value)
        }
    };
    let conv_key = "embeddings.patch_embeddings.projection.weight";
    let conv = shape(conv_key)?;
    let [d, channels, patch, patch_w] = conv[..] else {
        return bad_shape(conv_key, vec![0, 3, 0, 0], conv);
    };
    if patch != patch_w || channels != 3 {
        return bad_shape(conv_key, vec![d, 3, patch, patch], conv);
    }
    let d = in_bounds(conv_key, "hidden_size", d, MAX_HIDDEN_SIZE)?;
    let patch = in_bounds(conv_key, "patch_size", patch, MAX_PATCH_SIZE)?;
    // Counting stops past the bound: validate() then names the excess.
    let layers = (0..=MAX_LAYERS)
        .take_while(|i| {
            file.tensor(&format!(
                "{prefix}encoder.layer.{i}.layernorm_before.weight"
            ))
            .is_ok()
        })
        .count();
    let up_key = "encoder.layer.0.intermediate.up_proj.weight";
    let up = shape(up_key)?;
    let [intermediate, up_in] = up[..] else {
        return bad_shape(up_key, vec![0, d], up);
    };
    if up_in != d {
        return bad_shape(up_key, vec![intermediate, d], up);
    }
    let intermediate = in_bounds(
        up_key,
        "intermediate_size",
        intermediate,
        MAX_INTERMEDIATE_SIZE,
    )?;
    let has = |key: &str| file.tensor(&format!("{prefix}{key}")).is_ok();
    let q_norm_key = "encoder.layer.0.attention.attention.q_norm.weight";
    let head_dim = match shape(q_norm_key).ok() {
        None => None,
        Some(q_norm) => match q_norm[..] {
            [head_dim] if head_dim > 0 && d.is_multiple_of(head_dim) => Some(head_dim),
            _ => return bad_shape(q_norm_key, vec![64], q_norm),
        },
    };
    let heads = head_dim.map_or((d / 64).max(1), |h| d / h);
    let mut config = NepaConfig::new(d, layers, heads);
    config.intermediate_size = intermediate;
    config.num_channels = channels;
    config.patch_size = patch;
    config.image_size = [16 * patch, 16 * patch];
    config.qk_norm_affine = head_dim.is_some();
    config.use_gated_mlp = has("encoder.layer.0.intermediate.gate_proj.weight");
    config.hidden_act = if config.use_gated_mlp {
        Activation::Silu
    } else {
        Activation::Gelu
    };
    config.qkv_bias = has("encoder.layer.0.attention.attention.query.bias");
    if !has("encoder.layer.0.layer_scale.lambda1") {
        config.layerscale_value = 0.0;
    }
    config.is_causal = file.tensor("classifier.weight").is_err();
    config.validate()?;
    Ok(config)
}
