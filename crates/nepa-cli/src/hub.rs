//! `hf:org/name[@revision]` checkpoints: the files of a Hugging Face model repository,
//! downloaded through the `hf-hub` client into its cache (`$HF_HOME/hub`, by default
//! `~/.cache/huggingface/hub`, the layout the Python `huggingface_hub` shares), from
//! `$HF_ENDPOINT` (by default `https://huggingface.co`). Files already in the cache are used
//! without asking the hub, so a downloaded model loads offline; `HF_HUB_OFFLINE=1` never asks
//! (docs/hub.md).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use hf_hub::api::Progress;
use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

/// What a `--checkpoint`/`--init` argument names when it starts with this.
pub const SCHEME: &str = "hf:";

/// The files of a model repository nepa reads.
pub const CONFIG_FILE: &str = "config.json";
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// A hub model id and revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// A branch, tag or commit; `main` when not given.
    pub revision: String,
}

impl HubId {
    /// Parses the part after `hf:`: `org/name` or `org/name@revision`.
    pub fn parse(spec: &str) -> Result<Self> {
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, rev)) => (repo, rev),
            None => (spec, "main"),
        };
        let valid_part = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || !parts.iter().all(|p| valid_part(p)) {
            bail!(
                "`{SCHEME}{spec}` is not a hub model id: write {SCHEME}org/name or \
                 {SCHEME}org/name@revision (letters, digits, `-`, `_`, `.`)"
            );
        }
        if revision.is_empty()
            || revision.starts_with('/')
            || revision
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
            || revision.chars().any(|c| c.is_whitespace() || c == '\\')
        {
            bail!("`{SCHEME}{spec}`: `{revision}` is not a revision (a branch, tag or commit)");
        }
        Ok(Self {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }

    fn hf_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.revision == "main" {
            write!(f, "{SCHEME}{}", self.repo)
        } else {
            write!(f, "{SCHEME}{}@{}", self.repo, self.revision)
        }
    }
}

/// The hub id a command-line path names, if it is written `hf:…`.
pub fn hub_spec(path: &Path) -> Option<&str> {
    path.to_str().and_then(|s| s.strip_prefix(SCHEME))
}

/// The folder of the hub cache this process uses (`$HF_HOME/hub` or the default).
pub fn cache_dir() -> PathBuf {
    Cache::from_env().path().clone()
}

/// The cache folder of one repository.
fn repo_cache_dir(id: &HubId) -> PathBuf {
    cache_dir().join(id.hf_repo().folder_name())
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// Downloads (or finds in the cache) the model's `config.json`, `model.safetensors` and,
/// when the repository has one, `preprocessor_config.json`; returns the snapshot folder that
/// holds them, which [`crate::ckpt::open`] reads as a Hugging Face model folder.
pub fn fetch(id: &HubId) -> Result<PathBuf> {
    let endpoint =
        std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string());
    let cache = Cache::from_env();
    let cached = cache.repo(id.hf_repo());
    let api = ApiBuilder::from_env()
        .with_progress(false)
        .with_user_agent("nepa", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| anyhow!("{id}: cannot set up the hub client: {e}"))?;
    let remote = api.repo(id.hf_repo());
    let offline = offline();
    let get = |file: &str| -> Result<PathBuf, FetchError> {
        if let Some(path) = cached.get(file) {
            return Ok(path);
        }
        if offline {
            return Err(FetchError::Offline);
        }
        remote
            .download_with_progress(file, StderrProgress::new())
            .map_err(FetchError::from)
    };
    let describe = |file: &str, e: FetchError| -> anyhow::Error {
        let folder = repo_cache_dir(id);
        match e {
            FetchError::Offline => anyhow!(
                "{id}: {file} is not in the hub cache ({}) and HF_HUB_OFFLINE is set: \
                 download the model once with the hub reachable",
                folder.display()
            ),
            FetchError::NotFound(status) => anyhow!(
                "{id}: the hub at {endpoint} has no {file} for `{}` at revision `{}` \
                 (HTTP {status}): check the id and revision (a private or gated model needs a \
                 token in {})",
                id.repo,
                id.revision,
                cache.token_path().display()
            ),
            FetchError::Other(message) => anyhow!(
                "{id}: cannot download {file} from {endpoint} ({message}), and it is not in the \
                 hub cache ({}): connect to the hub (or set HF_ENDPOINT to a mirror) once to \
                 download the model",
                folder.display()
            ),
        }
    };
    let config = get(CONFIG_FILE).map_err(|e| describe(CONFIG_FILE, e))?;
    // Optional: a repository without one uses the official transform (docs/nepa.md §7.2).
    match get(PREPROCESSOR_FILE) {
        Ok(_) | Err(FetchError::NotFound(_)) => {}
        Err(e) => eprintln!(
            "note: {}; using the official preprocessing",
            describe(PREPROCESSOR_FILE, e)
        ),
    }
    let weights = get(WEIGHTS_FILE).map_err(|e| describe(WEIGHTS_FILE, e))?;
    let dir = config
        .parent()
        .ok_or_else(|| anyhow!("{id}: {} has no folder", config.display()))?;
    // A revision that moved between two downloads leaves the files in two snapshots.
    if weights.parent() != Some(dir) {
        bail!(
            "{id}: the revision `{}` moved while downloading ({} and {} are different \
             snapshots); run again",
            id.revision,
            config.display(),
            weights.display()
        );
    }
    Ok(dir.to_path_buf())
}

enum FetchError {
    Offline,
    /// The hub answered that the file (or the repository) does not exist (HTTP 404, or 401
    /// for a repository that is private or absent).
    NotFound(u16),
    Other(String),
}

impl From<ApiError> for FetchError {
    fn from(e: ApiError) -> Self {
        if let ApiError::RequestError(inner) = &e
            && let ureq::Error::Status(status, _) = inner.as_ref()
            && matches!(*status, 401 | 404)
        {
            return Self::NotFound(*status);
        }
        Self::Other(e.to_string())
    }
}

/// Download progress on stderr: a bar on a terminal, else a line per file when it starts
/// and when it is done.
struct StderrProgress {
    bar: Option<indicatif::ProgressBar>,
    file: String,
    total: usize,
    done: usize,
    start: Instant,
}

impl StderrProgress {
    fn new() -> Self {
        Self {
            bar: None,
            file: String::new(),
            total: 0,
            done: 0,
            start: Instant::now(),
        }
    }
}

impl Progress for StderrProgress {
    fn init(&mut self, size: usize, filename: &str) {
        // hf-hub calls this twice per download (before and as the transfer starts).
        if self.file == filename {
            return;
        }
        self.file = filename.to_string();
        self.total = size;
        self.start = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(size as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(filename.to_string());
            self.bar = Some(bar);
        } else {
            eprintln!("downloading {filename} ({})", mib(size));
        }
    }

    fn update(&mut self, size: usize) {
        self.done += size;
        if let Some(bar) = &self.bar {
            bar.inc(size as u64);
        }
    }

    fn finish(&mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish(),
            None => eprintln!(
                "downloaded {} ({}) in {:.1} s",
                self.file,
                mib(self.done.min(self.total)),
                self.start.elapsed().as_secs_f64()
            ),
        }
    }
}

fn mib(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_parse_with_an_optional_revision() {
        assert_eq!(
            HubId::parse("SixAILab/nepa-base-patch14-224-sft").unwrap(),
            HubId {
                repo: "SixAILab/nepa-base-patch14-224-sft".into(),
                revision: "main".into()
            }
        );
        let id = HubId::parse("SixAILab/nepa-base-patch14-224-sft@init").unwrap();
        assert_eq!(id.revision, "init");
        assert_eq!(id.to_string(), "hf:SixAILab/nepa-base-patch14-224-sft@init");
        assert_eq!(HubId::parse("a/b@refs/pr/1").unwrap().revision, "refs/pr/1");
        for bad in [
            "", "name", "a/b/c", "/b", "a/", "../b", "a/..", "a b/c", "a/b@", "a/b@../x", "a/b@/x",
            "a/b@x y",
        ] {
            assert!(HubId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(hub_spec(Path::new("hf:a/b")), Some("a/b"));
        assert_eq!(hub_spec(Path::new("run/latest.json")), None);
    }
}
