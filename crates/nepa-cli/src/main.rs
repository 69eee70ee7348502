//! `nepa`: the native NEPA tool, on the same model crate as the web app.

mod bench;
mod ckpt;
mod classify;
mod compute;
mod data;
mod device;
mod eval;
mod export;
mod finetune;
mod fsio;
mod hub;
mod kernel_cache;
mod prefetch;
mod pretrain;
mod probe;
mod run;
mod visualize;

use anyhow::Result;
use burn::tensor::{Distribution, Tensor};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use nepa::{ForwardOptions, LossOptions, NepaConfig, NepaModel, prediction_loss};

use device::DeviceChoice;

#[derive(Parser)]
#[command(
    name = "nepa",
    version,
    about = "NEPA: next-embedding predictive autoregression for vision"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Attention on the GPU backends: nepa's fused kernels or Burn's decomposed operations
    /// (docs/attention.md; decomposed is the faster on lavapipe); Flex keeps its own.
    #[arg(long, global = true, default_value = "decomposed", value_parser = ["fused", "decomposed"])]
    attention: String,
}

#[derive(Subcommand)]
enum Command {
    /// NEPA pretraining on an image folder or Fashion-MNIST/MNIST idx files.
    Pretrain(pretrain::PretrainArgs),
    /// Fine-tune a classifier from a pretrained checkpoint (or from scratch).
    Finetune(Box<finetune::FinetuneArgs>),
    /// Top-1 accuracy of a classifier checkpoint on a labelled set.
    Eval(eval::EvalArgs),
    /// k-NN probe of pretrained backbones' features on a labelled folder, beside random init
    /// and raw pixels: a markdown table.
    Probe(probe::ProbeArgs),
    /// The paper's views for one image and query patch, written as PNGs.
    Visualize(visualize::VisualizeArgs),
    /// Each image's most likely classes under a classifier (e.g.
    /// `--checkpoint hf:SixAILab/nepa-base-patch14-224-sft`).
    Classify(classify::ClassifyArgs),
    /// Write a checkpoint as a Hugging Face model folder the official code loads.
    Export(export::ExportArgs),
    /// Time pretraining steps and inference; write a JSON run report.
    Bench(bench::BenchArgs),
    /// Build a small random model and run forward + backward on random images: checks the
    /// install and the device.
    Smoke {
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
        /// Model preset (tiny, small, base, large).
        #[arg(long, default_value = "tiny")]
        preset: String,
        #[arg(long, default_value_t = 2)]
        batch: usize,
    },
}

fn main() -> Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    nepa::kernels::set_attention_mode(nepa::kernels::AttentionMode::parse(&cli.attention).unwrap());
    let mut command = cli.command;
    // Fine-tuning flags override the recipe preset only where given (finetune::RecipeArgs).
    if let (Command::Finetune(args), Some(sub)) =
        (&mut command, matches.subcommand_matches("finetune"))
    {
        args.recipe.given = finetune::given_flags(sub);
    }
    // The command runs on one of rayon's threads (docs/performance.md §9). Flex's parallel
    // operations are rayon jobs: called from outside the pool, each one is handed over while the
    // main thread sleeps until it is done, and between them the pool's idle threads spin beside
    // the main thread, three threads on two cores. From inside, the calling thread takes part.
    // With a one-thread pool the command stays outside: a job that another thread (such as the
    // pretraining loader) queued would otherwise wait behind the command for the only thread.
    if rayon::current_num_threads() >= 2 {
        rayon::scope(|_| run(command))
    } else {
        run(command)
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Pretrain(args) => pretrain::run(args),
        Command::Finetune(args) => finetune::run(*args),
        Command::Eval(args) => eval::eval(args),
        Command::Probe(args) => probe::run(args),
        Command::Visualize(args) => visualize::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Export(args) => export::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Smoke {
            device,
            preset,
            batch,
        } => smoke(device, &preset, batch),
    }
}

fn smoke(choice: DeviceChoice, preset: &str, batch: usize) -> Result<()> {
    let selected = device::select(choice)?;
    let config = NepaConfig::preset(preset)?;
    println!(
        "model: {preset}, {:.1} M parameters, {} tokens",
        config.num_params() as f64 / 1e6,
        config.seq_len()
    );
    let device = selected.device.autodiff();
    let model = NepaModel::new(&config, &device)?;
    let [h, w] = config.image_size;
    let pixels = Tensor::<4>::random([batch, 3, h, w], Distribution::Uniform(-1.0, 1.0), &device);
    let start = std::time::Instant::now();
    let out = model.forward(pixels, &ForwardOptions::eval());
    let loss = prediction_loss(
        out.last_hidden_state,
        out.input_embedding,
        LossOptions::default(),
    );
    let grads = loss.backward();
    let conv_grad = model
        .embeddings
        .projection_weight
        .val()
        .grad(&grads)
        .expect("the patch embedding receives a gradient");
    let loss: f32 = loss.into_scalar();
    let grad_norm: f32 = conv_grad.square().sum().sqrt().into_scalar();
    println!(
        "loss {loss:.5} (random init is near 0), |∂loss/∂conv| {grad_norm:.3e}, forward+backward {:.2} s",
        start.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        loss.is_finite() && grad_norm.is_finite(),
        "non-finite loss or gradient"
    );
    Ok(())
}
