//! Checkpoint files on disk: `NAME.safetensors` (official key names, config in metadata),
//! `NAME.json` (sidecar: config, step, run settings) and `NAME.optim.safetensors` (AdamW
//! state). Every file is written atomically (temporary file, then rename).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nepa::NepaConfig;
use serde::{Deserialize, Serialize};

/// What a sidecar records next to the weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sidecar {
    /// "pretrain" or "finetune".
    pub kind: String,
    pub config: NepaConfig,
    /// Optimizer steps done.
    pub step: usize,
    pub total_steps: usize,
    pub seed: u64,
    /// Loss of the last step before saving.
    pub loss: Option<f32>,
    /// Class names, for a classifier.
    #[serde(default)]
    pub classes: Vec<String>,
    /// The run's settings (learning rate, batch, ablation switches), for resuming.
    pub settings: serde_json::Value,
    /// File names (relative to the sidecar) of the weights and optimizer state.
    pub model_file: String,
    pub optimizer_file: Option<String>,
}

/// Writes `bytes` to `path` atomically: a crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    {
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))?;
    Ok(())
}

/// Saves a checkpoint as `dir/name.{safetensors,json,optim.safetensors}`; returns the
/// weights' path. The sidecar is written last, so a sidecar always names complete files.
pub fn save(
    dir: &Path,
    name: &str,
    model: &[u8],
    optimizer: Option<&[u8]>,
    mut sidecar: Sidecar,
) -> Result<PathBuf> {
    let model_path = dir.join(format!("{name}.safetensors"));
    write_atomic(&model_path, model)?;
    sidecar.model_file = format!("{name}.safetensors");
    sidecar.optimizer_file = None;
    if let Some(optimizer) = optimizer {
        write_atomic(&dir.join(format!("{name}.optim.safetensors")), optimizer)?;
        sidecar.optimizer_file = Some(format!("{name}.optim.safetensors"));
    }
    let json = serde_json::to_vec_pretty(&sidecar)?;
    write_atomic(&dir.join(format!("{name}.json")), &json)?;
    write_atomic(&dir.join("latest.json"), &json)?;
    Ok(model_path)
}

/// A loaded checkpoint: its sidecar (if any) and the bytes of its files.
pub struct Loaded {
    pub sidecar: Option<Sidecar>,
    pub model: Vec<u8>,
    pub optimizer: Option<Vec<u8>>,
    pub path: PathBuf,
}

/// Opens a checkpoint given as a `.safetensors` file, its `.json` sidecar, or a run folder
/// (its `latest.json`). A bare safetensors file (e.g. an official one) has no sidecar.
pub fn open(path: &Path) -> Result<Loaded> {
    let sidecar_path = if path.is_dir() {
        path.join("latest.json")
    } else if path.extension().is_some_and(|e| e == "json") {
        path.to_path_buf()
    } else {
        path.with_extension("json")
    };
    if path.is_dir() && !sidecar_path.exists() {
        bail!("{} holds no checkpoint (no latest.json)", path.display());
    }
    let sidecar: Option<Sidecar> = if sidecar_path.exists() {
        let text = fs::read_to_string(&sidecar_path)
            .with_context(|| format!("reading {}", sidecar_path.display()))?;
        Some(serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a nepa checkpoint sidecar",
                sidecar_path.display()
            )
        })?)
    } else {
        None
    };
    let dir = sidecar_path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let model_path = match &sidecar {
        Some(s) => dir.join(&s.model_file),
        None => path.to_path_buf(),
    };
    let model = fs::read(&model_path)
        .with_context(|| format!("reading checkpoint {}", model_path.display()))?;
    let optimizer = match sidecar.as_ref().and_then(|s| s.optimizer_file.as_ref()) {
        Some(f) => Some(fs::read(dir.join(f)).with_context(|| format!("reading {f}"))?),
        None => None,
    };
    Ok(Loaded {
        sidecar,
        model,
        optimizer,
        path: model_path,
    })
}

/// The config of a checkpoint: its sidecar's, else its metadata's, else inferred.
pub fn config_of(loaded: &Loaded) -> Result<NepaConfig> {
    if let Some(s) = &loaded.sidecar {
        return Ok(s.config.clone());
    }
    Ok(nepa::checkpoint::infer_config(&loaded.model)?)
}
