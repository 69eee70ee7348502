//! Writing checkpoints: a model's parameters (or gradients) under their official keys, read
//! back from the device (synchronously natively, asynchronously in the browser) and
//! serialised as safetensors with the config, and optionally class names, in the metadata.

use std::collections::HashMap;

use burn::module::Param;
use burn::tensor::{Gradients, Tensor, TensorData, Transaction};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{
    BACKBONE_PREFIX, CLASSES_METADATA_KEY, CONFIG_METADATA_KEY, ParamVisitor, parse, walk_backbone,
    walk_classifier,
};
use crate::classifier::NepaClassifier;
use crate::config::NepaConfig;
use crate::error::NepaError;
use crate::model::NepaModel;

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

/// One string entry of a safetensors file's metadata (`None` if the file has none).
pub fn metadata_entry(bytes: &[u8], key: &str) -> Result<Option<String>, NepaError> {
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| NepaError::Parse(e.to_string()))?;
    Ok(metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(key))
        .cloned())
}

/// The same safetensors file with `entries` added to (or replacing those in) its metadata.
///
/// Only the JSON header is rewritten: tensor offsets are relative to the start of the data
/// block, so the data is copied unchanged. Lets a caller make one file carry everything a
/// checkpoint is (weights, config, classes, run state), so that writing that one file is the
/// atomic unit.
pub fn with_metadata(bytes: &[u8], entries: &[(&str, String)]) -> Result<Vec<u8>, NepaError> {
    // Validates the whole file first (header, offsets, lengths).
    parse(bytes)?;
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("parsed: 8+ bytes"));
    let header_end = 8 + usize::try_from(header_len).expect("parsed: the header fits");
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..header_end])
            .map_err(|e| NepaError::Parse(e.to_string()))?;
    let metadata = header
        .entry("__metadata__")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let serde_json::Value::Object(metadata) = metadata else {
        return Err(NepaError::Parse("`__metadata__` is not an object".into()));
    };
    for (key, value) in entries {
        metadata.insert(key.to_string(), serde_json::Value::String(value.clone()));
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| NepaError::Parse(e.to_string()))?;
    // The format pads the header with spaces so that the data starts 8-byte aligned.
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - header_end);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[header_end..]);
    Ok(out)
}
