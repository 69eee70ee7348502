//! Checkpoint import/export with the official key names (docs/nepa.md §7.3).

mod common;

use std::collections::BTreeMap;

use burn::tensor::Device;
use common::{Fixture, assert_close, read_fixture, values};
use nepa::checkpoint::{
    backbone_tensors, classifier_tensors, config_from_metadata, infer_config, to_safetensors,
};
use nepa::{ForwardOptions, LoadOptions, NepaError, load_backbone, load_classifier};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

/// All tensors of a safetensors file as key → (dtype, shape, bytes).
fn entries(bytes: &[u8]) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let file = SafeTensors::deserialize(bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn write(entries: &BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .map(|(k, (dtype, shape, data))| {
            (
                k.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::tensor::serialize(views, None).unwrap()
}

#[test]
fn export_reproduces_the_reference_files_key_for_key() {
    let device = Device::flex();
    for name in common::FIXTURES {
        let fx = Fixture::load(name);
        let saved = if fx.num_labels > 0 {
            let (model, _) = load_classifier(
                &fx.model_bytes,
                &fx.config,
                None,
                &device,
                LoadOptions::default(),
            )
            .unwrap();
            to_safetensors(&classifier_tensors(&model), &fx.config).unwrap()
        } else {
            let (model, _) =
                load_backbone(&fx.model_bytes, &fx.config, &device, LoadOptions::default())
                    .unwrap();
            to_safetensors(&backbone_tensors(&model, fx.prefixed), &fx.config).unwrap()
        };
        // Same keys, shapes and float32 bytes as the reference wrote.
        assert_eq!(entries(&saved), entries(&fx.model_bytes), "{name}");
        // The config travels in the metadata.
        assert_eq!(
            config_from_metadata(&saved).unwrap(),
            Some(fx.config.clone())
        );
    }
}

#[test]
fn loads_with_and_without_the_vit_nepa_prefix() {
    let device = Device::flex();
    let fx = Fixture::load("causal_gelu_2x2");
    assert!(fx.prefixed);
    let (model, report) =
        load_backbone(&fx.model_bytes, &fx.config, &device, LoadOptions::default()).unwrap();
    assert!(report.prefixed);
    // Strip the prefix and load again: identical outputs.
    let bare: BTreeMap<_, _> = entries(&fx.model_bytes)
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("vit_nepa.").to_string(), v))
        .collect();
    assert!(bare.contains_key("embeddings.cls_token"));
    let (bare_model, bare_report) =
        load_backbone(&write(&bare), &fx.config, &device, LoadOptions::default()).unwrap();
    assert!(!bare_report.prefixed);
    let pixels = fx.tensor::<4>("input.pixel_values", &device);
    let a = values(
        model
            .forward(pixels.clone(), &ForwardOptions::eval())
            .last_hidden_state,
    );
    let b = values(
        bare_model
            .forward(pixels, &ForwardOptions::eval())
            .last_hidden_state,
    );
    assert_eq!(a, b);
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named() {
    let device = Device::flex();
    let fx = Fixture::load("causal_gelu_2x2");
    let mut file = entries(&fx.model_bytes);
    let key = "vit_nepa.encoder.layer.1.intermediate.up_proj.weight";
    let entry = file.get_mut(key).unwrap();
    entry.1 = vec![47, 32];
    entry.2.truncate(47 * 32 * 4);
    let err =
        load_backbone(&write(&file), &fx.config, &device, LoadOptions::default()).unwrap_err();
    assert!(matches!(err, NepaError::ShapeMismatch { .. }));
    let message = err.to_string();
    assert!(message.contains(key), "{message}");
    assert!(
        message.contains("[48, 32]") && message.contains("[47, 32]"),
        "{message}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let device = Device::flex();
    let fx = Fixture::load("causal_gelu_2x2");
    let mut file = entries(&fx.model_bytes);
    file.remove("vit_nepa.layernorm.bias");
    let err =
        load_backbone(&write(&file), &fx.config, &device, LoadOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("vit_nepa.layernorm.bias") && message.contains("[32]"),
        "{message}"
    );
}

#[test]
fn non_affine_qk_norm_file_into_an_affine_config() {
    // The base pretraining checkpoint has no q_norm/k_norm tensors; the fine-tuning config
    // expects them (upstream issue #12).
    let device = Device::flex();
    let fx = Fixture::load("causal_gelu_2x2");
    let affine = fx.config.clone().with_qk_norm_affine(true);
    let err = load_backbone(&fx.model_bytes, &affine, &device, LoadOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("vit_nepa.encoder.layer.0.attention.attention.q_norm.weight"),
        "{message}"
    );
    assert!(message.contains("qk_norm_affine = false"), "{message}");

    let options = LoadOptions {
        init_missing_qk_norm: true,
        ..LoadOptions::default()
    };
    let (model, report) = load_backbone(&fx.model_bytes, &affine, &device, options).unwrap();
    assert_eq!(
        report.initialized_keys.len(),
        4,
        "{:?}",
        report.initialized_keys
    );
    // Weights of 1 are the non-affine norm: same outputs as the reference.
    let pixels = fx.tensor::<4>("input.pixel_values", &device);
    let out = values(
        model
            .forward(pixels, &ForwardOptions::eval())
            .last_hidden_state,
    );
    common::assert_close("z_hat", out, fx.get("expected.z_hat"), 1e-4);
}

#[test]
fn classifier_from_a_pretraining_checkpoint_gets_a_zero_head() {
    let device = Device::flex();
    let fx = Fixture::load("causal_gelu_2x2");
    let err = load_classifier(
        &fx.model_bytes,
        &fx.config,
        Some(4),
        &device,
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("fc_norm.weight"), "{err}");
    let options = LoadOptions {
        init_missing_head: true,
        ..LoadOptions::default()
    };
    let config = fx.config.clone().with_causal(false);
    let (model, report) =
        load_classifier(&fx.model_bytes, &config, Some(4), &device, options).unwrap();
    assert_eq!(report.initialized_keys.len(), 4);
    assert!(!model.vit_nepa.is_causal);
    let pixels = fx.tensor::<4>("input.pixel_values", &device);
    let logits = values(model.forward(pixels, &ForwardOptions::eval()));
    assert_eq!(logits.0, vec![2, 4]);
    assert!(logits.1.iter().all(|v| *v == 0.0), "zero-initialised head");
}

#[test]
fn backbone_load_of_a_classifier_file_reports_the_head_as_unused() {
    let device = Device::flex();
    let fx = Fixture::load("bidir_gelu_2x2_cls");
    let (_, report) =
        load_backbone(&fx.model_bytes, &fx.config, &device, LoadOptions::default()).unwrap();
    assert_eq!(
        report.unused_keys,
        vec![
            "classifier.bias",
            "classifier.weight",
            "fc_norm.bias",
            "fc_norm.weight"
        ]
    );
}

#[test]
fn half_precision_checkpoints_load() {
    let device = Device::flex();
    let fx = Fixture::load("causal_swiglu_4x3");
    let file: BTreeMap<_, _> = entries(&fx.model_bytes)
        .into_iter()
        .map(|(k, (_, shape, data))| {
            let bf16: Vec<u8> = data
                .chunks_exact(4)
                .flat_map(|b| {
                    half::bf16::from_f32(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes()
                })
                .collect();
            (k, (Dtype::BF16, shape, bf16))
        })
        .collect();
    let (model, _) =
        load_backbone(&write(&file), &fx.config, &device, LoadOptions::default()).unwrap();
    let pixels = fx.tensor::<4>("input.pixel_values", &device);
    let out = values(
        model
            .forward(pixels, &ForwardOptions::eval())
            .last_hidden_state,
    );
    // bf16 keeps 8 bits of mantissa: close, not equal.
    let diff = common::max_abs_diff("bf16 z_hat", out, fx.get("expected.z_hat"));
    assert!(diff > 0.0 && diff < 0.2, "{diff}");
}

#[test]
fn infers_the_architecture_from_tensor_shapes() {
    let fx = Fixture::load("causal_swiglu_4x3");
    let inferred = infer_config(&fx.model_bytes).unwrap();
    let c = &fx.config;
    assert_eq!(
        (
            inferred.hidden_size,
            inferred.num_hidden_layers,
            inferred.num_attention_heads
        ),
        (c.hidden_size, c.num_hidden_layers, c.num_attention_heads)
    );
    assert_eq!(inferred.intermediate_size, c.intermediate_size);
    assert_eq!(inferred.patch_size, c.patch_size);
    assert!(inferred.use_gated_mlp && inferred.qk_norm_affine && inferred.is_causal);

    let cls = Fixture::load("bidir_gelu_2x2_cls");
    let inferred = infer_config(&cls.model_bytes).unwrap();
    assert!(!inferred.use_gated_mlp && !inferred.qk_norm_affine && !inferred.is_causal);
}

#[test]
fn garbage_bytes_are_a_clear_error() {
    let device = Device::flex();
    let fx = Fixture::load("causal_gelu_2x2");
    let err = load_backbone(
        b"not a checkpoint",
        &fx.config,
        &device,
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("checkpoint is not a valid safetensors file"),
        "{err}"
    );
    let truncated = &read_fixture("causal_gelu_2x2.model.safetensors")[..1000];
    assert!(load_backbone(truncated, &fx.config, &device, LoadOptions::default()).is_err());
}

/// The attention computes Q, K and V in one matrix product over the three weights side by
/// side (docs/performance.md §7); the parameters, and so the files, keep the official three
/// tensors. A forward pass through the fused product, then an export, gives back every
/// reference file byte for byte, with the q/k/v keys and no fused one.
#[test]
fn official_qkv_keys_round_trip_through_the_fused_projection() {
    let device = Device::flex();
    for name in common::FIXTURES.iter().filter(|n| !n.contains("cls")) {
        let fx = Fixture::load(name);
        let (model, _) =
            load_backbone(&fx.model_bytes, &fx.config, &device, LoadOptions::default()).unwrap();
        // Without autodiff and attention maps this is the fused inference path, which the
        // parity test (autodiff, maps kept) does not take.
        let pixels = fx.tensor::<4>("input.pixel_values", &device);
        let out = model.forward(pixels, &ForwardOptions::eval());
        assert_close(
            &format!("{name} z_hat"),
            values(out.last_hidden_state),
            fx.get("expected.z_hat"),
            1e-4,
        );
        let saved = to_safetensors(&backbone_tensors(&model, fx.prefixed), &fx.config).unwrap();
        let saved = entries(&saved);
        assert_eq!(saved, entries(&fx.model_bytes), "{name}");
        let prefix = if fx.prefixed { "vit_nepa." } else { "" };
        for layer in 0..fx.config.num_hidden_layers {
            for part in ["query", "key", "value"] {
                let key =
                    format!("{prefix}encoder.layer.{layer}.attention.attention.{part}.weight");
                assert!(saved.contains_key(&key), "{name}: {key} missing");
            }
        }
        assert!(
            !saved.keys().any(|k| k.contains("qkv")),
            "{name}: a fused key was written"
        );
    }
}
