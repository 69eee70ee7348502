//! Helpers shared by the `nepa` binary's test files: the binary, tiny generated data sets
//! and a tiny model.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nepa::SplitMix64;
use nepa::image::{RgbImage, to_png};

pub fn nepa() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nepa"))
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run nepa");
    assert!(
        out.status.success(),
        "nepa failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Smooth random colour blobs: structured enough that next-patch prediction is learnable.
pub fn synthetic_image(rng: &mut SplitMix64, size: usize) -> RgbImage {
    let (cx, cy) = (rng.uniform(0.0, size as f64), rng.uniform(0.0, size as f64));
    let colour: [f64; 3] = [rng.next_f64(), rng.next_f64(), rng.next_f64()];
    let radius = rng.uniform(4.0, size as f64 / 2.0);
    let mut pixels = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
            let inside = (1.0 - d / radius).clamp(0.0, 1.0);
            for c in colour {
                pixels.push((255.0 * (0.2 + 0.8 * c * inside)) as u8);
            }
        }
    }
    RgbImage {
        width: size,
        height: size,
        pixels,
    }
}

/// A folder of `n` PNGs in two class sub-folders, plus the given extra files.
pub fn image_folder(dir: &Path, n: usize, extra: &[(&str, &[u8])]) -> PathBuf {
    let root = dir.join("images");
    let mut rng = SplitMix64::new(42);
    for i in 0..n {
        let class = root.join(if i % 2 == 0 { "a" } else { "b" });
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(
            class.join(format!("{i:03}.png")),
            to_png(&synthetic_image(&mut rng, 16)),
        )
        .unwrap();
    }
    for (name, bytes) in extra {
        std::fs::write(root.join(name), bytes).unwrap();
    }
    root
}

pub const TINY: [&str; 12] = [
    "--dim",
    "32",
    "--depth",
    "2",
    "--heads",
    "2",
    "--image-size",
    "16",
    "--patch-size",
    "4",
    "--device",
    "flex",
];

/// `nepa pretrain` on the tiny model for `steps` steps of 8 images at lr 3e-3, seed 7.
pub fn pretrain(data: &Path, out: &Path, steps: usize, extra: &[&str]) -> Command {
    let steps = steps.to_string();
    let flags = [
        "--batch-size",
        "8",
        "--steps",
        &steps,
        "--lr",
        "3e-3",
        "--seed",
        "7",
    ];
    pretrain_bare(data, out, &[&flags[..], extra].concat())
}

/// Loads a checkpoint's weights as the model crate would and checks every value is finite.
pub fn assert_finite_checkpoint(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (name, view) in file.tensors() {
        assert!(
            view.data()
                .chunks_exact(4)
                .all(|b| f32::from_le_bytes(b.try_into().unwrap()).is_finite()),
            "{}: tensor {name} is not finite",
            path.display()
        );
    }
    let config = nepa::checkpoint::config_from_metadata(&bytes)
        .unwrap()
        .unwrap();
    nepa::load_backbone(
        &bytes,
        &config,
        &burn::tensor::Device::flex(),
        nepa::LoadOptions::default(),
    )
    .unwrap();
}

/// `nepa pretrain` on the tiny model with only the given training flags.
pub fn pretrain_bare(data: &Path, out: &Path, flags: &[&str]) -> Command {
    let mut cmd = nepa();
    cmd.args(["pretrain", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(TINY)
        .args(flags);
    cmd
}

pub fn latest(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("latest.json")).unwrap()).unwrap()
}

pub fn metrics_steps(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl")).map_or(0, |s| s.lines().count())
}

/// Starts a long run and waits until it has logged `steps` steps.
pub fn spawn_until(cmd: &mut Command, run: &Path, steps: usize) -> Child {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while metrics_steps(run) < steps {
        assert!(start.elapsed() < Duration::from_secs(180), "no progress");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Sends `signal` (e.g. `-TERM`) to a run and waits for it to end cleanly.
pub fn stop_with(child: Child, signal: &str) -> Output {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
