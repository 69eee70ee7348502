//! `nepa bench`: times pretraining steps and inference and writes a run report
//! (`nepa-run-report/1`, docs/run-report.md), the schema the PyTorch bench and the browser
//! write too.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use futures_lite::future::block_on;
use nepa::LoadOptions;
use nepa::bench::{BenchRun, BenchSettings, HostDetails, HostInfo, compare_run};
use nepa::checkpoint::load_backbone;
use nepa::step_profile::StepPart;

use crate::ckpt::write_atomic;
use crate::compute::ComputeArgs;
use crate::device::{self, DeviceChoice};
use crate::run::ModelArgs;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Timed training steps (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps and runs.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed inference runs.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Start from these weights (safetensors, official keys) instead of a seeded init, e.g.
    /// the file `tests/reference/bench.py --save-init` wrote, to compare digests.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Write the report here (it is printed either way).
    #[arg(long, alias = "report")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Also time the parts of one training step (forward, loss, backward, clipping and
    /// optimizer, read-back), each ended by a device sync, and print the split.
    #[arg(long)]
    pub profile: bool,
    /// Run exactly what the web app's Compare page runs (its model, batch, seed and steps;
    /// the size options above are ignored), so the two loss curves can be overlaid.
    #[arg(long)]
    pub compare_run: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let selected = device::select(args.device)?;
    let device = args.compute.training_device(&selected.device)?;
    let (config, mut settings) = if args.compare_run {
        compare_run()
    } else {
        (
            args.model.config()?.with_pos_embed_rescale(None),
            BenchSettings {
                batch: args.batch,
                steps: args.steps,
                warmup: args.warmup,
                runs: args.runs,
                seed: args.seed,
                ..BenchSettings::default()
            },
        )
    };
    settings.precision = args.compute.precision();
    let weights = match &args.weights {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let (model, _) = load_backbone(&bytes, &config, &device, LoadOptions::default())?;
            Some((model, path.display().to_string()))
        }
        None => None,
    };
    let mut bench = block_on(BenchRun::new(config, settings, &device, weights))?;
    while !bench.train_done() {
        let r = block_on(bench.train_step())?;
        eprintln!("train step {}: {:.1} ms, loss {:.5}", r.step, r.ms, r.loss);
    }
    while !bench.inference_done() {
        block_on(bench.inference_run())?;
    }
    if args.profile {
        print_split(&block_on(bench.profile_step())?);
    }
    let (peak_memory_bytes, peak_memory_kind) = peak_memory(&selected.device);

    let is_cpu = selected.backend == "flex" || selected.adapter.contains("llvmpipe");
    let threads = std::thread::available_parallelism().map(|n| n.get()).ok();
    let host = HostInfo {
        tool: "nepa bench".into(),
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        backend: selected.backend.to_string(),
        adapter: if selected.backend == "flex" {
            format!("{} ({})", selected.adapter, cpu_model_name())
        } else {
            selected.adapter.clone()
        },
        threads: if is_cpu { threads } else { None },
        peak_memory_bytes,
        peak_memory_kind: Some(peak_memory_kind.into()),
        host: HostDetails {
            os: Some(std::env::consts::OS.into()),
            logical_cpus: threads,
            ..HostDetails::default()
        },
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let text = bench.report(&host).to_json_pretty();
    if let Some(path) = &args.out {
        write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    println!("{text}");
    Ok(())
}

/// Prints the parts of a step and their share, largest first.
fn print_split(parts: &[StepPart]) {
    let total: f64 = parts.iter().map(|p| p.ms).sum();
    let mut sorted = parts.to_vec();
    sorted.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    eprintln!("one training step, part by part (each ended by a device sync): {total:.1} ms");
    for part in &sorted {
        eprintln!(
            "  {:<26} {:>9.2} ms {:>5.1} %",
            part.name,
            part.ms,
            100.0 * part.ms / total.max(f64::MIN_POSITIVE)
        );
    }
}

/// The device's memory pool where the backend reports it (wgpu, CUDA: the pool keeps the
/// pages it reserved at the step's peak), else the process's peak resident memory (Flex).
fn peak_memory(device: &burn::tensor::Device) -> (Option<u64>, &'static str) {
    match device.memory_pool_usage() {
        Some(usage) if usage.bytes_reserved > 0 => {
            (Some(usage.bytes_reserved), "burn-memory-pool-reserved")
        }
        _ => (peak_rss_bytes(), "process-rss"),
    }
}

fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Peak resident set size of this process (Linux VmHWM), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
