//! AdamW keyed by official parameter names (docs/nepa.md §4: β = (0.9, 0.95), eps 1e-8,
//! decoupled weight decay), with global-norm gradient clipping and per-parameter learning
//! rate and weight decay.
//!
//! It is written here rather than taken from burn-optim so that its state can be read back
//! asynchronously and saved as safetensors under the official parameter names, which works
//! the same in the browser and natively.

use std::collections::{BTreeMap, HashMap};

use burn::module::Param;
use burn::tensor::{Gradients, Tensor, TensorData};

use super::ParamGroup;
use crate::checkpoint::{ExportTensor, ParamVisitor, Walkable};
use crate::error::NepaError;
use crate::kernels::{AdamWStep, adamw_update};

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

/// Gradients of the trainable parameters, flattened, keyed by name, after clipping. Ordered:
/// the clipping reduction must issue its operations in the same order every step, or Burn's
/// fusion sees a new operation stream each step and compiles new kernels for it (a
/// `HashMap`'s order changes with each map; docs/performance.md §2).
struct GradTable {
    grads: BTreeMap<String, Tensor<1>>,
}

/// The trainable parameters' gradients gathered from one or more backward passes, flattened,
/// by official key: gradient accumulation sums the micro-batches' gradients here before one
/// update, and loss scaling divides the scale out here (docs/performance.md §3).
pub struct GradientSum {
    grads: BTreeMap<String, Tensor<1>>,
}

impl GradientSum {
    /// The gradients `grads` holds for the parameters of `model` that `policy` trains.
    pub fn gather<M: Walkable>(
        model: M,
        grads: &Gradients,
        policy: &impl Fn(&str) -> Option<ParamGroup>,
    ) -> (M, Self) {
        let mut gather = GradGather {
            grads,
            policy,
            out: BTreeMap::new(),
        };
        let model = model
            .walk_params(&mut gather)
            .expect("visiting cannot fail");
        (model, Self { grads: gather.out })
    }

    /// Adds `other` parameter by parameter (a key only one side has is kept as it is).
    pub fn plus(mut self, other: Self) -> Self {
        for (key, grad) in other.grads {
            let sum = match self.grads.remove(&key) {
                Some(mine) => mine + grad,
                None => grad,
            };
            self.grads.insert(key, sum);
        }
        self
    }

    /// Every gradient times `factor` (no operation when it is 1).
    pub fn scale(mut self, factor: f64) -> Self {
        if factor != 1.0 {
            for g in self.grads.values_mut() {
                *g = g.clone().mul_scalar(factor);
            }
        }
        self
    }

    /// How many parameters have a gradient.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }
}

struct GradGather<'g, F: Fn(&str) -> Option<ParamGroup>> {
    grads: &'g Gradients,
    policy: &'g F,
    out: BTreeMap<String, Tensor<1>>,
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
        // `from_inner` below gives the default strategy (none); a parameter of a run with
        // gradient checkpointing must keep its own, or the next forward pass mixes strategies
        // in one operation, which Burn refuses with a panic.
        let strategy = tensor.gradient_checkpointing_strategy();
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
        let constants = AdamWStep {
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            lr: group.lr,
            weight_decay: group.weight_decay,
            bias1: 1.0 - c.beta1.powi(step as i32),
            bias2: 1.0 - c.beta2.powi(step as i32),
        };
        // PyTorch's formulation: p ← p(1 − lr·wd) − lr/bias1 · m / (sqrt(v)/sqrt(bias2) + eps),
        // in one pass on Flex and as Burn's operations elsewhere (docs/performance.md §8).
        let [updated, exp_avg, exp_avg_sq] =
            adamw_update(p, g, moments.exp_avg, moments.exp_avg_sq, &constants);
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
            if let Some(strategy) = strategy {
                updated = updated.with_gradient_checkpointing_strategy(strategy);
            }
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

    fn clip(&self, mut grads: BTreeMap<String, Tensor<1>>) -> (GradTable, Option<Tensor<1>>) {
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
        self.step_marked(model, grads, policy, &mut || {})
    }

    /// [`AdamW::step`], calling `mark()` once the gradients are gathered and clipped
    /// and before the update: the step profiler (`nepa bench --profile`) times the two apart.
    pub fn step_marked<M: Walkable>(
        &mut self,
        model: M,
        grads: &Gradients,
        policy: impl Fn(&str) -> Option<ParamGroup>,
        mark: &mut dyn FnMut(),
    ) -> (M, Option<Tensor<1>>) {
        let (model, sum) = GradientSum::gather(model, grads, &policy);
        self.step_gathered_marked(model, sum, policy, mark)
    }

    /// [`AdamW::step`] on gradients already gathered (and summed over micro-batches).
    pub fn step_gathered<M: Walkable>(
        &mut self,
        model: M,
        grads: GradientSum,
        policy: impl Fn(&str) -> Option<ParamGroup>,
    ) -> (M, Option<Tensor<1>>) {
        self.step_gathered_marked(model, grads, policy, &mut || {})
    }

    fn step_gathered_marked<M: Walkable>(
        &mut self,
        model: M,
        grads: GradientSum,
        policy: impl Fn(&str) -> Option<ParamGroup>,
        mark: &mut dyn FnMut(),
    ) -> (M, Option<Tensor<1>>) {
        let (table, norm) = self.clip(grads.grads);
        mark();
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
