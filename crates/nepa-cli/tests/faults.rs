//! Faults and hostile input on the `nepa` binary: a diverging run, signals, a reused output
//! folder, damaged sidecars, weights copied without their optimizer state and arguments no
//! run can use. Each checks the message and that
//! nothing already written was lost.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::*;

/// A failed run: exit status 1 (an error, not a panic's 101) and its stderr.
fn run_err(cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("run nepa");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a clean error:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn a_diverging_run_stops_and_keeps_only_finite_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 16, &[]);
    let run = tmp.path().join("run");
    let stderr = run_err(&mut pretrain_bare(
        &data,
        &run,
        &[
            "--batch-size",
            "8",
            "--steps",
            "40",
            "--lr",
            "1e30",
            "--warmup-ratio",
            "0",
            "--save-every",
            "1",
        ],
    ));
    assert!(
        stderr.contains("training diverged") && stderr.contains("non-finite steps in a row"),
        "{stderr}"
    );
    let checkpoints: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("step-") && name.ends_with(".safetensors") && !name.contains("optim")
        })
        .collect();
    assert!(!checkpoints.is_empty(), "{stderr}");
    for path in &checkpoints {
        assert_finite_checkpoint(path);
    }
    let latest = latest(&run);
    let named = run.join(latest["model_file"].as_str().unwrap());
    assert!(checkpoints.contains(&named));
    // The skipped steps are counted in the metrics.
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert!(last["skipped_steps"].as_u64().unwrap() >= 1, "{last}");
}

#[test]
fn sigterm_leaves_a_resumable_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 16, &[]);
    let run = tmp.path().join("run");
    let child = spawn_until(
        &mut pretrain(&data, &run, 100_000, &["--save-every", "0"]),
        &run,
        3,
    );
    stop_with(child, "-TERM");
    let first = latest(&run)["step"].as_u64().unwrap() as usize;
    assert!(first >= 3);
    assert_finite_checkpoint(&run.join(latest(&run)["model_file"].as_str().unwrap()));

    // Resume in the same folder, let it advance, stop it the same way.
    let mut resume = nepa();
    resume
        .args(["pretrain", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .arg("--resume")
        .arg(&run)
        .args(["--device", "flex", "--save-every", "0"]);
    let out = stop_with(spawn_until(&mut resume, &run, first + 2), "-TERM");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("at step {first}")), "{stdout}");
    assert!(latest(&run)["step"].as_u64().unwrap() as usize >= first + 2);
}

#[test]
fn a_fresh_run_refuses_a_folder_holding_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 16, &[]);
    let run = tmp.path().join("run");
    run_ok(&mut pretrain(&data, &run, 2, &[]));
    let weights = run.join("step-0000002.safetensors");
    let before = std::fs::read(&weights).unwrap();

    let stderr = run_err(&mut pretrain_bare(
        &data,
        &run,
        &["--batch-size", "8", "--steps", "1"],
    ));
    assert!(
        stderr.contains("already holds a run") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        before,
        "the old run was touched"
    );
    assert_eq!(metrics_steps(&run), 2);

    run_ok(&mut pretrain(&data, &run, 1, &["--overwrite"]));
    assert_eq!(metrics_steps(&run), 1, "the old metrics were appended to");
    assert!(!weights.exists());
}

/// Rewrites the run state a checkpoint carries in its metadata.
fn edit_sidecar(weights: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let bytes = std::fs::read(weights).unwrap();
    let json = nepa::checkpoint::metadata_entry(&bytes, "nepa_sidecar")
        .unwrap()
        .expect("the checkpoint carries its sidecar");
    let mut sidecar: serde_json::Value = serde_json::from_str(&json).unwrap();
    edit(&mut sidecar);
    let bytes =
        nepa::checkpoint::with_metadata(&bytes, &[("nepa_sidecar", sidecar.to_string())]).unwrap();
    std::fs::write(weights, bytes).unwrap();
}

/// `nepa pretrain --resume FROM` on `data` into `out`, on Flex.
fn resume_run(data: &Path, out: &Path, from: &Path) -> Command {
    let mut cmd = nepa();
    cmd.args(["pretrain", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--resume")
        .arg(from)
        .args(["--device", "flex"]);
    cmd
}

#[test]
fn damaged_sidecars_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 16, &[]);
    let run = tmp.path().join("run");
    run_ok(&mut pretrain(&data, &run, 2, &[]));
    let weights = run.join("step-0000002.safetensors");
    let resume = |from: &Path| resume_run(&data, &tmp.path().join("resumed"), from);

    // A sidecar naming a file outside its folder (a device that never ends, here).
    let mut sidecar = latest(&run);
    sidecar["model_file"] = "/dev/zero".into();
    let evil = run.join("evil.json");
    std::fs::write(&evil, sidecar.to_string()).unwrap();
    let stderr = run_err(&mut resume(&evil));
    assert!(stderr.contains("is not a file name"), "{stderr}");

    // Batch size 0 in the stored settings.
    edit_sidecar(&weights, |s| s["settings"]["batch_size"] = 0.into());
    let stderr = run_err(&mut resume(&weights));
    assert!(stderr.contains("batch size must be at least 1"), "{stderr}");

    // An optimizer state from another model (D 16 instead of 32): refused before step 1.
    let other = tmp.path().join("other");
    let narrower: Vec<&str> = TINY
        .iter()
        .map(|a| if *a == "32" { "16" } else { a })
        .collect();
    run_ok(
        nepa()
            .args(["pretrain", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&other)
            .args(&narrower)
            .args(["--batch-size", "8", "--steps", "2"]),
    );
    edit_sidecar(&weights, |s| s["settings"]["batch_size"] = 8.into());
    let optim = run.join("step-0000002.optim.safetensors");
    let kept = std::fs::read(&optim).unwrap();
    std::fs::copy(other.join("step-0000002.optim.safetensors"), &optim).unwrap();
    let stderr = run_err(&mut resume(&weights));
    assert!(
        stderr.contains("does not fit its weights") && stderr.contains("exp_avg."),
        "{stderr}"
    );
    std::fs::write(&optim, kept).unwrap();

    // A config no model can have.
    edit_sidecar(&weights, |s| {
        s["config"]["intermediate_size"] = (1u64 << 40).into()
    });
    let stderr = run_err(&mut resume(&weights));
    assert!(stderr.contains("intermediate_size"), "{stderr}");
}

/// The weights copied alone (as the bundled demo model is): they load for inference, and
/// resuming from them names the optimizer state that is missing instead of reading nothing.
#[test]
fn weights_copied_without_their_optimizer_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 16, &[]);
    let run = tmp.path().join("run");
    run_ok(&mut pretrain(&data, &run, 2, &[]));
    let alone = tmp.path().join("elsewhere").join("copied.safetensors");
    std::fs::create_dir_all(alone.parent().unwrap()).unwrap();
    std::fs::copy(run.join("step-0000002.safetensors"), &alone).unwrap();

    let probe = run_ok(
        nepa()
            .args(["probe", "--data"])
            .arg(&data)
            .arg("--checkpoint")
            .arg(format!("copied={}", alone.display()))
            .args(["--random-seeds", "0", "--device", "flex"]),
    );
    let probe = String::from_utf8_lossy(&probe.stdout);
    assert!(probe.contains("| copied |"), "{probe}");

    let mut resume = resume_run(&data, &tmp.path().join("resumed"), &alone);
    let stderr = run_err(resume.args(["--steps", "4"]));
    assert!(
        stderr.contains("reading the optimizer state of")
            && stderr.contains("step-0000002.optim.safetensors"),
        "{stderr}"
    );
}

#[test]
fn arguments_no_run_can_use_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 16, &[]);
    let stderr = run_err(&mut pretrain_bare(
        &data,
        &tmp.path().join("a"),
        &["--batch-size", "0"],
    ));
    assert!(stderr.contains("batch size must be at least 1"), "{stderr}");

    let finetune = |extra: &[&str]| {
        let mut cmd = nepa();
        cmd.args(["finetune", "--from-scratch", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(tmp.path().join("ft"))
            .args(TINY)
            .args(extra);
        cmd
    };
    let stderr = run_err(&mut finetune(&["--val-fraction", "1"]));
    assert!(
        stderr.contains("--val-fraction must be in [0, 1)"),
        "{stderr}"
    );
    let stderr = run_err(&mut finetune(&["--per-class", "0"]));
    assert!(
        stderr.contains("--per-class must be at least 1"),
        "{stderr}"
    );
    let stderr = run_err(&mut finetune(&["--batch-size", "0"]));
    assert!(stderr.contains("--batch-size"), "{stderr}");
}

#[test]
fn auto_device_uses_flex_without_a_real_gpu_and_mesa_stays_quiet() {
    // On a machine without a GPU (CI: Mesa's lavapipe is installed, a Cpu-type adapter),
    // `auto` must run on Flex, say why on its first line, and Mesa must print nothing.
    let out = nepa()
        .args([
            "smoke", "--device", "auto", "--preset", "tiny", "--batch", "1",
        ])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    if first.contains("a GPU through wgpu") {
        // "device: wgpu — NAME (BACKEND, DEVICE_TYPE) — a GPU through wgpu": a real GPU only.
        let adapter = first.split(" — ").nth(1).unwrap_or_default();
        assert!(
            !is_software(adapter),
            "`auto` took a software adapter for a GPU: {first}"
        );
    } else {
        assert!(first.starts_with("device: flex"), "{stderr}");
    }
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}

/// Whether the adapter a first line names renders on the CPU: wgpu's `Cpu` device type, or
/// the name of Mesa's llvmpipe/lavapipe, SwiftShader or WARP. Written out here rather than
/// taken from the binary, so that the binary's own rule is what this test checks.
fn is_software(adapter: &str) -> bool {
    let lower = adapter.to_lowercase();
    adapter.ends_with(", Cpu)")
        || ["llvmpipe", "lavapipe", "swiftshader", "basic render driver"]
            .iter()
            .any(|name| lower.contains(name))
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == "warp")
}

#[test]
fn the_software_adapter_rule_of_this_file_knows_the_names() {
    assert!(is_software(
        "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)"
    ));
    assert!(is_software(
        "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Other)"
    ));
    assert!(is_software("SwiftShader Device (Subzero) (Vulkan, Other)"));
    assert!(is_software("Microsoft Basic Render Driver (Dx12, Other)"));
    assert!(!is_software("NVIDIA H100 80GB HBM3 (Vulkan, DiscreteGpu)"));
}
