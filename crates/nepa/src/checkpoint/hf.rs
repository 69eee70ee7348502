//! The Hugging Face model-repository files beside `model.safetensors`: `config.json` (the
//! architecture, and for a classifier `id2label`) and `preprocessor_config.json` (the test
//! transform), read and written as the official code does (docs/nepa.md §7).
//!
//! Text in, text out: the browser and the native binary share this code.

use serde_json::{Map, Value, json};

use crate::config::NepaConfig;
use crate::error::NepaError;

/// Most class names a `config.json` may declare (ImageNet-21k has 21,841).
pub const MAX_HF_LABELS: usize = 100_000;

/// What a hub `config.json` says about a model.
#[derive(Clone, Debug, PartialEq)]
pub struct HubConfig {
    pub config: NepaConfig,
    /// Class names from `id2label` (label i = entry i); `None` for a backbone.
    pub classes: Option<Vec<String>>,
    /// `architectures[0]`, e.g. `ViTNepaForImageClassification`.
    pub architecture: Option<String>,
}

/// Reads a hub `config.json`: the NEPA fields (`NepaConfig` uses the official names) and,
/// when present, `id2label` as an ordered class list. Refuses another `model_type` and an
/// `id2label` whose ids are not exactly `0..n`.
pub fn parse_hf_config(json: &str) -> Result<HubConfig, NepaError> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| NepaError::Config(format!("config.json is not valid JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(NepaError::Config("config.json is not a JSON object".into()));
    };
    if let Some(model_type) = map.get("model_type").and_then(Value::as_str)
        && model_type != "vit_nepa"
    {
        return Err(NepaError::Config(format!(
            "config.json has model_type `{model_type}`; nepa reads `vit_nepa` models"
        )));
    }
    let config = NepaConfig::from_json(json)?;
    let architecture = map
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_owned);
    let classes = match map.get("id2label") {
        None | Some(Value::Null) => None,
        Some(Value::Object(labels)) if labels.is_empty() => None,
        Some(Value::Object(labels)) => Some(ordered_labels(labels)?),
        Some(_) => {
            return Err(NepaError::Config(
                "config.json: id2label is not an object".into(),
            ));
        }
    };
    Ok(HubConfig {
        config,
        classes,
        architecture,
    })
}

fn ordered_labels(labels: &Map<String, Value>) -> Result<Vec<String>, NepaError> {
    let n = labels.len();
    if n > MAX_HF_LABELS {
        return Err(NepaError::Config(format!(
            "config.json: id2label has {n} entries (at most {MAX_HF_LABELS})"
        )));
    }
    let mut classes = vec![None; n];
    for (id, name) in labels {
        let index = id.parse::<usize>().ok().filter(|&i| i < n).ok_or_else(|| {
            NepaError::Config(format!(
                "config.json: id2label key `{id}` is not a class index in 0..{n}"
            ))
        })?;
        let name = name.as_str().ok_or_else(|| {
            NepaError::Config(format!("config.json: id2label[{id}] is not a string"))
        })?;
        classes[index] = Some(name.to_owned());
    }
    // n distinct keys each in 0..n cover every index, so none is left unset.
    Ok(classes.into_iter().flatten().collect())
}

/// The `architectures` entry of a backbone (pretraining) or a classifier.
pub fn hf_architecture(classifier: bool) -> &'static str {
    if classifier {
        "ViTNepaForImageClassification"
    } else {
        "ViTNepaForPreTraining"
    }
}

/// A `config.json` the official code reads: every NEPA field under its official name, the
/// official fields nepa does not model at their released values, and `id2label`/`label2id`
/// for a classifier.
pub fn hf_config_json(config: &NepaConfig, classes: Option<&[String]>) -> String {
    let Value::Object(mut map) = serde_json::to_value(config).expect("config serialises") else {
        unreachable!("NepaConfig serialises to an object")
    };
    // nepa keeps [h, w]; the official config holds one number for square images.
    if config.image_size[0] == config.image_size[1] {
        map.insert("image_size".into(), json!(config.image_size[0]));
    }
    for (key, value) in [
        ("model_type", json!("vit_nepa")),
        ("architectures", json!([hf_architecture(classes.is_some())])),
        ("qk_norm_bias", json!(false)),
        ("hidden_dropout_prob", json!(0.0)),
        ("attention_probs_dropout_prob", json!(0.0)),
        ("add_pooling_layer", json!(true)),
        ("pos_embed_shift", Value::Null),
        ("pos_embed_jitter", Value::Null),
        ("torch_dtype", json!("float32")),
    ] {
        map.entry(key).or_insert(value);
    }
    if let Some(classes) = classes {
        let id2label: Map<String, Value> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), json!(c)))
            .collect();
        let label2id: Map<String, Value> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), json!(i)))
            .collect();
        map.insert("id2label".into(), Value::Object(id2label));
        map.insert("label2id".into(), Value::Object(label2id));
        map.insert("num_labels".into(), json!(classes.len()));
    }
    serde_json::to_string_pretty(&Value::Object(map)).expect("config serialises")
}

/// The official test transform (docs/nepa.md §7.2): resize to exactly the model's size
/// (bilinear), ×1/255, mean = std = 0.5.
pub fn hf_preprocessor_config_json(config: &NepaConfig) -> String {
    let [height, width] = config.image_size;
    serde_json::to_string_pretty(&json!({
        "image_processor_type": "ViTImageProcessor",
        "do_resize": true,
        "size": {"height": height, "width": width},
        "resample": 2,
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }))
    .expect("preprocessor config serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("class {i}")).collect()
    }

    #[test]
    fn written_config_reads_back_with_its_classes() {
        let config = NepaConfig::base()
            .with_causal(false)
            .with_qk_norm_affine(true);
        let names = classes(1000);
        let read = parse_hf_config(&hf_config_json(&config, Some(&names))).unwrap();
        assert_eq!(read.config, config);
        assert_eq!(read.classes.as_deref(), Some(&names[..]));
        assert_eq!(
            read.architecture.as_deref(),
            Some("ViTNepaForImageClassification")
        );
        let backbone = parse_hf_config(&hf_config_json(&NepaConfig::base(), None)).unwrap();
        assert_eq!(backbone.config, NepaConfig::base());
        assert_eq!(backbone.classes, None);
        assert_eq!(
            backbone.architecture.as_deref(),
            Some("ViTNepaForPreTraining")
        );
    }

    #[test]
    fn id2label_is_ordered_by_index_not_by_key_text() {
        let json = r#"{"model_type": "vit_nepa", "id2label": {"10": "k", "2": "c", "0": "a",
            "1": "b", "3": "d", "4": "e", "5": "f", "6": "g", "7": "h", "8": "i", "9": "j"}}"#;
        let read = parse_hf_config(json).unwrap();
        let expected: Vec<String> = "abcdefghijk".chars().map(String::from).collect();
        assert_eq!(read.classes, Some(expected));
    }

    #[test]
    fn bad_configs_are_refused_with_what_is_wrong() {
        for (json, says) in [
            (r#"{"model_type": "vit"}"#, "model_type `vit`"),
            (
                r#"{"id2label": {"0": "a", "2": "b"}}"#,
                "`2` is not a class index",
            ),
            (
                r#"{"id2label": {"0": "a", "x": "b"}}"#,
                "`x` is not a class index",
            ),
            (r#"{"id2label": {"0": 7}}"#, "id2label[0] is not a string"),
            (r#"{"id2label": [1]}"#, "id2label is not an object"),
            (r#"[1]"#, "not a JSON object"),
            (r#"{"hidden_size": 0}"#, "hidden_size"),
            ("{", "not valid JSON"),
        ] {
            let err = parse_hf_config(json).unwrap_err().to_string();
            assert!(err.contains(says), "{json}: {err}");
        }
    }

    #[test]
    fn preprocessor_config_is_the_official_test_transform() {
        let v: Value =
            serde_json::from_str(&hf_preprocessor_config_json(&NepaConfig::base())).unwrap();
        assert_eq!(v["size"], json!({"height": 224, "width": 224}));
        assert_eq!(v["resample"], json!(2));
        assert_eq!(v["image_mean"], json!([0.5, 0.5, 0.5]));
        assert_eq!(v["image_std"], json!([0.5, 0.5, 0.5]));
    }
}
