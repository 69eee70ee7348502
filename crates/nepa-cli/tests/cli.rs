//! End-to-end tests of the `nepa` binary on tiny generated data (Flex, seconds each).

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use nepa::image::{RgbImage, to_png};
use nepa::{LoadOptions, SplitMix64};

mod common;
use common::*;

/// Uniform noise: nothing to predict, so only a collapse can lower the loss much.
fn noise_folder(dir: &Path, n: usize) -> PathBuf {
    let root = dir.join("noise");
    std::fs::create_dir_all(&root).unwrap();
    let mut rng = SplitMix64::new(9);
    for i in 0..n {
        let pixels = (0..16 * 16 * 3).map(|_| rng.below(256) as u8).collect();
        let img = RgbImage {
            width: 16,
            height: 16,
            pixels,
        };
        std::fs::write(root.join(format!("{i:03}.png")), to_png(&img)).unwrap();
    }
    root
}

/// `(step, value)` of one field of a run's metrics.jsonl.
fn metrics(dir: &Path, field: &str) -> Vec<(usize, f64)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["step"].as_u64().unwrap() as usize,
                v[field].as_f64().unwrap(),
            )
        })
        .collect()
}

fn metrics_losses(dir: &Path) -> Vec<(usize, f64)> {
    metrics(dir, "loss")
}

/// `nepa pretrain --resume FROM` into `out` on Flex, with `extra` flags.
fn resume_cmd(data: &Path, out: &Path, from: &Path, extra: &[&str]) -> Command {
    let mut cmd = nepa();
    cmd.args(["pretrain", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--resume")
        .arg(from)
        .args(["--device", "flex"])
        .args(extra);
    cmd
}

#[test]
fn resuming_continues_the_same_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 24, &[]);
    let full = tmp.path().join("full");
    run_ok(&mut pretrain(&data, &full, 8, &["--save-every", "4"]));
    let full_losses = metrics_losses(&full);
    assert_eq!(full_losses.len(), 8);

    let resumed = tmp.path().join("resumed");
    let from = full.join("step-0000004.safetensors");
    let out = run_ok(&mut resume_cmd(&data, &resumed, &from, &[]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("resuming"));
    let resumed_losses = metrics_losses(&resumed);
    assert_eq!(
        resumed_losses.iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![5, 6, 7, 8]
    );
    for ((step, a), (_, b)) in full_losses[4..].iter().zip(&resumed_losses) {
        assert!(
            (a - b).abs() <= 1e-4,
            "step {step}: {a} vs {b} after resume"
        );
    }
    // The checkpoint is a plain official-key safetensors file the model crate loads.
    let bytes = std::fs::read(resumed.join("step-0000008.safetensors")).unwrap();
    let config = nepa::checkpoint::config_from_metadata(&bytes)
        .unwrap()
        .unwrap();
    let (_, report) =
        nepa::load_backbone(&bytes, &config, &Device::flex(), LoadOptions::default()).unwrap();
    assert!(report.prefixed && report.unused_keys.is_empty());
}

/// `--resume` with `--steps` or `--epochs` gives the run a new length (its total from the
/// start): it trains on to that total, with the warmup and cosine schedule recomputed over it.
/// A run already at its length is refused with a message, not resumed to train nothing.
#[test]
fn resume_with_a_new_length_extends_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    // 24 images in batches of 8: 3 steps an epoch.
    let data = image_folder(tmp.path(), 24, &[]);
    let run = tmp.path().join("run");
    run_ok(&mut pretrain(&data, &run, 4, &["--warmup-ratio", "0"]));
    let resume = |extra: &[&str]| resume_cmd(&data, &run, &run, extra);
    let refused = |extra: &[&str]| {
        let out = resume(extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "expected a clean error:\n{stderr}"
        );
        stderr
    };

    // At its length, and asked for less than it has done: refused, nothing written.
    let stderr = refused(&[]);
    assert!(
        stderr.contains("is at step 4 and its length is 4 steps: nothing left to train")
            && stderr.contains("--steps or --epochs"),
        "{stderr}"
    );
    let stderr = refused(&["--steps", "3"]);
    assert!(
        stderr.contains("is at step 4 and its length is 3 steps"),
        "{stderr}"
    );
    assert_eq!(metrics_steps(&run), 4);

    // Extended to 8 steps: steps 5 to 8 on the cosine over 8 steps (peak 3e-3, no warmup),
    // where the 4-step plan had already decayed to 0.
    let out = run_ok(&mut resume(&["--steps", "8"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("length is now 8 steps (was 4)"), "{stdout}");
    let lrs = metrics(&run, "lr");
    assert_eq!(
        lrs.iter().map(|l| l.0).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    for &(step, lr) in &lrs[4..] {
        let progress = (step - 1) as f64 / 8.0;
        let expected = 3e-3 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        assert!(
            (lr - expected).abs() <= 1e-9,
            "step {step}: lr {lr:e}, the schedule over 8 steps gives {expected:e}"
        );
    }
    assert_eq!(latest(&run)["step"], 8);
    assert_eq!(latest(&run)["total_steps"], 8);
    assert_finite_checkpoint(&run.join("step-0000008.safetensors"));

    // --epochs: 4 passes of 3 steps, 12 in all; the new length is kept for the next resume.
    run_ok(&mut resume(&["--epochs", "4"]));
    assert_eq!(metrics_steps(&run), 12);
    assert_eq!(latest(&run)["total_steps"], 12);
    let stderr = refused(&[]);
    assert!(
        stderr.contains("is at step 12 and its length is 12 steps"),
        "{stderr}"
    );
}

#[test]
fn corrupt_images_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(
        tmp.path(),
        16,
        &[
            ("broken.png", b"\x89PNG\r\n\x1a\n not really"),
            ("notes.txt", b"hello"),
        ],
    );
    let out = run_ok(&mut pretrain(&data, &tmp.path().join("run"), 2, &[]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("16 images (2 unreadable skipped)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("skipped") && stderr.contains("broken.png"),
        "{stderr}"
    );
}

#[test]
fn bad_paths_and_empty_data_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = pretrain(&tmp.path().join("nope"), &tmp.path().join("run"), 2, &[])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("junk.jpg"), b"junk").unwrap();
    let out = pretrain(&empty, &tmp.path().join("run"), 2, &[])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no readable images"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn interrupt_saves_a_checkpoint_that_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 16, &[]);
    let run = tmp.path().join("run");
    // Wait for a few steps to be logged, then send SIGINT as Ctrl-C would.
    let child = spawn_until(
        &mut pretrain(&data, &run, 100_000, &["--save-every", "0"]),
        &run,
        3,
    );
    stop_with(child, "-INT");
    let sidecar = latest(&run);
    assert!(sidecar["step"].as_u64().unwrap() >= 3);
    assert_finite_checkpoint(&run.join(sidecar["model_file"].as_str().unwrap()));
}

#[test]
fn without_stop_grad_the_loss_collapses_toward_minus_one() {
    // The paper's ablation: with the target's gradient flowing, the embedding collapses to a
    // single vector and the loss goes to −1; with stop-grad it stays well above. On noise
    // images the next patch is unpredictable, so a low loss can only come from collapse.
    let tmp = tempfile::tempdir().unwrap();
    let data = noise_folder(tmp.path(), 32);
    let with = tmp.path().join("with");
    let without = tmp.path().join("without");
    let no_warmup = ["--warmup-ratio", "0"];
    run_ok(&mut pretrain(&data, &with, 100, &no_warmup));
    run_ok(&mut pretrain(
        &data,
        &without,
        100,
        &[&no_warmup[..], &["--no-stop-grad"]].concat(),
    ));
    let last = |dir: &Path, field: &str| metrics(dir, field).last().unwrap().1;
    let (loss_with, loss_without) = (last(&with, "loss"), last(&without, "loss"));
    let similarity_with = last(&with, "embedding_similarity");
    let similarity_without = last(&without, "embedding_similarity");
    let summary = format!(
        "stop-grad: loss {loss_with:.4}, similarity {similarity_with:.4}; \
         no stop-grad: loss {loss_without:.4}, similarity {similarity_without:.4}"
    );
    assert!(loss_without < -0.99, "{summary}");
    // Collapse: all patch embeddings point the same way.
    assert!(similarity_without > 0.99, "{summary}");
    assert!(loss_with > loss_without + 0.1, "{summary}");
    assert!(similarity_with < 0.9, "{summary}");
}

#[test]
fn finetune_eval_and_visualize_accept_the_pretraining_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 24, &[]);
    let pre = tmp.path().join("pre");
    run_ok(&mut pretrain(&data, &pre, 3, &[]));

    let ft = tmp.path().join("ft");
    let mut cmd = nepa();
    cmd.args(["finetune", "--data"])
        .arg(&data)
        .arg("--init")
        .arg(&pre)
        .arg("--out")
        .arg(&ft)
        .args([
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--val-fraction",
            "0.25",
            "--device",
            "flex",
        ]);
    let out = run_ok(&mut cmd);
    assert!(String::from_utf8_lossy(&out.stdout).contains("validation accuracy"));

    let mut cmd = nepa();
    cmd.args(["eval", "--checkpoint"])
        .arg(ft.join("classifier.safetensors"))
        .arg("--data")
        .arg(&data)
        .args(["--device", "flex"]);
    let out = run_ok(&mut cmd);
    assert!(String::from_utf8_lossy(&out.stdout).contains("top-1 accuracy"));

    // A pretraining checkpoint has no head: eval reports its NEPA loss and a k-NN accuracy.
    let mut cmd = nepa();
    cmd.args(["eval", "--checkpoint"])
        .arg(&pre)
        .arg("--data")
        .arg(&data)
        .args(["--device", "flex"]);
    let out = run_ok(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("NEPA loss") && stdout.contains("k-NN"),
        "{stdout}"
    );

    let viz = tmp.path().join("viz");
    let mut cmd = nepa();
    cmd.args(["visualize", "--checkpoint"])
        .arg(pre.join("latest.json"))
        .arg("--image")
        .arg(data.join("a/000.png"))
        .arg("--out")
        .arg(&viz)
        .args(["--row", "1", "--col", "2", "--device", "flex"]);
    run_ok(&mut cmd);
    for panel in [
        "query.png",
        "attention.png",
        "similarity.png",
        "predictability.png",
        "pca_z.png",
        "pca_z_hat.png",
    ] {
        let bytes = std::fs::read(viz.join(panel)).unwrap();
        let img = nepa::image::decode(&bytes).unwrap();
        // Real content: the pixels vary.
        assert!(
            img.pixels.iter().any(|&p| p != img.pixels[0]),
            "{panel} is flat"
        );
    }
}

/// `nepa finetune --mode full|head|lora` runs the crate's driver with the official recipe
/// (Mixup/CutMix, RandAugment, erasing, EMA, affine QK-norm), and `--drop-path` reaches a
/// model loaded with `--init`.
#[test]
fn finetune_runs_every_mode_with_the_official_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 24, &[]);
    let pre = tmp.path().join("pre");
    run_ok(&mut pretrain(&data, &pre, 2, &[]));
    for mode in ["full", "head", "lora"] {
        let out_dir = tmp.path().join(format!("ft-{mode}"));
        let mut cmd = nepa();
        cmd.args(["finetune", "--data"])
            .arg(&data)
            .arg("--init")
            .arg(&pre)
            .arg("--out")
            .arg(&out_dir)
            .args([
                "--recipe",
                "official",
                "--mode",
                mode,
                "--steps",
                "4",
                "--batch-size",
                "8",
                "--val-fraction",
                "0.25",
                "--drop-path",
                "0.2",
                "--device",
                "flex",
            ]);
        run_ok(&mut cmd);
        let metrics = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
        let losses: Vec<f64> = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|r| r.get("loss").and_then(|v| v.as_f64()))
            .collect();
        assert_eq!(losses.len(), 4, "{mode}: {metrics}");
        assert!(
            losses.iter().all(|l| l.is_finite() && *l > 0.0),
            "{mode}: {losses:?}"
        );
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out_dir.join("latest.json")).unwrap()).unwrap();
        let settings = &sidecar["settings"];
        assert_eq!(settings["drop_path"], 0.2, "{mode}");
        assert_eq!(settings["mixup"], 0.8, "{mode}");
        assert_eq!(sidecar["config"]["drop_path_prob"], 0.2, "{mode}");
        assert_eq!(sidecar["config"]["qk_norm_affine"], true, "{mode}");
        // The EMA is kept in full and head-only mode; LoRA has none.
        assert_eq!(
            out_dir.join("classifier-ema.safetensors").exists(),
            mode != "lora",
            "{mode}"
        );
        let mut cmd = nepa();
        cmd.args(["eval", "--checkpoint"])
            .arg(out_dir.join("classifier.safetensors"))
            .arg("--data")
            .arg(&data)
            .args(["--device", "flex"]);
        let out = run_ok(&mut cmd);
        assert!(String::from_utf8_lossy(&out.stdout).contains("top-1 accuracy"));
    }
}

#[test]
fn bench_writes_a_run_report() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.json");
    let mut cmd = nepa();
    cmd.arg("bench")
        .args(TINY)
        .args([
            "--batch", "4", "--steps", "3", "--runs", "3", "--warmup", "1", "--out",
        ])
        .arg(&report);
    run_ok(&mut cmd);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["schema"], "nepa-run-report/1");
    assert_eq!(v["backend"], "flex");
    let losses = v["train"]["loss"].as_array().unwrap();
    assert_eq!(losses.len(), 3);
    assert!(losses[2].as_f64().unwrap() < losses[0].as_f64().unwrap());
    assert!(v["inference"]["images_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(
        v["output_digest"]["z_hat_first"].as_array().unwrap().len(),
        8
    );
}

/// The native report the e2e test drops into the web app's Compare page
/// (`tests/fixtures/bench-native-flex.json`) must be what `nepa bench --compare-run` gives
/// today; if the model or the benchmark changes, regenerate it with
/// `nepa bench --compare-run --device flex --out tests/fixtures/bench-native-flex.json`.
#[test]
fn committed_compare_run_report_matches_a_fresh_native_run() {
    use nepa::bench::{RunReport, compare};
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("native.json");
    let mut cmd = nepa();
    cmd.args(["bench", "--compare-run", "--device", "flex", "--out"])
        .arg(&report);
    run_ok(&mut cmd);
    let fresh = RunReport::from_json(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let fixture_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bench-native-flex.json");
    let fixture = RunReport::from_json(&std::fs::read_to_string(fixture_path).unwrap()).unwrap();
    let c = compare(&fresh, &fixture);
    assert!(c.same_run, "{:?}", c.mismatch);
    assert_eq!(c.common_steps, 22);
    // Up to float summation order: Flex splits its reductions over rayon's threads as they
    // come free, so two runs can round apart (1.2e-7 seen here). A NaN compares as infinite.
    assert!(c.max_loss_diff.unwrap() <= 1e-5, "{c:?}");
    assert!(c.digest_max_abs_diff.unwrap() < 1e-5, "{c:?}");
}

/// A classifier file that names its classes (as the web app writes it) is evaluated only on
/// data whose sorted class folders match; otherwise `nepa eval` says which order it expects.
#[test]
fn eval_checks_the_class_names_a_browser_file_carries() {
    use nepa::checkpoint::{classifier_tensors, classifier_to_safetensors_async};
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 8, &[]);
    let config = nepa::NepaConfig::new(32, 2, 2)
        .with_image_size(16, 16)
        .with_patch_size(4)
        .with_causal(false);
    let model = nepa::NepaClassifier::new(&config, 2, &Device::flex()).unwrap();
    let write = |classes: &[&str], name: &str| {
        let classes: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
        let bytes = futures_lite::future::block_on(classifier_to_safetensors_async(
            &classifier_tensors(&model),
            &config,
            &classes,
        ))
        .unwrap();
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let eval = |file: &Path| {
        let mut cmd = nepa();
        cmd.args(["eval", "--device", "flex", "--checkpoint"])
            .arg(file)
            .arg("--data")
            .arg(&data);
        cmd.output().unwrap()
    };
    let good = eval(&write(&["a", "b"], "good.safetensors"));
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("top-1 accuracy"));
    let swapped = eval(&write(&["b", "a"], "swapped.safetensors"));
    assert!(!swapped.status.success());
    let err = String::from_utf8_lossy(&swapped.stderr);
    assert!(
        err.contains(r#"the checkpoint's classes are ["b", "a"]"#),
        "{err}"
    );
}

#[test]
fn probe_tables_checkpoints_random_init_and_pixels() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 8, &[]);
    let run = tmp.path().join("run");
    run_ok(&mut pretrain(&data, &run, 2, &[]));
    // A labelled set whose classes differ in colour: red and blue squares with a little noise,
    // so the raw-pixel row must get every image right.
    let labelled = tmp.path().join("labelled");
    let mut rng = SplitMix64::new(3);
    for i in 0..8 {
        let (class, rgb) = if i % 2 == 0 {
            ("red", [220, 30, 30])
        } else {
            ("blue", [30, 30, 220])
        };
        std::fs::create_dir_all(labelled.join(class)).unwrap();
        let pixels = (0..16 * 16 * 3)
            .map(|k| (rgb[k % 3] as i64 + rng.below(21) as i64 - 10) as u8)
            .collect();
        let png = to_png(&RgbImage::new(16, 16, pixels));
        std::fs::write(labelled.join(class).join(format!("{i}.png")), png).unwrap();
    }
    let json = tmp.path().join("probe.json");
    let out = run_ok(
        nepa()
            .args(["probe", "--data"])
            .arg(&labelled)
            .arg("--checkpoint")
            .arg(format!("tiny={}", run.display()))
            .args(["--random-seeds", "2", "--device", "flex", "--json"])
            .arg(&json),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| features | top-1 | NEPA loss |"),
        "{stdout}"
    );
    assert!(stdout.contains("leave-one-out) on 8 images"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["features"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "tiny",
            "random init, seed 0",
            "random init, seed 1",
            "raw pixels, 16×16"
        ]
    );
    for r in &rows[..3] {
        let accuracy = r["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{r}");
        assert!(r["nepa_loss"].as_f64().is_some(), "{r}");
        // The tiny model's width (TINY: --dim 32).
        assert_eq!(r["dim"], 32, "{r}");
    }
    // Random init is not the checkpoint, and each seed draws its own weights.
    let losses: Vec<f64> = rows[..3]
        .iter()
        .map(|r| r["nepa_loss"].as_f64().unwrap())
        .collect();
    assert!(
        losses[1] != losses[0] && losses[2] != losses[0] && losses[1] != losses[2],
        "{losses:?}"
    );
    assert_eq!(rows[3]["accuracy"].as_f64(), Some(1.0), "{}", rows[3]);
    // Pixels at the model's input size: 3 × 16 × 16.
    assert_eq!(rows[3]["dim"], 3 * 16 * 16, "{}", rows[3]);
    assert!(rows[3]["nepa_loss"].is_null());
    assert_eq!(report["per_class"], serde_json::json!([4, 4]));

    // An unlabelled folder is a clear error.
    let out = nepa()
        .args(["probe", "--data"])
        .arg(noise_folder(tmp.path(), 4))
        .arg("--checkpoint")
        .arg(&run)
        .args(["--device", "flex"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a labelled set"), "{stderr}");
}
