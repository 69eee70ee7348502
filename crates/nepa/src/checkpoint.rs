//! Safetensors checkpoints with the official Hugging Face tensor names (spec §7.3).
//!
//! Bytes in, bytes out: no filesystem, so the browser and the native binary share this code.
//! Reading back from the device comes in a sync flavour (native) and an async one (the
//! browser, where sync readback panics).

use std::collections::{HashMap, HashSet};

use burn::module::Param;
use burn::tensor::{Device, Gradients, Tensor, TensorData, Transaction};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::classifier::NepaClassifier;
use crate::config::{
    Activation, MAX_HIDDEN_SIZE, MAX_INTERMEDIATE_SIZE, MAX_LAYERS, MAX_PATCH_SIZE, NepaConfig,
};
use crate::error::NepaError;
use crate::model::{Dense, NepaAttention, NepaEmbeddings, NepaLayer, NepaMlp, NepaModel, Norm};

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
fn transpose_host(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
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

/// One parameter ready to be read back: its key, its shape in the file and its values
/// flattened in the file's layout.
pub struct ExportTensor {
    pub key: String,
    pub shape: Vec<usize>,
    pub values: Tensor<1>,
}

impl ExportTensor {
    /// Flattens `value` in the file's layout (`[out, in]` for a transposed Linear weight).
    fn in_file_layout<const D: usize>(key: String, value: Tensor<D>, transposed: bool) -> Self {
        let (value, mut shape) = (value.clone(), value.dims().to_vec());
        let value = if transposed {
            shape.reverse();
            value.swap_dims(0, 1)
        } else {
            value
        };
        let n = shape.iter().product::<usize>();
        Self {
            key,
            shape,
            values: value.reshape([n]),
        }
    }
}

struct Collector {
    tensors: Vec<ExportTensor>,
}

impl ParamVisitor for Collector {
    fn visit<const D: usize>(
        &mut self,
        key: String,
        param: Param<Tensor<D>>,
        transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError> {
        self.tensors.push(ExportTensor::in_file_layout(
            key,
            param.val().detach(),
            transposed,
        ));
        Ok(param)
    }
}

/// The backbone's tensors under their official keys (`vit_nepa.` prefix if `prefixed`).
pub fn backbone_tensors(model: &NepaModel, prefixed: bool) -> Vec<ExportTensor> {
    let mut collector = Collector { tensors: vec![] };
    let prefix = if prefixed { BACKBONE_PREFIX } else { "" };
    walk_backbone(&mut collector, prefix, model.clone()).expect("collecting cannot fail");
    collector.tensors
}

/// The classifier's tensors under their official keys.
pub fn classifier_tensors(model: &NepaClassifier) -> Vec<ExportTensor> {
    let mut collector = Collector { tensors: vec![] };
    walk_classifier(&mut collector, BACKBONE_PREFIX, model.clone())
        .expect("collecting cannot fail");
    collector.tensors
}

struct GradCollector<'g> {
    grads: &'g Gradients,
    tensors: Vec<ExportTensor>,
}

impl ParamVisitor for GradCollector<'_> {
    fn visit<const D: usize>(
        &mut self,
        key: String,
        param: Param<Tensor<D>>,
        transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError> {
        if let Some(grad) = param.val().grad(self.grads) {
            self.tensors
                .push(ExportTensor::in_file_layout(key, grad, transposed));
        }
        Ok(param)
    }
}

/// The gradients of the backbone's parameters under their bare official keys, in the file
/// layout (Linear `[out, in]`); parameters without a gradient are left out.
pub fn backbone_gradients(model: &NepaModel, grads: &Gradients) -> Vec<ExportTensor> {
    let mut collector = GradCollector {
        grads,
        tensors: vec![],
    };
    walk_backbone(&mut collector, "", model.clone()).expect("collecting cannot fail");
    collector.tensors
}

fn transaction(tensors: &[ExportTensor]) -> Transaction {
    tensors
        .iter()
        .fold(Transaction::default(), |t, e| t.register(e.values.clone()))
}

/// Serialises read-back tensors to safetensors bytes (f32), with the config in metadata.
fn serialize(
    tensors: &[ExportTensor],
    data: Vec<TensorData>,
    config: &NepaConfig,
    classes: Option<&[String]>,
) -> Result<Vec<u8>, NepaError> {
    let bytes: Vec<Vec<u8>> = data
        .into_iter()
        .zip(tensors)
        .map(|(d, t)| {
            let values = d
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| NepaError::Readback(format!("{e:?}")))?;
            // Whoever loads this file later (a resumed run, the page's stored model) trusts it.
            if !crate::guard::all_finite(&values) {
                return Err(NepaError::NonFinite { key: t.key.clone() });
            }
            Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect())
        })
        .collect::<Result<_, NepaError>>()?;
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.key.clone(), v))
                .map_err(|e| NepaError::Parse(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (CONFIG_METADATA_KEY.to_string(), config.to_json()),
    ]);
    if let Some(classes) = classes {
        metadata.insert(
            CLASSES_METADATA_KEY.to_string(),
            serde_json::to_string(classes).map_err(|e| NepaError::Parse(e.to_string()))?,
        );
    }
    safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| NepaError::Parse(e.to_string()))
}

/// Safetensors bytes of `tensors`, reading the device synchronously (native only).
#[cfg(not(target_family = "wasm"))]
pub fn to_safetensors(tensors: &[ExportTensor], config: &NepaConfig) -> Result<Vec<u8>, NepaError> {
    let data = transaction(tensors)
        .try_execute()
        .map_err(|e| NepaError::Readback(format!("{e:?}")))?;
    serialize(tensors, data, config, None)
}

/// Safetensors bytes of `tensors`, reading the device asynchronously (works in the browser,
/// where `into_record()` and sync reads panic).
pub async fn to_safetensors_async(
    tensors: &[ExportTensor],
    config: &NepaConfig,
) -> Result<Vec<u8>, NepaError> {
    let data = transaction(tensors)
        .execute_async()
        .await
        .map_err(|e| NepaError::Readback(format!("{e:?}")))?;
    serialize(tensors, data, config, None)
}

/// As [`to_safetensors_async`], and stores a classifier's class names in the metadata so
/// that whoever loads the file (e.g. `nepa eval`) can check its label order.
pub async fn classifier_to_safetensors_async(
    tensors: &[ExportTensor],
    config: &NepaConfig,
    classes: &[String],
) -> Result<Vec<u8>, NepaError> {
    let data = transaction(tensors)
        .execute_async()
        .await
        .map_err(|e| NepaError::Readback(format!("{e:?}")))?;
    serialize(tensors, data, config, Some(classes))
}
