//! `nepa bench`: times pretraining steps and inference and writes a run report
//! (`nepa-run-report/1`, docs/run-report.md), the schema the PyTorch bench and the browser
//! write too.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use clap::Args;
use nepa::checkpoint::load_backbone;
use nepa::train::{AdamW, AdamWConfig, pretrain_step};
use nepa::{ForwardOptions, LoadOptions, LossOptions, NepaConfig, NepaModel, prediction_loss};
use serde_json::{Value, json};

use crate::ckpt::write_atomic;
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
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The closed-form probe image of the report schema: pixel `i` (CHW, row-major) is
/// `((37·i) mod 101) / 50 − 1`.
pub fn probe_image(config: &NepaConfig, device: &Device) -> Tensor<4> {
    let [h, w] = config.image_size;
    let c = config.num_channels;
    let values: Vec<f32> = (0..c * h * w)
        .map(|i| (((37 * i) % 101) as f64 / 50.0 - 1.0) as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, [1, c, h, w]), device)
}

/// ẑ statistics on the probe image (eval mode), for comparing runs with the same weights.
pub fn output_digest(model: &NepaModel, config: &NepaConfig, device: &Device) -> Result<Value> {
    let out = model.forward(probe_image(config, device), &ForwardOptions::eval());
    let loss: f32 = prediction_loss(
        out.last_hidden_state.clone(),
        out.input_embedding,
        LossOptions::default(),
    )
    .into_scalar();
    let [_, t, d] = out.last_hidden_state.dims();
    let z_hat = out
        .last_hidden_state
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let sum: f64 = z_hat.iter().map(|&v| v as f64).sum();
    let abs_mean = z_hat.iter().map(|v| v.abs() as f64).sum::<f64>() / z_hat.len() as f64;
    Ok(json!({
        "probe": "closed-form probe: pixel i (CHW) = ((37 i) mod 101) / 50 - 1",
        "z_hat_sum": sum,
        "z_hat_abs_mean": abs_mean,
        "z_hat_first": &z_hat[..8.min(d)],
        "z_hat_last": &z_hat[(t - 1) * d..(t - 1) * d + 8.min(d)],
        "loss": loss,
    }))
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

pub fn run(args: BenchArgs) -> Result<()> {
    let selected = device::select(args.device)?;
    let device = selected.device.clone().autodiff();
    let config = args.model.config()?.with_pos_embed_rescale(None);
    device.seed(args.seed);
    let (mut model, weights) = match &args.weights {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let (model, _) = load_backbone(&bytes, &config, &device, LoadOptions::default())?;
            (
                model,
                json!({ "source": "file", "path": path.display().to_string() }),
            )
        }
        None => (
            NepaModel::new(&config, &device)?,
            json!({ "source": "init", "init": format!("nepa seeded init, seed {}", args.seed) }),
        ),
    };
    let digest = output_digest(&model, &config, &device)?;

    let [h, w] = config.image_size;
    let pixels = Tensor::<4>::random(
        [args.batch, 3, h, w],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let lr = 1e-3;
    let mut optim = AdamW::new(AdamWConfig::default());
    let forward = ForwardOptions::eval();
    let (mut step_ms, mut losses, mut grad_norms) = (vec![], vec![], vec![]);
    let mut first_step_ms = None;
    for step in 0..args.warmup + args.steps {
        device.sync().ok();
        let start = Instant::now();
        let out = pretrain_step(
            model,
            &mut optim,
            pixels.clone(),
            lr,
            0.05,
            &forward,
            LossOptions::default(),
        );
        model = out.model;
        // Reading the loss waits for the whole step, including the optimizer update.
        let loss: f32 = out.loss.into_scalar();
        device.sync().ok();
        let ms = start.elapsed().as_secs_f64() * 1e3;
        first_step_ms.get_or_insert(ms);
        if step >= args.warmup {
            step_ms.push(ms);
            losses.push(loss);
            grad_norms.push(out.grad_norm.map(|n| n.into_scalar::<f32>()));
        }
        eprintln!("train step {step}: {ms:.1} ms, loss {loss:.5}");
    }

    let inference_model = model.valid();
    let inference_device = selected.device.clone();
    let inference_pixels = pixels.clone().inner();
    let mut run_ms = vec![];
    let mut first_run_ms = None;
    for run in 0..args.warmup + args.runs {
        inference_device.sync().ok();
        let start = Instant::now();
        let out = inference_model.forward(inference_pixels.clone(), &ForwardOptions::eval());
        let _: f32 = out.last_hidden_state.sum().into_scalar();
        let ms = start.elapsed().as_secs_f64() * 1e3;
        first_run_ms.get_or_insert(ms);
        if run >= args.warmup {
            run_ms.push(ms);
        }
    }

    let step_median = median(&step_ms);
    let run_median = median(&run_ms);
    let is_cpu = selected.backend == "flex" || selected.adapter.contains("llvmpipe");
    let threads = std::thread::available_parallelism().map(|n| n.get()).ok();
    let report = json!({
        "schema": "nepa-run-report/1",
        "tool": "nepa bench",
        "created_unix": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "backend": selected.backend,
        "adapter": if selected.backend == "flex" { format!("{} ({})", selected.adapter, cpu_model_name()) } else { selected.adapter.clone() },
        "threads": if is_cpu { threads } else { None },
        "model": config,
        "params": config.num_params(),
        "seed": args.seed,
        "batch": args.batch,
        "dtype": "float32",
        "train": {
            "warmup_steps": args.warmup,
            "steps": args.steps,
            "step_ms": step_ms,
            "step_ms_median": step_median,
            "images_per_sec": args.batch as f64 / (step_median / 1e3),
            "loss": losses,
            "grad_norm": grad_norms,
            "first_step_ms": first_step_ms,
            "optimizer": { "name": "adamw", "lr": lr, "betas": [0.9, 0.95], "eps": 1e-8,
                "weight_decay": 0.05, "no_decay": "biases, norms, LayerScale", "max_grad_norm": 1.0,
                "schedule": "constant" },
        },
        "inference": {
            "warmup_runs": args.warmup,
            "runs": args.runs,
            "ms": run_ms,
            "ms_median": run_median,
            "images_per_sec": args.batch as f64 / (run_median / 1e3),
            "first_run_ms": first_run_ms,
        },
        "peak_memory_bytes": peak_rss_bytes(),
        "peak_memory_kind": "process-rss",
        "output_digest": digest,
        "weights": weights,
        "versions": { "nepa": env!("CARGO_PKG_VERSION"), "burn": "0.22.1" },
        "host": { "os": std::env::consts::OS, "logical_cpus": threads },
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "notes": ["synthetic data: one fixed batch, pixels U(-1, 1) from the seed, reused every step",
                  "train mode without RoPE rescale or drop-path, so steps are deterministic"],
    });
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.out {
        write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    println!("{text}");
    Ok(())
}
