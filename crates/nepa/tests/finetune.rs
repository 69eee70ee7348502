//! Fine-tuning modes (full with LLRD, head only, LoRA) and the shared benchmark run, on Flex.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::values;
use nepa::bench::{
    BenchRun, BenchSettings, ReportError, RunReport, compare, seeded_backbone, synthetic_batch,
};
use nepa::checkpoint::{
    backbone_tensors, classes_from_metadata, classifier_tensors, classifier_to_safetensors_async,
    load_classifier, to_safetensors,
};
use nepa::data::ImageSet;
use nepa::finetune::{FinetuneMode, FinetuneRun, FinetuneSettings, Finetuner};
use nepa::recipe::smooth_one_hot;
use nepa::train::UpdatePlan;
use nepa::{
    ForwardOptions, LoadOptions, NepaClassifier, NepaConfig, NepaModel, SplitMix64, StepOutcome,
};

fn config() -> NepaConfig {
    NepaConfig::new(32, 2, 4)
        .with_image_size(16, 16)
        .with_patch_size(4)
        .with_layerscale(0.1)
}

/// Two classes told apart by colour: reddish (0) or bluish (1) images, plus noise. (Not a
/// spatial task: mean pooling over patches would hide where things are from a head.)
fn two_class_batch(n: usize, seed: u64) -> (TensorData, Vec<usize>) {
    let mut rng = SplitMix64::new(seed);
    let mut pixels = Vec::with_capacity(n * 3 * 16 * 16);
    let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
    for &label in &labels {
        for c in 0..3 {
            let base = match (c, label) {
                (0, 0) | (2, 1) => 0.5,
                (1, _) => 0.0,
                _ => -0.5,
            };
            for _ in 0..16 * 16 {
                pixels.push((base + rng.uniform(-0.6, 0.6)) as f32);
            }
        }
    }
    (TensorData::new(pixels, [n, 3, 16, 16]), labels)
}

fn read(t: Tensor<1>) -> Vec<f32> {
    values(t).1
}

fn backbone_values(model: &NepaModel) -> Vec<(String, Vec<f32>)> {
    backbone_tensors(model, false)
        .into_iter()
        .map(|t| (t.key, read(t.values)))
        .collect()
}

fn train(mode: FinetuneMode) -> (Finetuner, Vec<f32>, NepaModel) {
    let device = Device::flex();
    let backbone = seeded_backbone(&config(), 3, &device).unwrap();
    let settings = FinetuneSettings {
        mode,
        batch_size: 8,
        // Peak 3e-3 at batch 8; warmup 2 of 30 steps.
        blr: 3e-3 * 256.0 / 8.0,
        warmup_ratio: 2.0 / 30.0,
        head_lr: 1e-2,
        drop_path: 0.0,
        ..FinetuneSettings::small_data()
    };
    device.seed(3);
    let model = NepaClassifier::from_backbone(backbone.clone(), 2, &device);
    let mut tuner = Finetuner::new(model, &settings, 30);
    let autodiff = device.clone().autodiff();
    let mut losses = vec![];
    for step in 0..30 {
        let (data, labels) = two_class_batch(8, step);
        let targets = TensorData::new(smooth_one_hot(&labels, 2, 0.1).unwrap(), [8, 2]);
        let out = tuner.step(
            Tensor::from_data(data, &autodiff),
            Tensor::from_data(targets, &autodiff),
            &ForwardOptions::eval(),
            UpdatePlan::default(),
        );
        losses.push(out.loss.into_scalar::<f32>());
    }
    (tuner, losses, backbone)
}

fn accuracy(tuner: &Finetuner) -> f32 {
    let device = Device::flex();
    let (data, labels) = two_class_batch(32, 999);
    let model = tuner.export();
    let logits = model.forward(Tensor::from_data(data, &device), &ForwardOptions::eval());
    let (_, logits) = values(logits.reshape([64]));
    let predicted = nepa::train::argmax_rows(&logits, 2);
    predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count() as f32
        / labels.len() as f32
}

fn first_vs_last(losses: &[f32]) -> (f32, f32) {
    let first = losses[..3].iter().sum::<f32>() / 3.0;
    let last = losses[losses.len() - 3..].iter().sum::<f32>() / 3.0;
    (first, last)
}

#[test]
fn every_mode_learns_two_classes() {
    for mode in FinetuneMode::ALL {
        let (tuner, losses, _) = train(mode);
        let (first, last) = first_vs_last(&losses);
        let acc = accuracy(&tuner);
        assert!(last < first - 0.2, "{mode:?}: loss {first} → {last}");
        assert!(acc >= 0.9, "{mode:?}: held-out accuracy {acc}");
    }
}

#[test]
fn head_only_keeps_the_backbone_lora_changes_only_matrices_full_keeps_the_patch_embedding() {
    let (tuner, _, original) = train(FinetuneMode::HeadOnly);
    let before = backbone_values(&original);
    assert_eq!(backbone_values(&tuner.export().vit_nepa), before);

    let (tuner, _, original) = train(FinetuneMode::Lora);
    let before = backbone_values(&original);
    let after = backbone_values(&tuner.export().vit_nepa);
    let mut changed_matrices = 0;
    for ((key, b), (_, a)) in before.iter().zip(&after) {
        let is_linear_weight =
            key.ends_with(".weight") && !key.contains("norm") && !key.contains("patch_embeddings");
        let diff = b
            .iter()
            .zip(a)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        if is_linear_weight {
            changed_matrices += usize::from(diff > 1e-6);
        } else {
            assert_eq!(diff, 0.0, "{key} changed under LoRA");
        }
    }
    assert!(
        changed_matrices >= 8,
        "only {changed_matrices} matrices adapted"
    );

    // Full: everything moves except the patch embedding, frozen as in the official recipe.
    let (tuner, _, original) = train(FinetuneMode::Full);
    let (before, after) = (
        backbone_values(&original),
        backbone_values(&tuner.export().vit_nepa),
    );
    assert_ne!(after, before);
    let patch_weight = |values: &[(String, Vec<f32>)]| {
        values
            .iter()
            .find(|(k, _)| k == "embeddings.patch_embeddings.projection.weight")
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(patch_weight(&after), patch_weight(&before));
}

/// Sixteen 16×16 images, reddish (0) or bluish (1), as a labelled set.
fn two_class_set() -> ImageSet {
    let mut rng = SplitMix64::new(5);
    let pairs = (0..16)
        .map(|i| {
            let label = i % 2;
            let pixels = (0..16 * 16)
                .flat_map(|_| {
                    let jitter = (rng.uniform(-40.0, 40.0)) as i32;
                    let (r, b) = if label == 0 { (200, 60) } else { (60, 200) };
                    [r + jitter, 128, b - jitter].map(|v| v.clamp(0, 255) as u8)
                })
                .collect();
            (nepa::image::RgbImage::new(16, 16, pixels), label)
        })
        .collect();
    ImageSet::labelled(pairs, vec!["red".into(), "blue".into()], "test").unwrap()
}

fn run_losses(settings: &FinetuneSettings) -> (Vec<f32>, Vec<StepOutcome>, FinetuneRun) {
    let device = Device::flex();
    let backbone = seeded_backbone(&config(), 3, &device).unwrap();
    let autodiff = device.autodiff();
    let mut run = FinetuneRun::new(
        backbone,
        &config(),
        two_class_set(),
        settings.clone(),
        &autodiff,
    )
    .unwrap();
    let (mut losses, mut outcomes) = (vec![], vec![]);
    while !run.is_done() {
        let record = futures_lite::future::block_on(run.step()).unwrap();
        losses.push(record.loss);
        let stop = matches!(record.outcome, StepOutcome::Diverged(_));
        outcomes.push(record.outcome);
        if stop {
            break;
        }
    }
    (losses, outcomes, run)
}

/// The driver with the official recipe (Mixup/CutMix, RandAugment, erasing, EMA, drop path,
/// affine QK-norm) repeats a run exactly from its seed, and a diverging run is undone step by
/// step and stopped after five non-finite steps in a row.
#[test]
fn finetune_run_repeats_from_its_seed_and_undoes_then_stops_a_divergence() {
    let settings = FinetuneSettings {
        batch_size: 8,
        steps: Some(6),
        ..FinetuneSettings::official()
    };
    let (a, outcomes, run) = run_losses(&settings);
    let (b, _, _) = run_losses(&settings);
    assert_eq!(a.len(), 6);
    assert!(a.iter().all(|l| l.is_finite()), "{a:?}");
    assert!(outcomes.iter().all(|o| *o == StepOutcome::Applied));
    // Same seed, same curve, up to float summation order: Flex runs its reductions and
    // products on rayon's threads (docs/performance.md §1), which split the work as they
    // find it, so two runs can round differently (seen: 7e-6).
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "same seed, same curve: {a:?} vs {b:?}");
    let (c, _, _) = run_losses(&FinetuneSettings {
        seed: 7,
        ..settings.clone()
    });
    assert_ne!(a, c, "another seed draws other augmentations");
    assert!(
        run.ema_model().is_some(),
        "the official recipe keeps an EMA"
    );

    // A learning rate of 1e30 makes the steps after the first (warmup starts at 0) blow up:
    // each non-finite one is undone and counted, and five in a row stop the run.
    let (losses, outcomes, run) = run_losses(&FinetuneSettings {
        blr: 1e30,
        head_lr: 1e30,
        steps: Some(30),
        ..settings
    });
    assert_eq!(outcomes[0], StepOutcome::Applied, "step 0 has rate 0");
    assert!(
        matches!(outcomes.last(), Some(StepOutcome::Diverged(_))),
        "{losses:?}"
    );
    let tail = &outcomes[outcomes.len() - 5..outcomes.len() - 1];
    assert!(
        tail.iter().all(|o| *o == StepOutcome::Skipped),
        "{outcomes:?}"
    );
    assert!(run.skipped_steps() >= 5);
}

#[test]
fn exported_lora_model_saves_with_official_keys_and_reloads_identically() {
    let (tuner, _, _) = train(FinetuneMode::Lora);
    let device = Device::flex();
    let exported = tuner.export();
    let bytes =
        to_safetensors(&classifier_tensors(&exported), &config().with_causal(false)).unwrap();
    let keys: Vec<String> = classifier_tensors(&exported)
        .into_iter()
        .map(|t| t.key)
        .collect();
    assert!(keys.contains(&"vit_nepa.encoder.layer.0.attention.attention.query.weight".into()));
    assert!(keys.contains(&"classifier.weight".into()));
    assert!(keys.iter().all(|k| !k.contains("lora")), "{keys:?}");
    assert_eq!(classes_from_metadata(&bytes).unwrap(), None);
    let classes = vec!["reddish".to_string(), "bluish".to_string()];
    let named = futures_lite::future::block_on(classifier_to_safetensors_async(
        &classifier_tensors(&exported),
        &config().with_causal(false),
        &classes,
    ))
    .unwrap();
    assert_eq!(classes_from_metadata(&named).unwrap(), Some(classes));
    let (reloaded, _) = load_classifier(
        &bytes,
        &config().with_causal(false),
        None,
        &device,
        LoadOptions::default(),
    )
    .unwrap();
    let (data, _) = two_class_batch(4, 7);
    let a = exported.forward(
        Tensor::from_data(data.clone(), &device),
        &ForwardOptions::eval(),
    );
    let b = reloaded.forward(
        Tensor::from_data(data.clone(), &device),
        &ForwardOptions::eval(),
    );
    // And the merged weights give what the adapters gave during training.
    let c = tuner.model().forward(
        Tensor::from_data(data, &device.clone().autodiff()),
        &ForwardOptions::eval(),
    );
    let (a, b, c) = (
        values(a.reshape([8])).1,
        values(b.reshape([8])).1,
        values(c.reshape([8])).1,
    );
    for i in 0..8 {
        assert!((a[i] - b[i]).abs() < 1e-5, "{a:?} vs {b:?}");
        assert!((a[i] - c[i]).abs() < 1e-4, "{a:?} vs {c:?}");
    }
}

fn run_bench(device: &Device, seed: u64) -> BenchRun {
    let settings = BenchSettings {
        batch: 2,
        steps: 3,
        warmup: 1,
        runs: 1,
        seed,
        ..BenchSettings::default()
    };
    let mut run = futures_lite::future::block_on(BenchRun::new(
        config(),
        settings,
        &device.clone().autodiff(),
        None,
    ))
    .unwrap();
    while !run.train_done() {
        futures_lite::future::block_on(run.train_step()).unwrap();
    }
    while !run.inference_done() {
        futures_lite::future::block_on(run.inference_run()).unwrap();
    }
    run
}

#[test]
fn seeded_init_and_data_depend_only_on_the_seed() {
    let device = Device::flex();
    // The backend's own generator is seeded differently each time: the init must not care.
    device.seed(1);
    let a = backbone_values(&seeded_backbone(&config(), 5, &device).unwrap());
    device.seed(2);
    let b = backbone_values(&seeded_backbone(&config(), 5, &device).unwrap());
    let c = backbone_values(&seeded_backbone(&config(), 6, &device).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    let lambda = a.iter().find(|(k, _)| k.ends_with("lambda1")).unwrap();
    assert!(lambda.1.iter().all(|&v| v == 0.1));
    assert_eq!(
        synthetic_batch(&config(), 2, 5),
        synthetic_batch(&config(), 2, 5)
    );
    assert_ne!(
        synthetic_batch(&config(), 2, 5),
        synthetic_batch(&config(), 2, 6)
    );
}

#[test]
fn bench_reports_compare_step_by_step() {
    let device = Device::flex();
    let host = nepa::bench::HostInfo {
        tool: "test".into(),
        backend: "flex".into(),
        ..Default::default()
    };
    let a = run_bench(&device, 0).report(&host);
    let b = run_bench(&device, 0).report(&host);
    let c = run_bench(&device, 1).report(&host);
    // What is written is what is read back (up to an ulp: serde_json's default float
    // parsing is not always correctly rounded).
    let text = a.to_json_pretty();
    let sa = RunReport::from_json(&text).unwrap();
    let back = compare(&sa, &a);
    assert!(
        back.same_run && back.max_loss_diff.unwrap() < 1e-12,
        "{back:?}"
    );
    assert!(back.digest_max_abs_diff.unwrap() < 1e-12, "{back:?}");
    assert_eq!(
        (&sa.weights, &sa.notes, sa.params),
        (&a.weights, &a.notes, a.params)
    );
    assert_eq!(sa.loss_curve().len(), 4);
    assert!(
        sa.loss_curve()[3] < sa.loss_curve()[0],
        "{:?}",
        sa.loss_curve()
    );
    let same = compare(&sa, &b);
    assert!(same.same_run);
    assert_eq!(same.common_steps, 4);
    // Two runs from one seed: equal up to the rounding of rayon's work split (see above).
    assert!(same.max_loss_diff.unwrap() < 1e-4, "{same:?}");
    assert!((same.digest_cosine.unwrap() - 1.0).abs() < 1e-9);
    let other = compare(&sa, &c);
    assert!(!other.same_run);
    assert_eq!(other.mismatch, vec!["seeds 0 and 1".to_string()]);
    assert!(other.max_loss_diff.unwrap() > 1e-4);
    assert!(other.digest_cosine.unwrap() < 0.999);
    // Another config is flagged, not refused.
    let mut wider = b.clone();
    wider.model = wider.model.with_patch_size(8);
    assert_eq!(
        compare(&sa, &wider).mismatch,
        vec!["different model configs".to_string()]
    );

    let wrong = text.replace("nepa-run-report/1", "something-else/2");
    let err = RunReport::from_json(&wrong).unwrap_err();
    assert!(matches!(err, ReportError::Schema { .. }), "{err}");
    assert!(err.to_string().contains("something-else/2"), "{err}");
    assert!(matches!(
        RunReport::from_json("not json"),
        Err(ReportError::NotJson(_))
    ));
}

/// Any `nepa-run-report/1` file is read: the PyTorch bench's (other optional fields, nulls
/// where it measured nothing, fields this crate does not know) and a diverged run's (NaN
/// written as null). A report with a field of the wrong type, or missing a required one, is
/// a clear error, never a panic.
#[test]
fn run_reports_read_leniently_and_refuse_malformed_ones() {
    let torch = r#"{
        "schema": "nepa-run-report/1", "tool": "torch-reference", "created_unix": 1764164400,
        "backend": "torch-cpu", "adapter": "AMD EPYC", "threads": 2,
        "model": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 256, "image_size": [32, 32], "patch_size": 8,
                  "model_type": "vit_nepa", "pos_embed_rescale": null},
        "params": 100, "seed": 0, "batch": 8, "train": null,
        "inference": {"warmup_runs": 2, "runs": 1, "ms": [1.5], "ms_median": 1.5,
                      "images_per_sec": 5333.33, "first_run_ms": 9.0},
        "peak_memory_bytes": 123, "peak_memory_kind": "process-rss",
        "output_digest": {"probe": "p", "z_hat_sum": 0.0, "z_hat_abs_mean": 0.8,
                          "z_hat_first": [1, 2, 3, 4, 5, 6, 7, 8], "loss": -0.5},
        "weights": {"source": "file", "path": "w.safetensors", "sha256": "ab"},
        "versions": {"torch": "2.5.0", "cuda": null},
        "host": {"os": "Linux", "logical_cpus": 2, "loadavg_1m_at_start": null},
        "something_new": {"nested": [1, 2]}
    }"#;
    let r = RunReport::from_json(torch).unwrap();
    assert_eq!(r.tool, "torch-reference");
    assert!(r.train.is_none() && r.loss_curve().is_empty());
    assert_eq!(r.model.patch_size, 8);
    assert_eq!(r.digest_values().len(), 8);
    assert_eq!(r.inference_ms_median(), Some(1.5));
    let (config, _) = nepa::bench::compare_run();
    assert_eq!(r.model, config, "the same config, however it is spelt");

    let diverged = torch.replace(
        r#""train": null"#,
        r#""train": {"warmup_steps": 0, "steps": 2, "step_ms": [1, 2], "step_ms_median": 1.5,
                     "images_per_sec": null, "loss": [-0.1, null], "first_step_ms": 1}"#,
    );
    let r = RunReport::from_json(&diverged).unwrap();
    let curve = r.loss_curve();
    assert_eq!(curve[0], -0.1);
    assert!(curve[1].is_nan());
    assert_eq!(r.train_images_per_sec(), None);

    for (bad, why) in [
        (r#""seed": 0"#, r#""seed": -1"#),
        (r#""batch": 8"#, r#""batch": "eight""#),
        (r#""ms": [1.5]"#, r#""ms": 1.5"#),
        (r#""model": {"#, r#""model": {"image_size": "big", "#),
        (r#""source": "file""#, r#""source": "cloud""#),
        (r#""tool": "torch-reference","#, ""),
    ] {
        let text = torch.replace(bad, why);
        assert_ne!(text, torch);
        match RunReport::from_json(&text) {
            Err(ReportError::Invalid(msg)) => assert!(!msg.is_empty()),
            other => panic!("{why}: {other:?}"),
        }
    }
    for text in [
        "",
        "[]",
        "null",
        "{}",
        r#"{"schema": 1}"#,
        &"[".repeat(100_000),
    ] {
        assert!(RunReport::from_json(text).is_err(), "{text:.40}");
    }
}
