//! What every training command shares: model-size flags, the progress bar and metrics log,
//! and the Ctrl-C flag.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nepa::{NepaConfig, StepOutcome};

/// Model architecture flags: a preset plus overrides.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Size preset: tiny (D 192, L 12, H 3), small (384/12/6), base (768/12/12), large.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Hidden size D (overrides the preset).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Number of transformer blocks (overrides the preset).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Number of attention heads (overrides the preset).
    #[arg(long)]
    pub heads: Option<usize>,
    /// Input image side in pixels.
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
    #[arg(long, default_value_t = 14)]
    pub patch_size: usize,
    /// SwiGLU MLP (the paper) instead of GELU (the released checkpoints).
    #[arg(long)]
    pub swiglu: bool,
    /// Learnable QK-norm weights (ViT-L style).
    #[arg(long)]
    pub qk_affine: bool,
    /// Maximum stochastic-depth rate (default 0; fine-tuning: the recipe's).
    #[arg(long)]
    pub drop_path: Option<f64>,
}

impl ModelArgs {
    pub fn config(&self) -> Result<NepaConfig> {
        let base = NepaConfig::preset(&self.preset)?;
        let d = self.dim.unwrap_or(base.hidden_size);
        let mut config = NepaConfig::new(
            d,
            self.depth.unwrap_or(base.num_hidden_layers),
            self.heads.unwrap_or(base.num_attention_heads),
        )
        .with_image_size(self.image_size, self.image_size)
        .with_patch_size(self.patch_size)
        .with_swiglu(self.swiglu)
        .with_qk_norm_affine(self.qk_affine || base.qk_norm_affine)
        .with_drop_path(self.drop_path.unwrap_or(0.0));
        config.intermediate_size = 4 * d;
        config.validate()?;
        Ok(config)
    }
}

/// The longest side a data set keeps its images at: 4× the model's input side. Crops of at
/// least 8% of the area (the smallest RandomResizedCrop scale) then still have about the
/// input's resolution, while a folder of 24-megapixel photos does not fill the memory.
pub fn stored_side(config: &NepaConfig) -> usize {
    4 * config.image_size[0].max(config.image_size[1])
}

/// Set by Ctrl-C, SIGTERM (a job scheduler, `kill`, a container stop) or SIGHUP (the
/// terminal closed); training loops check it between steps, save and exit.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // A second signal while saving exits at once.
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving a checkpoint, then exiting (interrupt again to abort)");
    });
    flag
}

/// Reports what a crate driver did with a step, the same way for every training command:
/// a skipped (non-finite, undone) step is a warning; a diverged run saves the last good
/// weights with `save_last_good` and ends with the driver's message and where they went.
pub fn handle_outcome(
    progress: &Progress,
    outcome: &StepOutcome,
    (step, loss, grad_norm): (usize, f32, Option<f32>),
    skipped: usize,
    save_last_good: impl FnOnce() -> Result<PathBuf>,
) -> Result<()> {
    match outcome {
        StepOutcome::Applied => Ok(()),
        StepOutcome::Skipped => {
            progress.println(format!(
                "warning: step {} skipped: loss {loss}, gradient norm {grad_norm:?} ({skipped} skipped so far)",
                step + 1,
            ));
            Ok(())
        }
        StepOutcome::Diverged(message) => {
            progress.finish();
            let saved = match save_last_good() {
                Ok(path) => format!("the last good weights are saved in {}", path.display()),
                Err(e) => format!("no checkpoint written ({e:#})"),
            };
            bail!("{message}\n{saved}");
        }
    }
}

/// The progress-line suffix counting skipped non-finite steps (empty while there are none).
pub fn skipped_note(skipped: usize) -> String {
    match skipped {
        0 => String::new(),
        n => format!(" ({n} non-finite skipped)"),
    }
}

/// A progress bar on a terminal, or plain log lines when output is redirected.
pub struct Progress {
    bar: ProgressBar,
    log_every: usize,
}

impl Progress {
    pub fn new(total: usize, start: usize, log_every: usize) -> Self {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ETA {eta}",
            )
            .expect("valid template"),
        );
        bar.set_position(start as u64);
        bar.enable_steady_tick(Duration::from_millis(250));
        Self {
            bar,
            log_every: log_every.max(1),
        }
    }

    /// Updates the bar; on a non-terminal prints every `log_every` steps.
    pub fn step(&self, done: usize, message: String) {
        self.bar.set_position(done as u64);
        if self.bar.is_hidden() {
            if done.is_multiple_of(self.log_every) || done as u64 == self.bar.length().unwrap_or(0)
            {
                println!("step {done}/{} {message}", self.bar.length().unwrap_or(0));
            }
        } else {
            self.bar.set_message(message);
        }
    }

    pub fn println(&self, line: String) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}

/// Appends JSON lines to `dir/metrics.jsonl`.
pub struct Metrics {
    path: PathBuf,
}

impl Metrics {
    pub fn new(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            path: dir.join("metrics.jsonl"),
        })
    }

    pub fn log(&self, record: serde_json::Value) -> Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        writeln!(file, "{record}")?;
        Ok(())
    }
}
