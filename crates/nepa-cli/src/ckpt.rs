//! Checkpoints on disk.
//!
//! A checkpoint is one safetensors file, `NAME.safetensors`: official key names, the model
//! config and class names in its metadata, and the sidecar (step, run settings, optimizer
//! file) in its metadata too, so that writing that one file (atomically: temporary file,
//! fsync, rename, fsync of the folder) is the unit a crash cannot split. Next to it:
//! `NAME.optim.safetensors` (AdamW state, written first), `NAME.json` (a readable copy of the
//! sidecar) and `latest.json` (the sidecar of the newest checkpoint, written last).
//!
//! Read as well: a Hugging Face model folder (`config.json`, `model.safetensors`, optionally
//! `preprocessor_config.json`, as `nepa export --hf` writes and the hub serves) and
//! `hf:org/name[@revision]`, such a folder downloaded from the hub (src/hub.rs, docs/hub.md).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use nepa::checkpoint::{
    CLASSES_METADATA_KEY, HubConfig, HubPreprocessor, classes_from_metadata, load_classifier,
    metadata_entry, parse_hf_config, parse_hf_preprocessor_config, with_metadata,
};
use nepa::error::NepaError;
use nepa::image::RgbImage;
use nepa::{LoadOptions, NepaClassifier, NepaConfig};
use serde::{Deserialize, Serialize};

use crate::fsio::{MAX_CHECKPOINT_BYTES, MAX_SIDECAR_BYTES, read_capped};
use crate::hub;

/// The largest `config.json` read (an `id2label` of 100,000 classes fits).
const MAX_HF_CONFIG_BYTES: u64 = 16 << 20;

/// Safetensors metadata key of the sidecar JSON.
pub const SIDECAR_METADATA_KEY: &str = "nepa_sidecar";

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
    /// File names (in the sidecar's folder) of the weights and optimizer state.
    pub model_file: String,
    pub optimizer_file: Option<String>,
}

impl Sidecar {
    /// Checks what a file could get wrong before anything trusts it.
    fn validate(&self, origin: &Path) -> Result<()> {
        self.config
            .validate()
            .with_context(|| format!("{}: the stored config", origin.display()))?;
        if self.step > self.total_steps {
            bail!(
                "{}: step {} is past the run's {} steps",
                origin.display(),
                self.step,
                self.total_steps
            );
        }
        for name in std::iter::once(&self.model_file).chain(&self.optimizer_file) {
            if !is_plain_file_name(name) {
                bail!(
                    "{}: `{name}` is not a file name in the checkpoint's folder",
                    origin.display()
                );
            }
        }
        Ok(())
    }
}

/// A sidecar may only name files next to it (no path, no `..`).
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && Path::new(name).file_name().is_some_and(|f| f == name)
}

/// Writes `bytes` to `path` atomically: a crash leaves either the old file or the new one.
/// The folder is fsynced after the rename so that the new name itself survives a power loss.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    {
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))?;
    sync_dir(dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing folder {}", dir.display()))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    // Windows has no directory fsync; its renames are journalled by NTFS.
    Ok(())
}

/// Files a run writes into its `--out` folder.
fn is_run_file(name: &str) -> bool {
    name == "metrics.jsonl"
        || name == "latest.json"
        || ((name.starts_with("step-") || name.starts_with("classifier"))
            && (name.ends_with(".safetensors") || name.ends_with(".json")))
}

/// Prepares `--out` for a fresh run: refuses a folder that holds a run unless `overwrite`,
/// in which case that run's files (only those) are removed.
pub fn prepare_fresh_out(out: &Path, overwrite: bool) -> Result<()> {
    let Ok(entries) = fs::read_dir(out) else {
        return Ok(());
    };
    let existing: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| is_run_file(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    if !overwrite {
        bail!(
            "{} already holds a run ({} files, e.g. {}): give --resume {0} to continue it, \
             --overwrite to replace it, or another --out",
            out.display(),
            existing.len(),
            existing[0]
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        );
    }
    for file in existing {
        fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
    }
    Ok(())
}

/// Saves a checkpoint as `dir/name.{safetensors,json,optim.safetensors}`; returns the
/// weights' path. Order: optimizer state, weights (carrying the sidecar), sidecar copy,
/// `latest.json`, so whatever a crash leaves, `latest.json` names a complete checkpoint.
pub fn save(
    dir: &Path,
    name: &str,
    model: &[u8],
    optimizer: Option<&[u8]>,
    mut sidecar: Sidecar,
) -> Result<PathBuf> {
    let model_path = dir.join(format!("{name}.safetensors"));
    sidecar.model_file = format!("{name}.safetensors");
    sidecar.optimizer_file = None;
    if let Some(optimizer) = optimizer {
        write_atomic(&dir.join(format!("{name}.optim.safetensors")), optimizer)?;
        sidecar.optimizer_file = Some(format!("{name}.optim.safetensors"));
    }
    let json = serde_json::to_vec_pretty(&sidecar)?;
    let mut entries = vec![(SIDECAR_METADATA_KEY, String::from_utf8(json.clone())?)];
    if !sidecar.classes.is_empty() {
        entries.push((
            CLASSES_METADATA_KEY,
            serde_json::to_string(&sidecar.classes)?,
        ));
    }
    write_atomic(&model_path, &with_metadata(model, &entries)?)?;
    write_atomic(&dir.join(format!("{name}.json")), &json)?;
    write_atomic(&dir.join("latest.json"), &json)?;
    Ok(model_path)
}

/// A loaded checkpoint: its sidecar (if any) and the bytes of its files.
pub struct Loaded {
    pub sidecar: Option<Sidecar>,
    pub model: Vec<u8>,
    /// The optimizer state the sidecar names, read only by [`Loaded::read_optimizer`]: a
    /// checkpoint copied without it (the weights alone) still serves inference and `--init`.
    pub optimizer_path: Option<PathBuf>,
    pub path: PathBuf,
    /// What a Hugging Face model folder's `config.json` and `preprocessor_config.json` say.
    pub hub: Option<HubFolder>,
}

impl Loaded {
    /// The optimizer state, for resuming: `None` when the checkpoint has none (a bare
    /// safetensors file), an error naming the file when the sidecar names one that is gone.
    pub fn read_optimizer(&self) -> Result<Option<Vec<u8>>> {
        let Some(path) = &self.optimizer_path else {
            return Ok(None);
        };
        read_capped(path, MAX_CHECKPOINT_BYTES)
            .map(Some)
            .with_context(|| {
                format!(
                    "reading the optimizer state of {}, which resuming needs beside the weights",
                    self.path.display()
                )
            })
    }
}

/// The files beside `model.safetensors` in a Hugging Face model folder.
pub struct HubFolder {
    pub config: HubConfig,
    /// `None` when the folder has no `preprocessor_config.json`.
    pub preprocessor: Option<HubPreprocessor>,
}

fn parse_sidecar(text: &[u8], origin: &Path) -> Result<Sidecar> {
    let sidecar: Sidecar = serde_json::from_slice(text)
        .with_context(|| format!("{} is not a nepa checkpoint sidecar", origin.display()))?;
    sidecar.validate(origin)?;
    Ok(sidecar)
}

/// Opens a checkpoint given as a `.safetensors` file, its `.json` sidecar, a run folder
/// (its `latest.json`), a Hugging Face model folder (`config.json` + `model.safetensors`) or
/// `hf:org/name[@revision]`. The sidecar inside the weights file wins over any `.json` copy;
/// a bare safetensors file (e.g. an official one) has none.
pub fn open(path: &Path) -> Result<Loaded> {
    if let Some(spec) = hub::hub_spec(path) {
        let id = hub::HubId::parse(spec)?;
        let dir = hub::fetch(&id)?;
        return open_hf_folder(&dir).with_context(|| format!("{id}"));
    }
    if path.is_dir() && !path.join("latest.json").exists() && path.join(hub::CONFIG_FILE).exists() {
        return open_hf_folder(path);
    }
    let model_path = if path.is_dir() {
        let latest = path.join("latest.json");
        if !latest.exists() {
            bail!("{} holds no checkpoint (no latest.json)", path.display());
        }
        named_model(&latest)?
    } else if path.extension().is_some_and(|e| e == "json") {
        named_model(path)?
    } else {
        path.to_path_buf()
    };
    let dir = model_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let model = read_capped(&model_path, MAX_CHECKPOINT_BYTES)
        .with_context(|| format!("reading checkpoint {}", model_path.display()))?;
    let sidecar = match metadata_entry(&model, SIDECAR_METADATA_KEY)
        .with_context(|| format!("{}", model_path.display()))?
    {
        Some(json) => Some(parse_sidecar(json.as_bytes(), &model_path)?),
        // Files written before the sidecar moved into the weights: the .json next to them.
        None => {
            let json = model_path.with_extension("json");
            if json.exists() {
                Some(parse_sidecar(
                    &read_capped(&json, MAX_SIDECAR_BYTES)?,
                    &json,
                )?)
            } else {
                None
            }
        }
    };
    let optimizer_path = sidecar
        .as_ref()
        .and_then(|s| s.optimizer_file.as_ref())
        .map(|f| dir.join(f));
    Ok(Loaded {
        sidecar,
        model,
        optimizer_path,
        path: model_path,
        hub: None,
    })
}

/// Opens a Hugging Face model folder: the architecture from `config.json`, class names from
/// its `id2label`, the preprocessing from `preprocessor_config.json` when there is one.
fn open_hf_folder(dir: &Path) -> Result<Loaded> {
    let config_path = dir.join(hub::CONFIG_FILE);
    let text = read_capped(&config_path, MAX_HF_CONFIG_BYTES)?;
    let text = String::from_utf8(text)
        .with_context(|| format!("{} is not UTF-8 text", config_path.display()))?;
    let config =
        parse_hf_config(&text).with_context(|| format!("reading {}", config_path.display()))?;
    let preprocessor_path = dir.join(hub::PREPROCESSOR_FILE);
    let preprocessor = if preprocessor_path.exists() {
        let text = read_capped(&preprocessor_path, MAX_SIDECAR_BYTES)?;
        let text = String::from_utf8_lossy(&text);
        Some(
            parse_hf_preprocessor_config(&text, &config.config)
                .with_context(|| format!("reading {}", preprocessor_path.display()))?,
        )
    } else {
        None
    };
    let model_path = dir.join(hub::WEIGHTS_FILE);
    if !model_path.exists() {
        bail!(
            "{} has a config.json but no {} (nepa reads single-file safetensors weights)",
            dir.display(),
            hub::WEIGHTS_FILE
        );
    }
    let model = read_capped(&model_path, MAX_CHECKPOINT_BYTES)
        .with_context(|| format!("reading checkpoint {}", model_path.display()))?;
    Ok(Loaded {
        sidecar: None,
        model,
        optimizer_path: None,
        path: model_path,
        hub: Some(HubFolder {
            config,
            preprocessor,
        }),
    })
}

/// The weights file a sidecar (`latest.json` or `NAME.json`) names.
fn named_model(sidecar_path: &Path) -> Result<PathBuf> {
    let sidecar = parse_sidecar(&read_capped(sidecar_path, MAX_SIDECAR_BYTES)?, sidecar_path)?;
    let dir = sidecar_path.parent().unwrap_or(Path::new("."));
    Ok(dir.join(sidecar.model_file))
}

/// The config of a checkpoint: its sidecar's, else its `config.json`'s, else its metadata's,
/// else inferred.
pub fn config_of(loaded: &Loaded) -> Result<NepaConfig> {
    if let Some(s) = &loaded.sidecar {
        return Ok(s.config.clone());
    }
    if let Some(hub) = &loaded.hub {
        return Ok(hub.config.config.clone());
    }
    nepa::checkpoint::infer_config(&loaded.model)
        .with_context(|| format!("{}", loaded.path.display()))
}

/// The classifier of a checkpoint with a head, built with `config` on `device`.
pub fn classifier_of(
    loaded: &Loaded,
    config: &NepaConfig,
    device: &Device,
) -> Result<NepaClassifier> {
    let (model, _) = load_classifier(&loaded.model, config, None, device, LoadOptions::default())
        .with_context(|| format!("loading {}", loaded.path.display()))?;
    Ok(model)
}

/// A classifier's class names (label i = entry i): its sidecar's, else its metadata's, else
/// its `config.json`'s `id2label`; `None` if it names none.
pub fn classes_of(loaded: &Loaded) -> Result<Option<Vec<String>>> {
    if let Some(s) = &loaded.sidecar
        && !s.classes.is_empty()
    {
        return Ok(Some(s.classes.clone()));
    }
    if let Some(classes) = classes_from_metadata(&loaded.model)
        .with_context(|| format!("{}", loaded.path.display()))?
    {
        return Ok(Some(classes));
    }
    Ok(loaded.hub.as_ref().and_then(|h| h.config.classes.clone()))
}

/// The image transform a classifier is evaluated with: a Hugging Face folder's
/// `preprocessor_config.json` (the official transform when it has none, docs/nepa.md §7.2);
/// for nepa's own checkpoints the fine-tuning recipe's evaluation transform, as `nepa eval`.
pub fn preprocessing_of(
    loaded: &Loaded,
    config: &NepaConfig,
) -> impl Fn(&RgbImage) -> Result<Vec<f32>, NepaError> {
    let hub = loaded.hub.as_ref().map(|h| {
        h.preprocessor
            .clone()
            .unwrap_or_else(|| HubPreprocessor::official(config))
    });
    let config = config.clone();
    move |image: &RgbImage| match &hub {
        Some(preprocessor) => preprocessor.apply(&config, image),
        None => nepa::finetune::eval_pixels(&config, image),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_may_only_name_files_next_to_them() {
        assert!(is_plain_file_name("step-0000010.safetensors"));
        for bad in ["", ".", "..", "../x", "/dev/zero", "a/b", "a\\b"] {
            assert!(!is_plain_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_fresh_run_refuses_a_folder_with_a_run_unless_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
        prepare_fresh_out(tmp.path(), false).unwrap();
        fs::write(tmp.path().join("metrics.jsonl"), "{}").unwrap();
        fs::write(tmp.path().join("step-0000002.safetensors"), "x").unwrap();
        let e = prepare_fresh_out(tmp.path(), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("already holds a run") && e.contains("--overwrite"),
            "{e}"
        );
        assert!(tmp.path().join("metrics.jsonl").exists());
        prepare_fresh_out(tmp.path(), true).unwrap();
        assert!(!tmp.path().join("metrics.jsonl").exists());
        assert!(!tmp.path().join("step-0000002.safetensors").exists());
        // Files that are not the run's stay.
        assert!(tmp.path().join("notes.txt").exists());
    }
}
