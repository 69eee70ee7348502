//! The Hugging Face model-repository files beside `model.safetensors`: `config.json` (the
//! architecture, and for a classifier `id2label`) and `preprocessor_config.json` (the test
//! transform), read and written as the official code does (docs/nepa.md §7).
//!
//! Text in, text out: the browser and the native binary share this code.

use serde_json::{Map, Value, json};

use crate::config::NepaConfig;
use crate::error::NepaError;
use crate::image::{RgbImage, resize_bicubic, resize_bilinear};

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

/// PIL's resampling filters a `preprocessor_config.json` may name (`resample`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// `2`: what the NEPA checkpoints use.
    Bilinear,
    /// `3`.
    Bicubic,
}

/// The inference transform a `preprocessor_config.json` (`ViTImageProcessor`) describes:
/// resize to exactly `size` (no crop, aspect ratio not kept), rescale, normalise per channel
/// (docs/nepa.md §7.2). The official NEPA repositories: 224 × 224, bilinear, 1/255, mean =
/// std = 0.5.
#[derive(Clone, Debug, PartialEq)]
pub struct HubPreprocessor {
    /// `[height, width]` after resizing; `None` when `do_resize` is false (the image must
    /// then already have the model's size).
    pub size: Option<[usize; 2]>,
    pub resample: Resample,
    /// `None` when `do_rescale` is false.
    pub rescale_factor: Option<f64>,
    /// `None` when `do_normalize` is false.
    pub mean_std: Option<([f64; 3], [f64; 3])>,
}

impl HubPreprocessor {
    /// The official transform for `config` (what [`hf_preprocessor_config_json`] writes).
    pub fn official(config: &NepaConfig) -> Self {
        Self {
            size: Some(config.image_size),
            resample: Resample::Bilinear,
            rescale_factor: Some(1.0 / 255.0),
            mean_std: Some(([0.5; 3], [0.5; 3])),
        }
    }

    /// A classifier's input for one image: CHW float, `3 · height · width` values, where
    /// `[height, width]` is the model's `image_size`.
    pub fn apply(&self, config: &NepaConfig, image: &RgbImage) -> Result<Vec<f32>, NepaError> {
        let [height, width] = config.image_size;
        if image.width == 0 || image.height == 0 {
            return Err(NepaError::Input("cannot preprocess an empty image".into()));
        }
        let resized;
        let image = match self.size {
            Some(size) if size != config.image_size => {
                return Err(NepaError::Config(format!(
                    "preprocessor_config.json resizes to {}×{} but the model takes {height}×{width}",
                    size[0], size[1]
                )));
            }
            Some(_) => {
                resized = match self.resample {
                    Resample::Bilinear => resize_bilinear(image, width, height),
                    Resample::Bicubic => resize_bicubic(image, width, height),
                };
                &resized
            }
            None if [image.height, image.width] != config.image_size => {
                return Err(NepaError::Input(format!(
                    "the preprocessor does not resize, and the image is {}×{}, not the model's \
                     {height}×{width}",
                    image.height, image.width
                )));
            }
            None => image,
        };
        let plane = width * height;
        let mut out = vec![0.0f32; 3 * plane];
        for (i, p) in image.pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                // As transformers: rescale in f64, cast to f32, then normalise in f32.
                let mut v = match self.rescale_factor {
                    Some(f) => (f64::from(p[c]) * f) as f32,
                    None => f32::from(p[c]),
                };
                if let Some((mean, std)) = &self.mean_std {
                    v = (v - mean[c] as f32) / std[c] as f32;
                }
                out[c * plane + i] = v;
            }
        }
        Ok(out)
    }
}

/// Reads a `preprocessor_config.json`: resize (`do_resize`, `size` as `{height, width}`,
/// `resample` 2 or 3), rescale and normalise, with `ViTImageProcessor`'s defaults for what it
/// leaves out (resize to the model's size, bilinear, 1/255, mean = std = 0.5). Refuses what
/// the transform cannot do as written (a centre crop, another filter, a size that is not the
/// model's), rather than preprocess differently from the model's own code.
pub fn parse_hf_preprocessor_config(
    json: &str,
    config: &NepaConfig,
) -> Result<HubPreprocessor, NepaError> {
    let err = |m: String| NepaError::Config(format!("preprocessor_config.json: {m}"));
    let value: Value =
        serde_json::from_str(json).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(err("not a JSON object".into()));
    };
    let flag = |key: &str, default: bool| -> Result<bool, NepaError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(err(format!("{key} is {other}, not true or false"))),
        }
    };
    if flag("do_center_crop", false)? {
        return Err(err(
            "do_center_crop is true; nepa reads the resize-only transform of ViTImageProcessor"
                .into(),
        ));
    }
    let size = if flag("do_resize", true)? {
        let size = match map.get("size") {
            None | Some(Value::Null) => config.image_size,
            Some(Value::Object(s)) => {
                let side = |key: &str| {
                    s.get(key)
                        .and_then(Value::as_u64)
                        .and_then(|v| usize::try_from(v).ok())
                        .ok_or_else(|| err(format!("size has no whole `{key}`")))
                };
                [side("height")?, side("width")?]
            }
            Some(Value::Number(n)) => {
                let side = n
                    .as_u64()
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| err(format!("size {n} is not a whole number")))?;
                [side, side]
            }
            Some(other) => return Err(err(format!("size {other} is not {{height, width}}"))),
        };
        if size != config.image_size {
            return Err(err(format!(
                "resizes to {}×{} but the model takes {}×{}",
                size[0], size[1], config.image_size[0], config.image_size[1]
            )));
        }
        Some(size)
    } else {
        None
    };
    let resample = match map.get("resample") {
        None | Some(Value::Null) => Resample::Bilinear,
        Some(v) if v.as_u64() == Some(2) => Resample::Bilinear,
        Some(v) if v.as_u64() == Some(3) => Resample::Bicubic,
        Some(other) => {
            return Err(err(format!(
                "resample {other} is not 2 (bilinear) or 3 (bicubic)"
            )));
        }
    };
    let rescale_factor = if flag("do_rescale", true)? {
        match map.get("rescale_factor") {
            None | Some(Value::Null) => Some(1.0 / 255.0),
            Some(v) => Some(
                v.as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| err(format!("rescale_factor {v} is not a number")))?,
            ),
        }
    } else {
        None
    };
    let per_channel = |key: &str| -> Result<[f64; 3], NepaError> {
        let bad = || err(format!("{key} is not one number or three"));
        let values: Vec<f64> = match map.get(key) {
            None | Some(Value::Null) => vec![0.5; 3],
            Some(Value::Number(n)) => vec![n.as_f64().ok_or_else(bad)?; 3],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_f64().ok_or_else(bad))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad()),
        };
        let values: [f64; 3] = values.try_into().map_err(|_| bad())?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad());
        }
        Ok(values)
    };
    let mean_std = if flag("do_normalize", true)? {
        let (mean, std) = (per_channel("image_mean")?, per_channel("image_std")?);
        if std.contains(&0.0) {
            return Err(err("image_std has a zero".into()));
        }
        Some((mean, std))
    } else {
        None
    };
    Ok(HubPreprocessor {
        size,
        resample,
        rescale_factor,
        mean_std,
    })
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

    #[test]
    fn written_preprocessor_config_reads_back_as_the_official_transform() {
        let config = NepaConfig::base();
        let read =
            parse_hf_preprocessor_config(&hf_preprocessor_config_json(&config), &config).unwrap();
        assert_eq!(read, HubPreprocessor::official(&config));
        // The transform is docs/nepa.md §7.2, the crate's evaluation preprocessing.
        let image = RgbImage {
            width: 300,
            height: 200,
            pixels: (0..300 * 200 * 3).map(|i| (i * 7 % 256) as u8).collect(),
        };
        let ours = read.apply(&config, &image).unwrap();
        let reference = crate::image::preprocess_eval(&image, 224, 224);
        assert_eq!(ours.len(), reference.len());
        let worst = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "{worst}");
    }

    #[test]
    fn preprocessor_settings_are_read_or_refused() {
        let config = NepaConfig::base();
        let read = parse_hf_preprocessor_config(
            r#"{"size": {"height": 224, "width": 224}, "resample": 3, "rescale_factor": 1.0,
                "image_mean": [0.1, 0.2, 0.3], "image_std": 2}"#,
            &config,
        )
        .unwrap();
        assert_eq!(read.resample, Resample::Bicubic);
        assert_eq!(read.rescale_factor, Some(1.0));
        assert_eq!(read.mean_std, Some(([0.1, 0.2, 0.3], [2.0; 3])));
        // A flat image: (200 · 1 − 0.2) / 2 in the green plane.
        let pixels = read
            .apply(&config, &RgbImage::filled(10, 10, [200; 3]))
            .unwrap();
        assert!(
            (pixels[224 * 224] - 99.9).abs() < 1e-4,
            "{}",
            pixels[224 * 224]
        );
        for (json, says) in [
            (r#"{"do_center_crop": true}"#, "do_center_crop"),
            (r#"{"resample": 0}"#, "resample 0"),
            (r#"{"size": {"height": 256, "width": 256}}"#, "256×256"),
            (
                r#"{"size": {"shortest_edge": 224}}"#,
                "size has no whole `height`",
            ),
            (
                r#"{"image_mean": [0.5, 0.5]}"#,
                "image_mean is not one number or three",
            ),
            (r#"{"image_std": [0.5, 0, 0.5]}"#, "image_std has a zero"),
            (r#"{"do_resize": "yes"}"#, "do_resize"),
            ("[]", "not a JSON object"),
        ] {
            let e = parse_hf_preprocessor_config(json, &config)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{json}: {e}");
        }
        // Without resizing, the image must already have the model's size.
        let plain = parse_hf_preprocessor_config(r#"{"do_resize": false}"#, &config).unwrap();
        assert!(
            plain
                .apply(&config, &RgbImage::filled(8, 8, [0; 3]))
                .is_err()
        );
        assert_eq!(
            plain
                .apply(&config, &RgbImage::filled(224, 224, [255; 3]))
                .unwrap()[0],
            1.0
        );
    }
}
