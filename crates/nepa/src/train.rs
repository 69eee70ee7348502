//! Training pieces shared by the native trainer and the browser: AdamW with per-parameter
//! learning rate and weight decay (no decay on biases, norms and LayerScale; layer-wise decay
//! for fine-tuning), global-norm gradient clipping, the learning-rate schedules of
//! docs/nepa.md §4–§5, and label-smoothed cross-entropy.
//!
//! The optimizer is written here rather than taken from burn-optim so that its state can be
//! read back asynchronously and saved as safetensors under the official parameter names,
//! which works the same in the browser and natively.

use std::collections::HashMap;

use burn::module::Param;
use burn::tensor::{Gradients, Tensor, TensorData};

use crate::checkpoint::{ExportTensor, ParamVisitor, Walkable};
use crate::classifier::NepaClassifier;
use crate::error::NepaError;
use crate::model::NepaModel;

/// Learning rate and weight decay of one parameter for one step; `None` freezes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamGroup {
    pub lr: f64,
    pub weight_decay: f64,
}

/// Whether a parameter is exempt from weight decay (docs/nepa.md §4): biases, every LayerNorm
/// (including q_norm/k_norm and fc_norm) and LayerScale. The CLS token and the conv weight
/// are decayed.
pub fn is_no_decay(key: &str) -> bool {
    let module = key.rsplit('.').nth(1).unwrap_or("");
    key.ends_with(".bias") || module.contains("norm") || key.ends_with("lambda1")
}

/// Depth of a parameter for layer-wise learning-rate decay, from its (bare) key:
/// embeddings 0, block i → i + 1, the rest (final norm, fc_norm, classifier) L + 1.
pub fn layer_id(key: &str, num_layers: usize) -> usize {
    let key = key
        .strip_prefix(crate::checkpoint::BACKBONE_PREFIX)
        .unwrap_or(key);
    if key.starts_with("embeddings.") {
        0
    } else if let Some(rest) = key.strip_prefix("encoder.layer.") {
        rest.split('.')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .map_or(num_layers + 1, |i| i + 1)
    } else {
        num_layers + 1
    }
}

/// AdamW hyper-parameters (docs/nepa.md §4: β = (0.9, 0.95), eps 1e-8, decoupled weight decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global-norm gradient clipping; `None` disables it.
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            max_grad_norm: Some(1.0),
        }
    }
}

#[derive(Clone)]
struct Moments {
    exp_avg: Tensor<1>,
    exp_avg_sq: Tensor<1>,
    /// Steps this parameter was updated (frozen phases do not advance it).
    step: u64,
}

/// AdamW keyed by official parameter names. Cloning is cheap (tensors are shared): a
/// training loop keeps the state from before a step to restore it if the step diverged.
#[derive(Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    moments: HashMap<String, Moments>,
}

/// Gradients of the trainable parameters, flattened, keyed by name, after clipping.
struct GradTable {
    grads: HashMap<String, Tensor<1>>,
}

struct GradGather<'g, F: Fn(&str) -> Option<ParamGroup>> {
    grads: &'g Gradients,
    policy: &'g F,
    out: HashMap<String, Tensor<1>>,
}

impl<F: Fn(&str) -> Option<ParamGroup>> ParamVisitor for GradGather<'_, F> {
    fn visit<const D: usize>(
        &mut self,
        key: String,
        param: Param<Tensor<D>>,
        _transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError> {
        if (self.policy)(&key).is_some()
            && let Some(grad) = param.val().grad(self.grads)
        {
            let n = grad.shape().num_elements();
            self.out.insert(key, grad.reshape([n]));
        }
        Ok(param)
    }
}

struct Updater<'a, F: Fn(&str) -> Option<ParamGroup>> {
    optim: &'a mut AdamW,
    grads: &'a GradTable,
    policy: &'a F,
}

impl<F: Fn(&str) -> Option<ParamGroup>> ParamVisitor for Updater<'_, F> {
    fn visit<const D: usize>(
        &mut self,
        key: String,
        param: Param<Tensor<D>>,
        _transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError> {
        let (Some(group), Some(grad)) = ((self.policy)(&key), self.grads.grads.get(&key)) else {
            return Ok(param);
        };
        let c = self.optim.config;
        let (id, tensor, mapper) = param.consume();
        let was_autodiff = tensor.is_autodiff();
        let require_grad = tensor.is_require_grad();
        let dims = tensor.dims();
        let n = grad.dims()[0];
        let p = tensor.inner().reshape([n]);
        let g = grad.clone();
        let moments = self.optim.moments.remove(&key).unwrap_or_else(|| Moments {
            exp_avg: Tensor::zeros([n], &p.device()),
            exp_avg_sq: Tensor::zeros([n], &p.device()),
            step: 0,
        });
        let step = moments.step + 1;
        let exp_avg = moments.exp_avg * c.beta1 + g.clone() * (1.0 - c.beta1);
        let exp_avg_sq = moments.exp_avg_sq * c.beta2 + g.square() * (1.0 - c.beta2);
        let bias1 = 1.0 - c.beta1.powi(step as i32);
        let bias2 = 1.0 - c.beta2.powi(step as i32);
        // PyTorch's formulation: p ← p(1 − lr·wd) − lr/bias1 · m / (sqrt(v)/sqrt(bias2) + eps).
        let denom = (exp_avg_sq.clone().sqrt() / bias2.sqrt()).add_scalar(c.eps);
        let decayed = p * (1.0 - group.lr * group.weight_decay);
        let updated = decayed - (exp_avg.clone() / denom) * (group.lr / bias1);
        self.optim.moments.insert(
            key,
            Moments {
                exp_avg,
                exp_avg_sq,
                step,
            },
        );
        let mut updated: Tensor<D> = updated.reshape(dims);
        if was_autodiff {
            updated = Tensor::from_inner(updated);
            if require_grad {
                updated = updated.require_grad();
            }
        }
        Ok(Param::from_mapped_value(id, updated, mapper))
    }
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            moments: HashMap::new(),
        }
    }

    fn clip(&self, mut grads: HashMap<String, Tensor<1>>) -> (GradTable, Option<Tensor<1>>) {
        let Some(first) = grads.values().next() else {
            return (GradTable { grads }, None);
        };
        let device = first.device();
        let total = grads
            .values()
            .map(|g| g.clone().square().sum())
            .fold(Tensor::<1>::zeros([1], &device), |acc, s| acc + s);
        let norm = total.sqrt();
        if let Some(max) = self.config.max_grad_norm {
            // Scale by min(1, max / (norm + 1e-6)) on the device: no readback in the step.
            let scale = (norm.clone().add_scalar(1e-6).recip() * max).clamp_max(1.0);
            for g in grads.values_mut() {
                *g = g.clone() * scale.clone();
            }
        }
        (GradTable { grads }, Some(norm))
    }

    /// One AdamW step on a backbone or a classifier. `policy` gives each parameter's
    /// learning rate and weight decay by official key (`None` = frozen; a classifier's keys
    /// are `vit_nepa.…`, `fc_norm.*`, `classifier.*`). Gathers the gradients, clips them by
    /// their global norm, updates. Returns the model and the pre-clipping gradient norm (a
    /// `[1]` tensor, read it when convenient).
    pub fn step<M: Walkable>(
        &mut self,
        model: M,
        grads: &Gradients,
        policy: impl Fn(&str) -> Option<ParamGroup>,
    ) -> (M, Option<Tensor<1>>) {
        let mut gather = GradGather {
            grads,
            policy: &policy,
            out: HashMap::new(),
        };
        let model = model
            .walk_params(&mut gather)
            .expect("visiting cannot fail");
        let (table, norm) = self.clip(gather.out);
        let mut updater = Updater {
            optim: self,
            grads: &table,
            policy: &policy,
        };
        let model = model
            .walk_params(&mut updater)
            .expect("updating cannot fail");
        (model, norm)
    }

    /// The optimizer state as tensors to save: `exp_avg.<key>` and `exp_avg_sq.<key>`
    /// (flattened) and `step.<key>` (a one-element f32 tensor).
    pub fn state_tensors(&self) -> Vec<ExportTensor> {
        let mut keys: Vec<&String> = self.moments.keys().collect();
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            let m = &self.moments[key];
            let n = m.exp_avg.dims()[0];
            out.push(ExportTensor {
                key: format!("exp_avg.{key}"),
                shape: vec![n],
                values: m.exp_avg.clone(),
            });
            out.push(ExportTensor {
                key: format!("exp_avg_sq.{key}"),
                shape: vec![n],
                values: m.exp_avg_sq.clone(),
            });
            out.push(ExportTensor {
                key: format!("step.{key}"),
                shape: vec![1],
                values: Tensor::from_data(
                    TensorData::new(vec![m.step as f32], [1]),
                    &m.exp_avg.device(),
                ),
            });
        }
        out
    }

    /// Restores the state written by [`AdamW::state_tensors`] (as safetensors bytes).
    ///
    /// Every tensor is checked before use: F32 only; for each parameter key, `step.<key>`
    /// holds exactly one finite, non-negative whole number (at most [`MAX_STATE_STEP`]), and
    /// `exp_avg.<key>` and `exp_avg_sq.<key>` both exist, are 1-D, have the same length and
    /// hold finite values (`exp_avg_sq` also non-negative). A tensor with any other name is
    /// an error naming it. Check the result against the model with
    /// [`AdamW::check_against`] before training.
    pub fn load_state(
        config: AdamWConfig,
        bytes: &[u8],
        device: &burn::tensor::Device,
    ) -> Result<Self, NepaError> {
        let file = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| NepaError::Parse(format!("optimizer state: {e}")))?;
        let bad = |name: &str, what: String| {
            NepaError::Parse(format!("optimizer state tensor `{name}` {what}"))
        };
        let read = |name: &str| -> Result<(Vec<usize>, Vec<f32>), NepaError> {
            let view = file.tensor(name).map_err(|_| NepaError::MissingTensor {
                key: name.to_string(),
                expected: vec![],
                hint: " (optimizer state)".into(),
            })?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(bad(
                    name,
                    format!("has dtype {:?}; expected F32", view.dtype()),
                ));
            }
            let expected = view
                .shape()
                .iter()
                .try_fold(4usize, |n, &d| n.checked_mul(d));
            if expected != Some(view.data().len()) {
                return Err(bad(
                    name,
                    format!(
                        "has {} bytes of data for shape {:?}",
                        view.data().len(),
                        view.shape()
                    ),
                ));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(bad(name, format!("holds a non-finite value ({v})")));
            }
            Ok((view.shape().to_vec(), values))
        };
        let mut names = file.names();
        names.sort_unstable();
        let mut moments = HashMap::new();
        for &name in &names {
            let Some(key) = name.strip_prefix("step.") else {
                // Moments are read with their step; anything else is not optimizer state.
                let key = name
                    .strip_prefix("exp_avg_sq.")
                    .or_else(|| name.strip_prefix("exp_avg."));
                match key {
                    Some(key) if names.contains(&format!("step.{key}").as_str()) => continue,
                    Some(key) => {
                        return Err(NepaError::MissingTensor {
                            key: format!("step.{key}"),
                            expected: vec![1],
                            hint: format!(" (optimizer state has `{name}` but no step for it)"),
                        });
                    }
                    None => {
                        return Err(bad(
                            name,
                            "is not optimizer state (expected step.*, exp_avg.*, exp_avg_sq.*)"
                                .into(),
                        ));
                    }
                }
            };
            let (_, step) = read(name)?;
            let step = match step[..] {
                [s] if s >= 0.0 && s.fract() == 0.0 && s <= MAX_STATE_STEP as f32 => s as u64,
                [s] => {
                    return Err(bad(
                        name,
                        format!("is {s}; a step count is a whole number in 0..={MAX_STATE_STEP}"),
                    ));
                }
                _ => {
                    return Err(bad(
                        name,
                        format!("has {} values; a step count is one value", step.len()),
                    ));
                }
            };
            let avg_name = format!("exp_avg.{key}");
            let sq_name = format!("exp_avg_sq.{key}");
            let (avg_shape, exp_avg) = read(&avg_name)?;
            let (sq_shape, exp_avg_sq) = read(&sq_name)?;
            let n = exp_avg.len();
            if avg_shape != [n] {
                return Err(bad(
                    &avg_name,
                    format!("has shape {avg_shape:?}; expected 1-D"),
                ));
            }
            if sq_shape != [n] {
                return Err(NepaError::ShapeMismatch {
                    key: sq_name,
                    expected: vec![n],
                    found: sq_shape,
                });
            }
            if let Some(v) = exp_avg_sq.iter().find(|v| **v < 0.0) {
                return Err(bad(&sq_name, format!("holds a negative value ({v})")));
            }
            moments.insert(
                key.to_string(),
                Moments {
                    exp_avg: Tensor::from_data(TensorData::new(exp_avg, [n]), device),
                    exp_avg_sq: Tensor::from_data(TensorData::new(exp_avg_sq, [n]), device),
                    step,
                },
            );
        }
        Ok(Self { config, moments })
    }

    /// Checks the state against the model it will update, before training starts: every key
    /// must be one of the model's parameters (official names, as [`AdamW::step`] uses them)
    /// with as many elements as its moments. Otherwise the first update would fail deep
    /// inside the tensor library.
    pub fn check_against<M: Walkable + Clone>(&self, model: &M) -> Result<(), NepaError> {
        let mut sizes = ParamSizes(HashMap::new());
        model.clone().walk_params(&mut sizes)?;
        let mut keys: Vec<&String> = self.moments.keys().collect();
        keys.sort();
        for key in keys {
            let n = self.moments[key].exp_avg.dims()[0];
            match sizes.0.get(key.as_str()) {
                None => {
                    return Err(NepaError::Input(format!(
                        "the optimizer state has moments for `{key}`, which this model does \
                         not have (was the state saved with another model?)"
                    )));
                }
                Some(&expected) if expected != n => {
                    return Err(NepaError::ShapeMismatch {
                        key: format!("exp_avg.{key}"),
                        expected: vec![expected],
                        found: vec![n],
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// The largest per-parameter step count [`AdamW::load_state`] accepts (2^30): far beyond
/// any run, and the bias corrections raise β to it as an `i32`.
pub const MAX_STATE_STEP: u64 = 1 << 30;

/// Element counts of a model's parameters by official key.
struct ParamSizes(HashMap<String, usize>);

impl ParamVisitor for ParamSizes {
    fn visit<const D: usize>(
        &mut self,
        key: String,
        param: Param<Tensor<D>>,
        _transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError> {
        self.0.insert(key, param.dims().iter().product());
        Ok(param)
    }
}

/// What one training step returns: the updated model, the loss and the gradient norm
/// (before clipping), both still on the device so the caller chooses when to read them.
pub struct StepOutput<M> {
    pub model: M,
    pub loss: Tensor<1>,
    pub grad_norm: Option<Tensor<1>>,
    /// Mean pairwise cosine between the batch's patch embeddings z (pretraining only): near
    /// 1 means the embeddings collapsed to one vector, the failure stop-grad prevents.
    pub embedding_similarity: Option<Tensor<1>>,
    /// The logits of the batch, detached (fine-tuning only): accuracy without a second pass.
    pub logits: Option<Tensor<2>>,
}

/// Mean pairwise cosine similarity (self-pairs included) of all patch embeddings in a batch:
/// `‖mean of unit vectors‖²`, cheap and a direct read of representation collapse.
pub fn embedding_similarity(input_embedding: Tensor<3>) -> Tensor<1> {
    let [b, t, d] = input_embedding.dims();
    let patches = input_embedding.narrow(1, 1, t - 1);
    let unit = crate::loss::l2_normalize(patches, 1e-12).reshape([b * (t - 1), d]);
    unit.mean_dim(0).square().sum()
}

/// One NEPA pretraining step: forward (with `forward`'s training noise), the prediction loss,
/// backward, and AdamW at learning rate `lr` with `weight_decay` except on biases, norms and
/// LayerScale (docs/nepa.md §4).
pub fn pretrain_step(
    model: NepaModel,
    optim: &mut AdamW,
    pixels: Tensor<4>,
    lr: f64,
    weight_decay: f64,
    forward: &crate::model::ForwardOptions,
    loss_options: crate::loss::LossOptions,
) -> StepOutput<NepaModel> {
    let out = model.forward(pixels, forward);
    let similarity = embedding_similarity(out.input_embedding.clone().detach());
    let loss =
        crate::loss::prediction_loss(out.last_hidden_state, out.input_embedding, loss_options);
    let grads = loss.backward();
    let (model, grad_norm) = optim.step(model, &grads, |key| {
        Some(ParamGroup {
            lr,
            weight_decay: if is_no_decay(key) { 0.0 } else { weight_decay },
        })
    });
    StepOutput {
        model,
        loss: loss.detach(),
        grad_norm,
        embedding_similarity: Some(similarity),
        logits: None,
    }
}

/// One supervised fine-tuning step: cross-entropy against soft targets `[B, classes]`
/// (smoothed one-hot, or mixed by Mixup/CutMix), backward, AdamW with the per-parameter
/// `policy` (layer-wise decay, frozen parameters).
pub fn finetune_step(
    model: NepaClassifier,
    optim: &mut AdamW,
    pixels: Tensor<4>,
    targets: Tensor<2>,
    forward: &crate::model::ForwardOptions,
    policy: impl Fn(&str) -> Option<ParamGroup>,
) -> StepOutput<NepaClassifier> {
    let logits = model.forward(pixels, forward);
    let loss = crate::recipe::soft_target_cross_entropy(logits.clone(), targets);
    let grads = loss.backward();
    let (model, grad_norm) = optim.step(model, &grads, policy);
    StepOutput {
        model,
        loss: loss.detach(),
        grad_norm,
        embedding_similarity: None,
        logits: Some(logits.detach()),
    }
}

/// Fine-tuning schedule and parameter groups (docs/nepa.md §5): layer-wise learning-rate decay
/// with the official per-group warmup, a separate head learning rate for `classifier` and
/// the final `layernorm`, no decay on 1-D parameters, and an optionally frozen patch
/// embedding.
#[derive(Clone, Debug)]
pub struct FinetuneSchedule {
    pub base_lr: f64,
    /// Learning rate of `classifier.*` and the final `vit_nepa.layernorm.*` (not decayed by
    /// depth). The official default is 1e-3.
    pub head_lr: f64,
    pub layer_decay: f64,
    pub weight_decay: f64,
    pub num_layers: usize,
    pub total_steps: usize,
    pub warmup_steps: usize,
    pub freeze_patch_embed: bool,
}

impl FinetuneSchedule {
    /// The learning rate and weight decay of parameter `key` at `step` (`None`: frozen).
    pub fn group(&self, key: &str, step: usize) -> Option<ParamGroup> {
        let bare = key
            .strip_prefix(crate::checkpoint::BACKBONE_PREFIX)
            .unwrap_or(key);
        if self.freeze_patch_embed && bare.starts_with("embeddings.patch_embeddings.") {
            return None;
        }
        let weight_decay = if is_no_decay(key) {
            0.0
        } else {
            self.weight_decay
        };
        let is_head = key.starts_with("classifier.") || bare.starts_with("layernorm.");
        let lr = if is_head {
            // The head groups (classifier, final LayerNorm) warm up in one step, as the
            // official scheduler gives every group with a full-size factor (docs/nepa.md §5).
            warmup_cosine(step, self.total_steps, 1, self.head_lr, 0.0)
        } else {
            // Block i (depth i + 1) gets decay^(L − 1 − i), the embeddings decay^L, and
            // fc_norm (depth L + 1) the base rate.
            let depth = layer_id(key, self.num_layers);
            let exponent = self.num_layers.saturating_sub(depth) as i32;
            let factor = self.layer_decay.powi(exponent);
            llrd_cosine_warmup(
                step,
                self.total_steps,
                self.warmup_steps,
                self.base_lr,
                factor,
            )
        };
        Some(ParamGroup { lr, weight_decay })
    }
}

/// Linear warmup from 0 then cosine decay to `min_lr` (HF `cosine`, docs/nepa.md §4): the
/// rate at 0-based `step < warmup` is `peak · step / warmup`, so step 0 has rate 0 as in
/// the official scripts.
pub fn warmup_cosine(step: usize, total: usize, warmup: usize, peak: f64, min_lr: f64) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    min_lr + (peak - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// The official fine-tuning schedule `llrd_cosine_warmup` (docs/nepa.md §5) for one parameter
/// group whose layer-decay factor is `factor` (= llrd^(L−1−i) for block i): peak
/// `factor·lr`, a warmup of `W − round(W·min(factor, 1))` steps (at least 1) so groups near
/// the output warm up almost at once, then cosine to 0.
pub fn llrd_cosine_warmup(
    step: usize,
    total: usize,
    warmup: usize,
    base_lr: f64,
    factor: f64,
) -> f64 {
    let group_warmup =
        (warmup as f64 - (warmup as f64 * factor.min(1.0)).round()).max(1.0) as usize;
    warmup_cosine(step, total, group_warmup, base_lr * factor, 0.0)
}

/// Cross-entropy with label smoothing `smoothing` (0 = plain), mean over the batch: the
/// soft-target loss of [`crate::recipe`] against smoothed one-hot rows. Panics on a label
/// outside the logits' classes.
pub fn cross_entropy(logits: Tensor<2>, labels: &[usize], smoothing: f64) -> Tensor<1> {
    let [b, c] = logits.dims();
    assert_eq!(b, labels.len(), "one label per logit row");
    let target =
        crate::recipe::smooth_one_hot(labels, c, smoothing).unwrap_or_else(|e| panic!("{e}"));
    let target = Tensor::<2>::from_data(TensorData::new(target, [b, c]), &logits.device());
    crate::recipe::soft_target_cross_entropy(logits, target)
}

/// Reads a tensor back as f32 values, asynchronously: the one way that works on every
/// device (a synchronous read panics on WebGPU in the browser); natively the future is ready
/// at once and a plain `block_on` runs it.
pub async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, NepaError> {
    tensor
        .into_data_async()
        .await
        .map_err(|e| NepaError::Readback(format!("{e:?}")))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| NepaError::Readback(format!("{e:?}")))
}

/// The first value of a read-back tensor (a loss, a norm); NaN if there is none, so a
/// divergence guard treats a missing value as a bad step.
pub async fn read_scalar<const D: usize>(tensor: Tensor<D>) -> Result<f32, NepaError> {
    Ok(read_f32(tensor).await?.first().copied().unwrap_or(f32::NAN))
}

/// Top-1 predictions of a batch of logits (host side). With `classes == 0` there is no
/// prediction to make: the result is empty.
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    if classes == 0 {
        return Vec::new();
    }
    logits
        .chunks(classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_decay_follows_the_official_rule() {
        assert!(is_no_decay(
            "encoder.layer.0.attention.attention.query.bias"
        ));
        assert!(is_no_decay("encoder.layer.3.layernorm_before.weight"));
        assert!(is_no_decay(
            "encoder.layer.3.attention.attention.q_norm.weight"
        ));
        assert!(is_no_decay("encoder.layer.3.output.layer_scale.lambda1"));
        assert!(is_no_decay("layernorm.weight"));
        assert!(is_no_decay("fc_norm.weight"));
        assert!(!is_no_decay("embeddings.cls_token"));
        assert!(!is_no_decay(
            "embeddings.patch_embeddings.projection.weight"
        ));
        assert!(!is_no_decay("encoder.layer.0.intermediate.up_proj.weight"));
    }

    #[test]
    fn layer_ids() {
        assert_eq!(layer_id("embeddings.cls_token", 12), 0);
        assert_eq!(
            layer_id("vit_nepa.encoder.layer.11.output.dense.weight", 12),
            12
        );
        assert_eq!(layer_id("classifier.weight", 12), 13);
        assert_eq!(layer_id("vit_nepa.layernorm.bias", 12), 13);
    }

    #[test]
    fn schedules() {
        // Warmup reaches the peak at the end of warmup, cosine ends at min_lr.
        // Warmup starts from 0 and reaches the peak at step W; cosine ends at min_lr.
        assert_eq!(warmup_cosine(0, 100, 10, 1.0, 0.0), 0.0);
        assert!((warmup_cosine(1, 100, 10, 1.0, 0.0) - 0.1).abs() < 1e-12);
        assert!((warmup_cosine(9, 100, 10, 1.0, 0.0) - 0.9).abs() < 1e-12);
        assert!((warmup_cosine(10, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!(warmup_cosine(55, 100, 10, 1.0, 0.0) < 0.51);
        assert!(warmup_cosine(100, 100, 10, 1.0, 0.1) - 0.1 < 1e-12);
        // LLRD: a group with factor 1 warms up in one step; a deep one takes ~W steps.
        assert_eq!(llrd_cosine_warmup(0, 100, 20, 1.0, 1.0), 0.0);
        assert!((llrd_cosine_warmup(1, 100, 20, 1.0, 1.0) - 1.0).abs() < 1e-12);
        assert!(llrd_cosine_warmup(1, 100, 20, 1.0, 0.01) < 0.001);
    }

    #[test]
    fn finetune_groups_follow_the_official_layer_decay() {
        let schedule = FinetuneSchedule {
            base_lr: 1.0,
            head_lr: 0.5,
            layer_decay: 0.5,
            weight_decay: 0.05,
            num_layers: 4,
            total_steps: 1000,
            warmup_steps: 1,
            freeze_patch_embed: true,
        };
        let peak = |key: &str| schedule.group(key, 1).map(|g| g.lr);
        assert_eq!(
            peak("vit_nepa.embeddings.patch_embeddings.projection.weight"),
            None
        );
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-4;
        assert!(close(peak("vit_nepa.embeddings.cls_token"), 0.5f64.powi(4)));
        assert!(close(
            peak("vit_nepa.encoder.layer.0.output.dense.weight"),
            0.5f64.powi(3)
        ));
        assert!(close(
            peak("vit_nepa.encoder.layer.3.output.dense.weight"),
            1.0
        ));
        assert!(close(peak("fc_norm.weight"), 1.0));
        assert!(close(peak("classifier.weight"), 0.5));
        assert!(close(peak("vit_nepa.layernorm.weight"), 0.5));
        assert_eq!(schedule.group("fc_norm.bias", 1).unwrap().weight_decay, 0.0);
        assert_eq!(
            schedule.group("classifier.weight", 1).unwrap().weight_decay,
            0.05
        );
    }

    #[test]
    fn per_group_warmup_at_steps_0_1_and_w() {
        // W = 10 of 100 steps, 4 blocks, layer decay 0.5 (docs/nepa.md §5).
        let schedule = FinetuneSchedule {
            base_lr: 1.0,
            head_lr: 0.5,
            layer_decay: 0.5,
            weight_decay: 0.05,
            num_layers: 4,
            total_steps: 100,
            warmup_steps: 10,
            freeze_patch_embed: true,
        };
        let lr = |key: &str, step| schedule.group(key, step).unwrap().lr;
        let cosine =
            |done: f64, span: f64| 0.5 * (1.0 + (std::f64::consts::PI * done / span).cos());
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // Top block: factor 1 → group warmup max(1, 10 − 10) = 1 step.
        let top = "vit_nepa.encoder.layer.3.output.dense.weight";
        assert_eq!(lr(top, 0), 0.0);
        assert!(close(lr(top, 1), 1.0));
        assert!(close(lr(top, 10), cosine(9.0, 99.0)));
        // Block 0: factor 0.5³ = 0.125 → warmup 10 − round(1.25) = 9 steps.
        let bottom = "vit_nepa.encoder.layer.0.output.dense.weight";
        assert_eq!(lr(bottom, 0), 0.0);
        assert!(close(lr(bottom, 1), 0.125 / 9.0));
        assert!(close(lr(bottom, 10), 0.125 * cosine(1.0, 91.0)));
        // Head groups: one-step warmup at the head rate.
        for head in ["classifier.weight", "vit_nepa.layernorm.bias"] {
            assert_eq!(lr(head, 0), 0.0);
            assert!(close(lr(head, 1), 0.5));
            assert!(close(lr(head, 10), 0.5 * cosine(9.0, 99.0)));
        }
    }

    #[test]
    fn argmax() {
        assert_eq!(argmax_rows(&[0.1, 0.9, 0.0, 2.0, 1.0, 3.0], 3), vec![1, 2]);
        assert_eq!(argmax_rows(&[0.1, 0.9], 0), Vec::<usize>::new());
    }
}
