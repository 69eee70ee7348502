//! Hostile input: every malformed checkpoint, optimizer state or image is an error of a
//! known kind that names the tensor or field at fault, never a panic or an allocation bomb.

use std::collections::BTreeMap;
use std::io::Cursor;

use burn::tensor::Device;
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
use nepa::checkpoint::{
    backbone_tensors, classifier_tensors, config_from_metadata, infer_config, to_safetensors,
};
use nepa::image::{ImageError, TRUNCATED_JPEG_WARNING, decode, decode_with_warnings};
use nepa::train::{AdamW, AdamWConfig};
use nepa::{
    LoadOptions, MAX_LABELS, NepaClassifier, NepaConfig, NepaError, NepaModel, load_backbone,
    load_classifier,
};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

type Entries = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn tiny() -> NepaConfig {
    NepaConfig::new(8, 1, 2)
        .with_image_size(8, 8)
        .with_patch_size(4)
}

fn entries(bytes: &[u8]) -> Entries {
    let file = SafeTensors::deserialize(bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn write_with(entries: &Entries, metadata: Option<(&str, String)>) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .map(|(k, (dtype, shape, data))| {
            (
                k.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    let metadata = metadata.map(|(k, v)| std::collections::HashMap::from([(k.to_string(), v)]));
    safetensors::tensor::serialize(views, metadata).unwrap()
}

fn write(entries: &Entries) -> Vec<u8> {
    write_with(entries, None)
}

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

/// The tiny backbone's tensors, without metadata (so `infer_config` reads shapes).
fn backbone_entries(config: &NepaConfig) -> Entries {
    let model = NepaModel::new(config, &Device::flex()).unwrap();
    entries(&to_safetensors(&backbone_tensors(&model, false), config).unwrap())
}

fn classifier_entries() -> Entries {
    let config = tiny();
    let model = NepaClassifier::new(&config, 3, &Device::flex()).unwrap();
    entries(&to_safetensors(&classifier_tensors(&model), &config).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------------------

#[test]
fn an_oversized_config_is_refused_before_the_file_is_read() {
    let device = Device::flex();
    let mut config = tiny();
    config.hidden_size = 1 << 40;
    // Not even a safetensors file: the config is refused first.
    let e = load_backbone(b"junk", &config, &device, LoadOptions::default()).unwrap_err();
    assert!(matches!(e, NepaError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("hidden_size"), "{e}");
    let big = NepaConfig::new(8192, 64, 64);
    let e = load_backbone(b"junk", &big, &device, LoadOptions::default()).unwrap_err();
    assert!(matches!(e, NepaError::TooLarge(_)), "{e:?}");
    let e = NepaModel::new(&big, &device).unwrap_err();
    assert!(matches!(e, NepaError::TooLarge(_)), "{e:?}");
}

#[test]
fn infer_config_checks_every_shape_before_use() {
    let affine = tiny().with_qk_norm_affine(true);
    let base = backbone_entries(&affine);
    let q_norm = "encoder.layer.0.attention.attention.q_norm.weight";
    let up = "encoder.layer.0.intermediate.up_proj.weight";
    let conv = "embeddings.patch_embeddings.projection.weight";
    assert!(base.contains_key(q_norm));
    assert_eq!(infer_config(&write(&base)).unwrap().head_dim(), 4);

    // q_norm of shape [0] (was a division by zero), 0-dim (was an index out of bounds),
    // and a width that does not divide D.
    for shape in [vec![0], vec![], vec![3], vec![2, 2]] {
        let mut e = base.clone();
        let n = shape.iter().product();
        e.insert(q_norm.into(), (Dtype::F32, shape.clone(), f32_bytes(n)));
        let err = infer_config(&write(&e)).unwrap_err();
        assert!(
            matches!(err, NepaError::ShapeMismatch { .. }),
            "{shape:?}: {err:?}"
        );
        assert!(err.to_string().contains(q_norm), "{err}");
    }
    // up_proj 0-dim or with the wrong input width.
    for shape in [vec![], vec![32], vec![32, 9]] {
        let mut e = base.clone();
        let n = shape.iter().product();
        e.insert(up.into(), (Dtype::F32, shape.clone(), f32_bytes(n)));
        let err = infer_config(&write(&e)).unwrap_err();
        assert!(
            matches!(err, NepaError::ShapeMismatch { .. }),
            "{shape:?}: {err:?}"
        );
        assert!(err.to_string().contains(up), "{err}");
    }
    // A conv weight with a zero dimension holds no data, so it may declare any other size:
    // a hidden size of 2^40 is refused by its bound, naming the tensor.
    let mut e = base.clone();
    e.insert(conv.into(), (Dtype::F32, vec![1 << 40, 3, 0, 0], vec![]));
    let err = infer_config(&write(&e)).unwrap_err();
    assert!(matches!(err, NepaError::Config(_)), "{err:?}");
    assert!(
        err.to_string().contains(conv) && err.to_string().contains("hidden_size"),
        "{err}"
    );
    // One channel (the model only takes RGB) and a 0-dim conv.
    for shape in [vec![8, 1, 4, 4], vec![]] {
        let mut e = base.clone();
        let n = shape.iter().product();
        e.insert(conv.into(), (Dtype::F32, shape.clone(), f32_bytes(n)));
        let err = infer_config(&write(&e)).unwrap_err();
        assert!(
            matches!(err, NepaError::ShapeMismatch { .. }),
            "{shape:?}: {err:?}"
        );
    }
}

#[test]
fn stored_configs_are_validated() {
    let base = backbone_entries(&tiny());
    let mut hostile = tiny();
    hostile.num_hidden_layers = 1 << 20;
    let bytes = write_with(&base, Some(("nepa_config", hostile.to_json())));
    for e in [
        config_from_metadata(&bytes).unwrap_err(),
        infer_config(&bytes).unwrap_err(),
    ] {
        assert!(matches!(e, NepaError::Config(_)), "{e:?}");
        assert!(e.to_string().contains("num_hidden_layers"), "{e}");
    }
    let mut big = NepaConfig::new(8192, 64, 64);
    big.image_size = [224, 224];
    let bytes = write_with(&base, Some(("nepa_config", big.to_json())));
    assert!(matches!(infer_config(&bytes), Err(NepaError::TooLarge(_))));
}

#[test]
fn classifier_heads_are_checked_before_allocating() {
    let device = Device::flex();
    let config = tiny();
    let base = classifier_entries();
    let (model, _) = load_classifier(
        &write(&base),
        &config,
        None,
        &device,
        LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(model.num_labels(), 3);

    // 0-dim head (was an index out of bounds).
    let mut e = base.clone();
    e.insert(
        "classifier.weight".into(),
        (Dtype::F32, vec![], f32_bytes(1)),
    );
    let err =
        load_classifier(&write(&e), &config, None, &device, LoadOptions::default()).unwrap_err();
    assert!(matches!(err, NepaError::ShapeMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("classifier.weight"), "{err}");

    // No labels, or more than MAX_LABELS (a zero width keeps the file empty).
    for rows in [0, MAX_LABELS + 1] {
        let mut e = base.clone();
        e.insert(
            "classifier.weight".into(),
            (Dtype::F32, vec![rows, 0], vec![]),
        );
        let err = load_classifier(&write(&e), &config, None, &device, LoadOptions::default())
            .unwrap_err();
        assert!(matches!(err, NepaError::Config(_)), "{rows}: {err:?}");
        let message = err.to_string();
        assert!(
            message.contains("classifier.weight") && message.contains("labels"),
            "{message}"
        );
    }
    // A label count from the caller is bounded too, and so is NepaClassifier::new.
    let err = load_classifier(
        &write(&base),
        &config,
        Some(0),
        &device,
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, NepaError::Config(_)), "{err:?}");
    assert!(matches!(
        NepaClassifier::new(&config, 0, &device),
        Err(NepaError::Config(_))
    ));
}

#[test]
fn unsupported_dtypes_name_the_tensor() {
    let device = Device::flex();
    let mut e = backbone_entries(&tiny());
    let key = "layernorm.weight";
    let (_, shape, _) = e[key].clone();
    e.insert(key.into(), (Dtype::I32, shape.clone(), f32_bytes(shape[0])));
    let err = load_backbone(&write(&e), &tiny(), &device, LoadOptions::default()).unwrap_err();
    assert!(
        matches!(&err, NepaError::UnsupportedDType { key: k, .. } if k == key),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Optimizer state
// ---------------------------------------------------------------------------------------------

/// A valid optimizer state for `model`: every parameter with step 2.
fn state_entries(model: &NepaModel) -> Entries {
    let mut out = Entries::new();
    for t in backbone_tensors(model, false) {
        let n: usize = t.shape.iter().product();
        out.insert(
            format!("exp_avg.{}", t.key),
            (Dtype::F32, vec![n], f32_bytes(n)),
        );
        out.insert(
            format!("exp_avg_sq.{}", t.key),
            (Dtype::F32, vec![n], f32_bytes(n)),
        );
        out.insert(
            format!("step.{}", t.key),
            (Dtype::F32, vec![1], 2f32.to_le_bytes().to_vec()),
        );
    }
    out
}

fn load_state(entries: &Entries) -> Result<AdamW, NepaError> {
    AdamW::load_state(AdamWConfig::default(), &write(entries), &Device::flex())
}

#[test]
fn optimizer_state_is_checked_tensor_by_tensor() {
    let device = Device::flex();
    let model = NepaModel::new(&tiny(), &device).unwrap();
    let base = state_entries(&model);
    let state = load_state(&base).unwrap();
    state.check_against(&model).unwrap();

    let key = "layernorm.weight";
    let step = format!("step.{key}");
    let avg = format!("exp_avg.{key}");
    let sq = format!("exp_avg_sq.{key}");
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    type Edit = Box<dyn Fn(&mut Entries)>;
    let cases: Vec<(&str, String, Edit)> = vec![
        // An empty step tensor was an index out of bounds.
        ("empty step", step.clone(), {
            let step = step.clone();
            Box::new(move |e| {
                e.insert(step.clone(), (Dtype::F32, vec![0], vec![]));
            })
        }),
        ("fractional step", step.clone(), {
            let (step, b) = (step.clone(), f32s(&[1.5]));
            Box::new(move |e| {
                e.insert(step.clone(), (Dtype::F32, vec![1], b.clone()));
            })
        }),
        ("negative step", step.clone(), {
            let (step, b) = (step.clone(), f32s(&[-1.0]));
            Box::new(move |e| {
                e.insert(step.clone(), (Dtype::F32, vec![1], b.clone()));
            })
        }),
        ("NaN step", step.clone(), {
            let (step, b) = (step.clone(), f32s(&[f32::NAN]));
            Box::new(move |e| {
                e.insert(step.clone(), (Dtype::F32, vec![1], b.clone()));
            })
        }),
        ("F16 moments", avg.clone(), {
            let avg = avg.clone();
            Box::new(move |e| {
                e.insert(avg.clone(), (Dtype::F16, vec![8], vec![0; 16]));
            })
        }),
        ("infinite moment", sq.clone(), {
            let (sq, b) = (sq.clone(), f32s(&[f32::INFINITY; 8]));
            Box::new(move |e| {
                e.insert(sq.clone(), (Dtype::F32, vec![8], b.clone()));
            })
        }),
        ("negative second moment", sq.clone(), {
            let (sq, b) = (sq.clone(), f32s(&[-1.0; 8]));
            Box::new(move |e| {
                e.insert(sq.clone(), (Dtype::F32, vec![8], b.clone()));
            })
        }),
        ("unequal moment lengths", sq.clone(), {
            let sq = sq.clone();
            Box::new(move |e| {
                e.insert(sq.clone(), (Dtype::F32, vec![7], f32_bytes(7)));
            })
        }),
        ("missing second moment", sq.clone(), {
            let sq = sq.clone();
            Box::new(move |e| {
                e.remove(&sq);
            })
        }),
        ("moments without a step", step.clone(), {
            let step = step.clone();
            Box::new(move |e| {
                e.remove(&step);
            })
        }),
        ("a stray tensor", "momentum.x".to_string(), {
            Box::new(|e| {
                e.insert("momentum.x".into(), (Dtype::F32, vec![1], f32_bytes(1)));
            })
        }),
    ];
    for (what, names, edit) in cases {
        let mut e = base.clone();
        edit(&mut e);
        let err = match load_state(&e) {
            Err(err) => err,
            Ok(_) => panic!("{what}: accepted"),
        };
        assert!(
            matches!(
                err,
                NepaError::Parse(_)
                    | NepaError::MissingTensor { .. }
                    | NepaError::ShapeMismatch { .. }
            ),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains(&names), "{what}: {err}");
    }
}

#[test]
fn optimizer_state_is_checked_against_the_model() {
    let device = Device::flex();
    let model = NepaModel::new(&tiny(), &device).unwrap();
    // Saved for a wider model: same keys, other sizes.
    let wide = NepaModel::new(
        &NepaConfig::new(16, 1, 2)
            .with_image_size(8, 8)
            .with_patch_size(4),
        &device,
    )
    .unwrap();
    let state = load_state(&state_entries(&wide)).unwrap();
    let err = state.check_against(&model).unwrap_err();
    assert!(matches!(err, NepaError::ShapeMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("exp_avg."), "{err}");

    // Saved for a classifier: its keys are not the backbone's.
    let classifier = NepaClassifier::new(&tiny(), 3, &device).unwrap();
    let mut e = Entries::new();
    for t in classifier_tensors(&classifier) {
        let n: usize = t.shape.iter().product();
        e.insert(
            format!("exp_avg.{}", t.key),
            (Dtype::F32, vec![n], f32_bytes(n)),
        );
        e.insert(
            format!("exp_avg_sq.{}", t.key),
            (Dtype::F32, vec![n], f32_bytes(n)),
        );
        e.insert(
            format!("step.{}", t.key),
            (Dtype::F32, vec![1], f32_bytes(1)),
        );
    }
    let state = load_state(&e).unwrap();
    state.check_against(&classifier).unwrap();
    let err = state.check_against(&model).unwrap_err();
    assert!(matches!(err, NepaError::Input(_)), "{err:?}");
    assert!(
        err.to_string().contains("vit_nepa.") || err.to_string().contains("classifier."),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = ImageBuffer::from_fn(w, h, |x, y| Rgb([(x * 7) as u8, (y * 11) as u8, 77]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

#[test]
fn truncated_jpegs_decode_with_a_warning() {
    let full = jpeg(64, 64);
    let (image, warnings) = decode_with_warnings(&full).unwrap();
    assert_eq!((image.width, image.height), (64, 64));
    assert!(warnings.is_empty(), "{warnings:?}");

    // Padding after the end marker is not truncation.
    let mut padded = full.clone();
    padded.extend_from_slice(&[0, 0, 0xFF, 0]);
    assert!(decode_with_warnings(&padded).unwrap().1.is_empty());

    // Cut in the middle of the scan: decoded (grey fill) with a warning, or refused.
    let cut = &full[..full.len() * 2 / 3];
    match decode_with_warnings(cut) {
        Ok((image, warnings)) => {
            assert_eq!((image.width, image.height), (64, 64));
            assert_eq!(warnings, vec![TRUNCATED_JPEG_WARNING.to_string()]);
            // `decode` is the same image without the warning.
            assert_eq!(decode(cut).unwrap(), image);
        }
        Err(e) => assert!(matches!(e, ImageError::Corrupt(_)), "{e:?}"),
    }
}

#[test]
fn other_formats_give_no_warnings() {
    let img = ImageBuffer::from_fn(8, 8, |x, y| Rgb([x as u8, y as u8, 0]));
    let mut png = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut png, ImageFormat::Png)
        .unwrap();
    let (_, warnings) = decode_with_warnings(&png.into_inner()).unwrap();
    assert!(warnings.is_empty());
}
