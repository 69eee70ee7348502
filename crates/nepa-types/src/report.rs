//! The run report `nepa-run-report/1` (docs/run-report.md) that `nepa bench`, the browser's
//! Compare tab and the PyTorch reference bench write, and the comparison of two of them. One
//! serde type, [`RunReport`], that every side writes and reads, so the page, the engine and the
//! CLI cannot drift apart on a field; no Burn, so the page reads and compares reports itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::config::NepaConfig;
use crate::flops::FlopsPerImage;

pub const REPORT_SCHEMA: &str = "nepa-run-report/1";

/// A run report, `nepa-run-report/1` (docs/run-report.md): what `nepa bench` and the browser
/// write and what the Compare page reads, including reports of the PyTorch reference bench.
///
/// Fields the schema calls optional are `Option` (or default to empty) and are left out when
/// absent; fields it does not know are ignored on reading. Lists of measured numbers
/// (losses, times, ẑ values) read a JSON null as NaN, since a diverged step's NaN loss is
/// written as null (JSON has no NaN).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Always [`REPORT_SCHEMA`]; [`RunReport::from_json`] rejects anything else.
    pub schema: String,
    /// `"nepa bench"`, `"torch-reference"` or `"browser"`.
    pub tool: String,
    pub created_unix: u64,
    pub backend: String,
    pub adapter: String,
    pub threads: Option<usize>,
    /// The config that ran, under the official `config.json` names (§1.3).
    pub model: NepaConfig,
    pub params: u64,
    pub seed: u64,
    pub batch: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// `"explicit"` (softmax(QKᵀ)·V as written) or `"sdpa"` (a fused attention kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
    /// The FLOP count behind `train.tflops` and `inference.tflops`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops_per_image: Option<FlopsPerImage>,
    /// Null when the train step was not measured.
    pub train: Option<TrainReport>,
    /// Null when inference was not measured.
    pub inference: Option<InferenceReport>,
    pub peak_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_kind: Option<String>,
    pub output_digest: Option<OutputDigest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    /// Software versions by name (`nepa`, `burn`, `torch`, …); null where not applicable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<BTreeMap<String, Option<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// `train` (§1.4): the measured pretraining steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub warmup_steps: usize,
    pub steps: usize,
    #[serde(deserialize_with = "numbers")]
    pub step_ms: Vec<f64>,
    pub step_ms_median: Option<f64>,
    pub images_per_sec: Option<f64>,
    /// Achieved TFLOP/s: `flops_per_image.train` × `images_per_sec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tflops: Option<f64>,
    #[serde(deserialize_with = "numbers")]
    pub loss: Vec<f64>,
    /// Loss of each warm-up step: `warmup_loss ++ loss` is the curve from step 0.
    #[serde(default, deserialize_with = "numbers")]
    pub warmup_loss: Vec<f64>,
    /// Gradient norm before clipping, per measured step.
    #[serde(default, deserialize_with = "numbers")]
    pub grad_norm: Vec<f64>,
    pub first_step_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerReport>,
}

/// `train.optimizer`: the optimizer that was run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerReport {
    pub name: String,
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_decay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grad_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// `inference` (§1.5): the measured forward passes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferenceReport {
    pub warmup_runs: usize,
    pub runs: usize,
    #[serde(deserialize_with = "numbers")]
    pub ms: Vec<f64>,
    pub ms_median: Option<f64>,
    pub images_per_sec: Option<f64>,
    /// Achieved TFLOP/s: `flops_per_image.forward` × `images_per_sec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tflops: Option<f64>,
    pub first_run_ms: Option<f64>,
}

/// `output_digest` (§2): ẑ on the closed-form probe image, before any training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputDigest {
    pub probe: String,
    #[serde(deserialize_with = "number")]
    pub z_hat_sum: f64,
    #[serde(deserialize_with = "number")]
    pub z_hat_abs_mean: f64,
    /// `ẑ[0, 0, 0..8]`.
    #[serde(deserialize_with = "numbers")]
    pub z_hat_first: Vec<f64>,
    /// `ẑ[0, T−1, 0..8]`.
    #[serde(
        default,
        deserialize_with = "numbers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub z_hat_last: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z_hat_sample_stride: Option<usize>,
    /// Every `z_hat_sample_stride`-th value of the flattened `ẑ[0]`.
    #[serde(
        default,
        deserialize_with = "numbers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub z_hat_sample: Vec<f64>,
    /// The NEPA loss of the probe image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
}

/// `weights`: a fresh seeded init, or a safetensors file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Weights {
    Init {
        init: String,
    },
    File {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
}

/// `host`: the machine, as far as the writer knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_cpus: Option<usize>,
    /// Above `threads`, other work competed for the CPU (§3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loadavg_1m_at_start: Option<f64>,
    /// The browser's `navigator.userAgent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// A number, or null (written for NaN) read back as NaN.
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A list of numbers in which null (written for NaN) reads back as NaN.
fn numbers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let values = Vec::<Option<f64>>::deserialize(d)?;
    Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Why a file is not a usable run report.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("not a JSON run report: {0}")]
    NotJson(String),
    #[error("schema is {found}, expected \"{REPORT_SCHEMA}\" (docs/run-report.md)")]
    Schema {
        /// The `schema` value as JSON (`"something/9"`), or `(none)`.
        found: String,
    },
    #[error("not a valid {REPORT_SCHEMA} report (docs/run-report.md): {0}")]
    Invalid(String),
}

impl RunReport {
    /// Reads a report. The schema is checked first, so a file of another schema is named as
    /// such rather than by the first field it lacks; then every field of the schema is
    /// checked for its type. Never panics, whatever the text.
    pub fn from_json(text: &str) -> Result<Self, ReportError> {
        #[derive(Deserialize)]
        struct Schema {
            schema: Option<Value>,
        }
        let head: Schema =
            serde_json::from_str(text).map_err(|e| ReportError::NotJson(e.to_string()))?;
        match head.schema {
            Some(Value::String(s)) if s == REPORT_SCHEMA => {}
            Some(other) => {
                return Err(ReportError::Schema {
                    found: other.to_string(),
                });
            }
            None => {
                return Err(ReportError::Schema {
                    found: "(none)".into(),
                });
            }
        }
        serde_json::from_str(text).map_err(|e| ReportError::Invalid(e.to_string()))
    }

    /// The report as pretty-printed JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a run report serialises")
    }

    /// Loss of every step from step 0: the warm-up steps, then the timed ones.
    pub fn loss_curve(&self) -> Vec<f64> {
        self.train
            .as_ref()
            .map(|t| t.warmup_loss.iter().chain(&t.loss).copied().collect())
            .unwrap_or_default()
    }

    /// ẑ values of the digest to compare value by value: the strided sample, else the first
    /// and last tokens' values.
    pub fn digest_values(&self) -> Vec<f64> {
        let Some(d) = &self.output_digest else {
            return vec![];
        };
        if d.z_hat_sample.is_empty() {
            d.z_hat_first.iter().chain(&d.z_hat_last).copied().collect()
        } else {
            d.z_hat_sample.clone()
        }
    }

    pub fn step_ms_median(&self) -> Option<f64> {
        self.train.as_ref().and_then(|t| t.step_ms_median)
    }

    pub fn train_images_per_sec(&self) -> Option<f64> {
        self.train.as_ref().and_then(|t| t.images_per_sec)
    }

    pub fn inference_ms_median(&self) -> Option<f64> {
        self.inference.as_ref().and_then(|i| i.ms_median)
    }
}

/// Two reports side by side.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Same model config, seed and batch: the loss curves and digests should agree.
    pub same_run: bool,
    /// Why not, when `same_run` is false.
    pub mismatch: Vec<String>,
    /// `a / b` of the median step time (above 1: `a` is slower).
    pub step_time_ratio: Option<f64>,
    pub inference_time_ratio: Option<f64>,
    /// Steps both curves have, and the largest |Δloss| over them: `f64::INFINITY` when a loss
    /// is not finite on either side (a diverged run never agrees with anything).
    pub common_steps: usize,
    pub max_loss_diff: Option<f64>,
    /// The largest |Δẑ| of the two digests: `f64::INFINITY` when a value is not finite or the
    /// digests differ in length.
    pub digest_max_abs_diff: Option<f64>,
    /// Cosine of the two digests; NaN when a value is not finite.
    pub digest_cosine: Option<f64>,
}

impl Comparison {
    /// Whether the two runs agree: the same run, a common loss curve with every step within
    /// `loss_tol`, and digests within `digest_tol`. Anything unmeasured or non-finite fails.
    pub fn agrees(&self, loss_tol: f64, digest_tol: f64) -> bool {
        self.same_run
            && self.common_steps > 0
            && self.max_loss_diff.is_some_and(|d| d <= loss_tol)
            && self.digest_max_abs_diff.is_some_and(|d| d <= digest_tol)
    }
}

/// The largest |a_i − b_i|, where a NaN or infinite value on either side counts as infinitely
/// far (a plain `fold(0.0, f64::max)` skips NaN, so an all-NaN run would compare as 0), and so
/// do lists of different lengths. Two empty lists are 0 apart. In f64 for `f32` lists too
/// (tensor values read back).
pub fn max_abs_diff<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).fold(0.0, |worst, (&x, &y)| {
        let d = (x.into() - y.into()).abs();
        if d.is_finite() {
            worst.max(d)
        } else {
            f64::INFINITY
        }
    })
}

/// Compares report `a` (e.g. the browser) with report `b` (e.g. native).
pub fn compare(a: &RunReport, b: &RunReport) -> Comparison {
    let mut mismatch = vec![];
    if a.model != b.model {
        mismatch.push("different model configs".to_string());
    }
    if a.seed != b.seed {
        mismatch.push(format!("seeds {} and {}", a.seed, b.seed));
    }
    if a.batch != b.batch {
        mismatch.push(format!("batch sizes {} and {}", a.batch, b.batch));
    }
    let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    };
    let (curve_a, curve_b) = (a.loss_curve(), b.loss_curve());
    let common_steps = curve_a.len().min(curve_b.len());
    let max_loss_diff = (common_steps > 0)
        .then(|| max_abs_diff(&curve_a[..common_steps], &curve_b[..common_steps]));
    let (da, db) = (a.digest_values(), b.digest_values());
    let (digest_max_abs_diff, digest_cosine) = if da.is_empty() && db.is_empty() {
        (None, None)
    } else {
        let dot: f64 = da.iter().zip(&db).map(|(x, y)| x * y).sum();
        let na = da.iter().map(|x| x * x).sum::<f64>().sqrt();
        let nb = db.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cosine = if da.len() == db.len() {
            dot / (na * nb).max(1e-30)
        } else {
            f64::NAN
        };
        (Some(max_abs_diff(&da, &db)), Some(cosine))
    };
    Comparison {
        same_run: mismatch.is_empty(),
        mismatch,
        step_time_ratio: ratio(a.step_ms_median(), b.step_ms_median()),
        inference_time_ratio: ratio(a.inference_ms_median(), b.inference_ms_median()),
        common_steps,
        max_loss_diff,
        digest_max_abs_diff,
        digest_cosine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> RunReport {
        RunReport::from_json(include_str!(
            "../../../tests/fixtures/bench-native-flex.json"
        ))
        .unwrap()
    }

    #[test]
    fn a_report_agrees_with_itself() {
        let r = fixture();
        let c = compare(&r, &r);
        assert!(c.common_steps > 0 && !r.digest_values().is_empty(), "{c:?}");
        assert_eq!(c.max_loss_diff, Some(0.0));
        assert_eq!(c.digest_max_abs_diff, Some(0.0));
        assert!((c.digest_cosine.unwrap() - 1.0).abs() < 1e-12);
        assert!(c.agrees(0.0, 0.0), "{c:?}");
    }

    /// A fold with `f64::max` skips NaN, so a diverged run (every loss and ẑ NaN, written as
    /// null) compared as 0 apart: it must compare as infinitely far.
    #[test]
    fn nan_counts_as_infinitely_far() {
        let good = fixture();
        let mut nan = good.clone();
        for t in nan.train.iter_mut() {
            t.loss.iter_mut().for_each(|l| *l = f64::NAN);
            t.warmup_loss.iter_mut().for_each(|l| *l = f64::NAN);
        }
        for d in nan.output_digest.iter_mut() {
            d.z_hat_sample.iter_mut().for_each(|v| *v = f64::NAN);
            d.z_hat_first.iter_mut().for_each(|v| *v = f64::NAN);
            d.z_hat_last.iter_mut().for_each(|v| *v = f64::NAN);
        }
        // Through JSON, as the page and the CLI read it (NaN is written as null).
        let nan = RunReport::from_json(&nan.to_json_pretty()).unwrap();
        for (a, b) in [(&nan, &good), (&good, &nan), (&nan, &nan)] {
            let c = compare(a, b);
            assert_eq!(c.max_loss_diff, Some(f64::INFINITY), "{c:?}");
            assert_eq!(c.digest_max_abs_diff, Some(f64::INFINITY), "{c:?}");
            assert!(!c.agrees(1.0, 1.0), "{c:?}");
        }
        // One bad step is enough.
        let mut one = good.clone();
        one.train.as_mut().unwrap().loss[0] = f64::NAN;
        assert_eq!(compare(&one, &good).max_loss_diff, Some(f64::INFINITY));
    }

    #[test]
    fn digests_of_different_lengths_never_agree() {
        let good = fixture();
        let mut short = good.clone();
        short.output_digest.as_mut().unwrap().z_hat_sample.pop();
        let c = compare(&short, &good);
        assert_eq!(c.digest_max_abs_diff, Some(f64::INFINITY), "{c:?}");
        assert!(c.digest_cosine.unwrap().is_nan());
        assert!(!c.agrees(1.0, 1.0));
    }

    #[test]
    fn max_abs_diff_checks_lengths_and_finiteness() {
        assert_eq!(max_abs_diff::<f64>(&[], &[]), 0.0);
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
        assert_eq!(max_abs_diff(&[1.0], &[1.0, 2.0]), f64::INFINITY);
        assert_eq!(max_abs_diff(&[f64::NAN], &[f64::NAN]), f64::INFINITY);
        assert_eq!(
            max_abs_diff(&[f64::INFINITY], &[f64::INFINITY]),
            f64::INFINITY
        );
        assert_eq!(
            max_abs_diff(&[1.0f32, f32::NAN], &[1.0, 0.0]),
            f64::INFINITY
        );
    }
}
