//! Safetensors checkpoints with the official Hugging Face tensor names (docs/nepa.md §7.3).
//!
//! Bytes in, bytes out: no filesystem, so the browser and the native binary share this code.
//! Reading back from the device comes in a sync flavour (native) and an async one (the
//! browser, where sync readback panics).

use std::collections::HashSet;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::classifier::NepaClassifier;
use crate::config::NepaConfig;
use crate::error::NepaError;

mod export;
mod hf;
mod infer;

use crate::model::{Dense, NepaAttention, NepaEmbeddings, NepaLayer, NepaMlp, NepaModel, Norm};
#[cfg(not(target_family = "wasm"))]
pub use export::to_safetensors;
pub use export::{
    ExportTensor, backbone_gradients, backbone_tensors, classifier_tensors,
    classifier_to_safetensors_async, metadata_entry, to_safetensors_async, with_metadata,
};
pub use hf::{
    HubConfig, HubPreprocessor, MAX_HF_LABELS, Resample, hf_architecture, hf_config_json,
    hf_preprocessor_config_json, parse_hf_config, parse_hf_preprocessor_config,
};
pub use infer::{classes_from_metadata, config_from_metadata, infer_config};

/// The prefix the official `ForPreTraining` / `ForImageClassification` checkpoints put on
/// backbone tensors; a bare `ViTNepaModel` checkpoint has none.
pub const BACKBONE_PREFIX: &str = "vit_nepa.";
/// Safetensors metadata key under which this crate stores the config JSON.
pub const CONFIG_METADATA_KEY: &str = "nepa_config";
/// Metadata key of a classifier's class names (a JSON list, label i = entry i).
pub const CLASSES_METADATA_KEY: &str = "nepa_classes";

/// How lenient loading is about tensors the file lacks.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Keep a fresh `fc_norm` (1, 0) and zero `classifier` when the file has none
    /// (fine-tuning from a pretraining checkpoint).
    pub init_missing_head: bool,
    /// Keep q_norm/k_norm weights at 1 when the config is affine but the file has none
    /// (the base pretraining checkpoint into the affine fine-tuning config, upstream issue #12).
    pub init_missing_qk_norm: bool,
}

/// What loading found besides the tensors it used.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Whether backbone keys carried the `vit_nepa.` prefix.
    pub prefixed: bool,
    /// Tensors in the file that the model did not use (e.g. a pooler).
    pub unused_keys: Vec<String>,
    /// Tensors the file lacked that were kept at their initial value (see [`LoadOptions`]).
    pub initialized_keys: Vec<String>,
}

/// Visits every parameter with its official key; returns the (possibly replaced) parameter.
pub(crate) trait ParamVisitor {
    /// `transposed`: the file holds the PyTorch `[out, in]` layout of a `[in, out]` weight.
    fn visit<const D: usize>(
        &mut self,
        key: String,
        param: Param<Tensor<D>>,
        transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError>;
}

fn walk_opt<V: ParamVisitor, const D: usize>(
    v: &mut V,
    key: String,
    param: Option<Param<Tensor<D>>>,
    transposed: bool,
) -> Result<Option<Param<Tensor<D>>>, NepaError> {
    param.map(|p| v.visit(key, p, transposed)).transpose()
}

fn walk_dense<V: ParamVisitor>(v: &mut V, key: &str, dense: Dense) -> Result<Dense, NepaError> {
    Ok(Dense {
        weight: v.visit(format!("{key}.weight"), dense.weight, true)?,
        bias: walk_opt(v, format!("{key}.bias"), dense.bias, false)?,
    })
}

fn walk_norm<V: ParamVisitor>(v: &mut V, key: &str, norm: Norm) -> Result<Norm, NepaError> {
    Ok(Norm {
        weight: walk_opt(v, format!("{key}.weight"), norm.weight, false)?,
        bias: walk_opt(v, format!("{key}.bias"), norm.bias, false)?,
        ..norm
    })
}

fn walk_layer<V: ParamVisitor>(
    v: &mut V,
    key: &str,
    layer: NepaLayer,
) -> Result<NepaLayer, NepaError> {
    let attention = layer.attention;
    let inner = format!("{key}.attention.attention");
    let attention = NepaAttention {
        query: walk_dense(v, &format!("{inner}.query"), attention.query)?,
        key: walk_dense(v, &format!("{inner}.key"), attention.key)?,
        value: walk_dense(v, &format!("{inner}.value"), attention.value)?,
        q_norm: attention
            .q_norm
            .map(|n| walk_norm(v, &format!("{inner}.q_norm"), n))
            .transpose()?,
        k_norm: attention
            .k_norm
            .map(|n| walk_norm(v, &format!("{inner}.k_norm"), n))
            .transpose()?,
        output: walk_dense(
            v,
            &format!("{key}.attention.output.dense"),
            attention.output,
        )?,
        num_heads: attention.num_heads,
    };
    let mlp = layer.mlp;
    let mlp = NepaMlp {
        up_proj: walk_dense(v, &format!("{key}.intermediate.up_proj"), mlp.up_proj)?,
        gate_proj: mlp
            .gate_proj
            .map(|g| walk_dense(v, &format!("{key}.intermediate.gate_proj"), g))
            .transpose()?,
        down_proj: walk_dense(v, &format!("{key}.output.dense"), mlp.down_proj)?,
        silu: mlp.silu,
    };
    Ok(NepaLayer {
        layernorm_before: walk_norm(
            v,
            &format!("{key}.layernorm_before"),
            layer.layernorm_before,
        )?,
        attention,
        layer_scale_attn: walk_opt(
            v,
            format!("{key}.layer_scale.lambda1"),
            layer.layer_scale_attn,
            false,
        )?,
        layernorm_after: walk_norm(v, &format!("{key}.layernorm_after"), layer.layernorm_after)?,
        mlp,
        layer_scale_mlp: walk_opt(
            v,
            format!("{key}.output.layer_scale.lambda1"),
            layer.layer_scale_mlp,
            false,
        )?,
        drop_path_rate: layer.drop_path_rate,
    })
}

pub(crate) fn walk_backbone<V: ParamVisitor>(
    v: &mut V,
    prefix: &str,
    model: NepaModel,
) -> Result<NepaModel, NepaError> {
    let e = model.embeddings;
    let embeddings = NepaEmbeddings {
        cls_token: v.visit(format!("{prefix}embeddings.cls_token"), e.cls_token, false)?,
        projection_weight: v.visit(
            format!("{prefix}embeddings.patch_embeddings.projection.weight"),
            e.projection_weight,
            false,
        )?,
        projection_bias: v.visit(
            format!("{prefix}embeddings.patch_embeddings.projection.bias"),
            e.projection_bias,
            false,
        )?,
        patch_size: e.patch_size,
    };
    let layers = model
        .layers
        .into_iter()
        .enumerate()
        .map(|(i, layer)| walk_layer(v, &format!("{prefix}encoder.layer.{i}"), layer))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NepaModel {
        embeddings,
        layers,
        layernorm: walk_norm(v, &format!("{prefix}layernorm"), model.layernorm)?,
        ..model
    })
}

/// A model whose parameters can be walked under their official keys: the backbone (bare
/// keys) or the classifier (`vit_nepa.` + backbone, `fc_norm.*`, `classifier.*`).
pub trait Walkable: Sized {
    #[doc(hidden)]
    #[allow(private_bounds)]
    fn walk_params<V: ParamVisitor>(self, visitor: &mut V) -> Result<Self, NepaError>;
}

impl Walkable for NepaModel {
    #[allow(private_bounds)]
    fn walk_params<V: ParamVisitor>(self, visitor: &mut V) -> Result<Self, NepaError> {
        walk_backbone(visitor, "", self)
    }
}

impl Walkable for NepaClassifier {
    #[allow(private_bounds)]
    fn walk_params<V: ParamVisitor>(self, visitor: &mut V) -> Result<Self, NepaError> {
        walk_classifier(visitor, BACKBONE_PREFIX, self)
    }
}

pub(crate) fn walk_classifier<V: ParamVisitor>(
    v: &mut V,
    backbone_prefix: &str,
    model: NepaClassifier,
) -> Result<NepaClassifier, NepaError> {
    Ok(NepaClassifier {
        vit_nepa: walk_backbone(v, backbone_prefix, model.vit_nepa)?,
        fc_norm: walk_norm(v, "fc_norm", model.fc_norm)?,
        classifier: walk_dense(v, "classifier", model.classifier)?,
    })
}

/// Converts a safetensors tensor of any float dtype to f32 values.
///
/// The data length is checked against the shape (safetensors checks it when parsing too; this
/// keeps the conversion exact whatever produced the view).
fn to_f32(key: &str, view: &TensorView<'_>) -> Result<Vec<f32>, NepaError> {
    let bytes = view.data();
    let width = match view.dtype() {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        Dtype::F64 => 8,
        other => {
            return Err(NepaError::UnsupportedDType {
                key: key.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    let expected = view
        .shape()
        .iter()
        .try_fold(width, |n: usize, &d| n.checked_mul(d));
    if expected != Some(bytes.len()) {
        return Err(NepaError::Parse(format!(
            "tensor `{key}` has {} bytes of data, but its shape {:?} in {:?} needs {}",
            bytes.len(),
            view.shape(),
            view.dtype(),
            expected.map_or("more than fits in memory".to_string(), |n| n.to_string())
        )));
    }
    let values = match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
    };
    Ok(values)
}

/// Row-major transpose of a `[rows, cols]` matrix.
pub(crate) fn transpose_host(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>, NepaError> {
    SafeTensors::deserialize(bytes).map_err(|e| NepaError::Parse(e.to_string()))
}

struct Reader<'a> {
    file: SafeTensors<'a>,
    device: Device,
    options: LoadOptions,
    used: HashSet<String>,
    initialized: Vec<String>,
}

impl<'a> Reader<'a> {
    fn new(file: SafeTensors<'a>, device: &Device, options: LoadOptions) -> Self {
        Self {
            file,
            device: device.clone(),
            options,
            used: HashSet::new(),
            initialized: Vec::new(),
        }
    }

    fn may_keep_initial(&self, key: &str) -> bool {
        let head = key.starts_with("fc_norm.") || key.starts_with("classifier.");
        let qk = key.ends_with("q_norm.weight") || key.ends_with("k_norm.weight");
        (head && self.options.init_missing_head) || (qk && self.options.init_missing_qk_norm)
    }
}

impl ParamVisitor for Reader<'_> {
    fn visit<const D: usize>(
        &mut self,
        key: String,
        param: Param<Tensor<D>>,
        transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError> {
        let model_shape = param.dims().to_vec();
        let mut file_shape = model_shape.clone();
        if transposed {
            file_shape.reverse();
        }
        let view = match self.file.tensor(&key) {
            Ok(view) => view,
            Err(_) if self.may_keep_initial(&key) => {
                self.initialized.push(key);
                return Ok(param);
            }
            Err(_) => {
                let hint = if key.contains("q_norm") || key.contains("k_norm") {
                    " (the file may come from a model whose QK-norm is not affine: set \
                     qk_norm_affine = false)"
                } else if key.contains("gate_proj") {
                    " (the file may have a plain GELU MLP: set use_gated_mlp = false)"
                } else {
                    ""
                };
                return Err(NepaError::MissingTensor {
                    key,
                    expected: file_shape,
                    hint: hint.to_string(),
                });
            }
        };
        if view.shape() != file_shape.as_slice() {
            return Err(NepaError::ShapeMismatch {
                key,
                expected: file_shape,
                found: view.shape().to_vec(),
            });
        }
        let mut values = to_f32(&key, &view)?;
        if transposed {
            values = transpose_host(&values, file_shape[0], file_shape[1]);
        }
        let tensor = Tensor::<D>::from_data(TensorData::new(values, model_shape), &self.device);
        self.used.insert(key);
        let id = param.id;
        Ok(param.transform_for_load(tensor, id))
    }
}

/// Whether the file stores backbone tensors under `vit_nepa.`.
fn detect_prefix(file: &SafeTensors<'_>) -> bool {
    file.names().iter().any(|n| n.starts_with(BACKBONE_PREFIX))
}

fn finish_report(reader: Reader<'_>, prefixed: bool) -> LoadReport {
    let mut unused_keys: Vec<String> = reader
        .file
        .names()
        .into_iter()
        .filter(|n| !reader.used.contains(*n))
        .map(str::to_string)
        .collect();
    unused_keys.sort();
    LoadReport {
        prefixed,
        unused_keys,
        initialized_keys: reader.initialized,
    }
}

/// Loads a backbone (`ViTNepaModel`) from safetensors bytes, with or without the
/// `vit_nepa.` prefix. The config fixes the architecture; a tensor the file lacks or whose
/// shape differs is an error naming it.
pub fn load_backbone(
    bytes: &[u8],
    config: &NepaConfig,
    device: &Device,
    options: LoadOptions,
) -> Result<(NepaModel, LoadReport), NepaError> {
    // Bounds and memory budget before anything is allocated.
    config.validate()?;
    let file = parse(bytes)?;
    let prefixed = detect_prefix(&file);
    let model = NepaModel::new(config, device)?;
    let mut reader = Reader::new(file, device, options);
    let prefix = if prefixed { BACKBONE_PREFIX } else { "" };
    let model = walk_backbone(&mut reader, prefix, model)?;
    Ok((model, finish_report(reader, prefixed)))
}

/// Loads a classifier (`ViTNepaForImageClassification`). `num_labels` defaults to the
/// file's `classifier.weight` rows. The backbone may be prefixed or bare; the head is bare.
pub fn load_classifier(
    bytes: &[u8],
    config: &NepaConfig,
    num_labels: Option<usize>,
    device: &Device,
    options: LoadOptions,
) -> Result<(NepaClassifier, LoadReport), NepaError> {
    config.validate()?;
    let file = parse(bytes)?;
    let prefixed = detect_prefix(&file);
    let file_labels = match file.tensor("classifier.weight") {
        // `[num_labels, hidden_size]` (PyTorch layout); any other rank is not a head.
        Ok(view) => match *view.shape() {
            [labels, _] => Some(labels),
            _ => {
                return Err(NepaError::ShapeMismatch {
                    key: "classifier.weight".into(),
                    expected: vec![0, config.hidden_size],
                    found: view.shape().to_vec(),
                });
            }
        },
        Err(_) => None,
    };
    let from_file = num_labels.is_none();
    let num_labels = match (num_labels, file_labels) {
        (Some(n), _) => n,
        (None, Some(n)) => n,
        (None, None) => {
            return Err(NepaError::Input(
                "the checkpoint has no `classifier.weight`; give the number of labels".into(),
            ));
        }
    };
    // 1..=MAX_LABELS labels and the whole within the memory budget, before allocating.
    config
        .validate_classifier(num_labels)
        .map_err(|e| match e {
            NepaError::Config(m) if from_file => {
                NepaError::Config(format!("checkpoint tensor `classifier.weight`: {m}"))
            }
            e => e,
        })?;
    let model = NepaClassifier::new(config, num_labels, device)?;
    let mut reader = Reader::new(file, device, options);
    let prefix = if prefixed { BACKBONE_PREFIX } else { "" };
    let mut model = walk_classifier(&mut reader, prefix, model)?;
    // The stored config decides the attention mode (fine-tuned models are bidirectional).
    model.vit_nepa = model.vit_nepa.set_causal(config.is_causal);
    Ok((model, finish_report(reader, prefixed)))
}
