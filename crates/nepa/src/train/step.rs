//! One optimizer update, in one forward/backward pass or accumulated over micro-batches
//! (docs/performance.md §3): each micro-batch's loss is weighted by its share of the batch,
//! so the summed gradients are the batch's gradient and the update is the one a single pass
//! over the whole batch gives, with the memory of one micro-batch. Under f16 the loss is
//! also multiplied by the loss scale before backward, and the scale divided out of the
//! gradients before clipping.

use burn::tensor::{Gradients, Tensor};

use super::adamw::{AdamW, GradientSum};
use super::{ParamGroup, flush, pretrain_group};
use crate::checkpoint::Walkable;
use crate::classifier::NepaClassifier;
use crate::model::{ForwardOptions, NepaModel};

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

/// How one update is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdatePlan {
    /// Forward/backward passes the batch is split into (1: the whole batch at once).
    pub micro_batches: usize,
    /// Factor on the loss before backward, divided out of the gradients (1: none).
    pub loss_scale: f64,
}

impl Default for UpdatePlan {
    fn default() -> Self {
        Self {
            micro_batches: 1,
            loss_scale: 1.0,
        }
    }
}

/// `(start, len)` of `parts` consecutive slices of a batch of `batch`, as equal as they can
/// be (the first ones one larger). At most `batch` slices: none is empty.
pub fn micro_batches(batch: usize, parts: usize) -> Vec<(usize, usize)> {
    let parts = parts.clamp(1, batch.max(1));
    let (base, extra) = (batch / parts, batch % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let slice = (start, len);
            start += len;
            slice
        })
        .collect()
}

/// The rows `slice` = `(start, len)` of a batch tensor (the tensor itself when it is all of it).
pub fn micro_batch<const D: usize>(batch: &Tensor<D>, (start, len): (usize, usize)) -> Tensor<D> {
    if start == 0 && len == batch.dims()[0] {
        batch.clone()
    } else {
        batch.clone().narrow(0, start, len)
    }
}

/// Sum of the unit vectors of a batch's patch embeddings `[1, D]` and how many there are.
fn unit_embedding_sum(input_embedding: Tensor<3>) -> (Tensor<2>, usize) {
    let [b, t, d] = input_embedding.dims();
    let patches = input_embedding.narrow(1, 1, t - 1);
    let unit = crate::loss::l2_normalize(patches, 1e-12).reshape([b * (t - 1), d]);
    (unit.sum_dim(0), b * (t - 1))
}

/// Mean pairwise cosine similarity (self-pairs included) of all patch embeddings in a batch:
/// `‖mean of unit vectors‖²`, cheap and a direct read of representation collapse.
pub fn embedding_similarity(input_embedding: Tensor<3>) -> Tensor<1> {
    let (sum, n) = unit_embedding_sum(input_embedding);
    sum.div_scalar(n as f64).square().sum()
}

/// Runs `pass` on each micro-batch of the batch of `batch` items, backward on its loss
/// weighted by its share (and the loss scale), and sums the gradients. `pass` gets the model,
/// the slice and its weight, and returns the model, the micro-batch's loss and whatever the
/// caller collects from it.
fn accumulate<M: Walkable, T>(
    mut model: M,
    batch: usize,
    plan: UpdatePlan,
    policy: &impl Fn(&str) -> Option<ParamGroup>,
    mut pass: impl FnMut(&M, usize, usize) -> (Tensor<1>, T),
) -> (M, GradientSum, Tensor<1>, Vec<T>) {
    let mut sum: Option<GradientSum> = None;
    let mut loss_sum: Option<Tensor<1>> = None;
    let mut collected = Vec::new();
    for (start, len) in micro_batches(batch, plan.micro_batches) {
        let (loss, extra) = pass(&model, start, len);
        let device = loss.device();
        let share = len as f64 / batch as f64;
        let weighted = |t: Tensor<1>, f: f64| if f == 1.0 { t } else { t.mul_scalar(f) };
        flush(&device);
        let grads: Gradients = weighted(loss.clone(), share * plan.loss_scale).backward();
        flush(&device);
        let (m, gathered) = GradientSum::gather(model, &grads, policy);
        model = m;
        sum = Some(match sum {
            None => gathered,
            Some(s) => s.plus(gathered),
        });
        let loss = weighted(loss.detach(), share);
        loss_sum = Some(match loss_sum {
            None => loss,
            Some(l) => l + loss,
        });
        collected.push(extra);
    }
    let sum = sum.expect("a batch has at least one micro-batch");
    let loss = loss_sum.expect("a batch has at least one micro-batch");
    (model, sum.scale(1.0 / plan.loss_scale), loss, collected)
}

/// One NEPA pretraining step: forward (with `forward`'s training noise), the prediction loss,
/// backward, and AdamW at learning rate `lr` with `weight_decay` except on biases, norms and
/// LayerScale (docs/nepa.md §4); over `plan.micro_batches` slices of the batch.
#[allow(clippy::too_many_arguments)]
pub fn pretrain_step(
    model: NepaModel,
    optim: &mut AdamW,
    pixels: Tensor<4>,
    lr: f64,
    weight_decay: f64,
    forward: &ForwardOptions,
    loss_options: crate::loss::LossOptions,
    plan: UpdatePlan,
) -> StepOutput<NepaModel> {
    let device = pixels.device();
    let batch = pixels.dims()[0];
    let policy = |key: &str| pretrain_group(key, lr, weight_decay);
    let (model, grads, loss, units) = accumulate(model, batch, plan, &policy, |m, start, len| {
        let out = m.forward(micro_batch(&pixels, (start, len)), forward);
        let units = unit_embedding_sum(out.input_embedding.clone().detach());
        let loss =
            crate::loss::prediction_loss(out.last_hidden_state, out.input_embedding, loss_options);
        (loss, units)
    });
    let count: usize = units.iter().map(|(_, n)| n).sum();
    let unit_sum = units
        .into_iter()
        .map(|(s, _)| s)
        .reduce(|a, b| a + b)
        .expect("a batch has at least one micro-batch");
    let similarity = unit_sum.div_scalar(count as f64).square().sum();
    let (model, grad_norm) = optim.step_gathered(model, grads, policy);
    flush(&device);
    StepOutput {
        model,
        loss,
        grad_norm,
        embedding_similarity: Some(similarity),
        logits: None,
    }
}

/// One supervised fine-tuning step: cross-entropy against soft targets `[B, classes]`
/// (smoothed one-hot, or mixed by Mixup/CutMix), backward, AdamW with the per-parameter
/// `policy` (layer-wise decay, frozen parameters); over `plan.micro_batches` slices.
pub fn finetune_step(
    model: NepaClassifier,
    optim: &mut AdamW,
    pixels: Tensor<4>,
    targets: Tensor<2>,
    forward: &ForwardOptions,
    policy: impl Fn(&str) -> Option<ParamGroup>,
    plan: UpdatePlan,
) -> StepOutput<NepaClassifier> {
    let device = pixels.device();
    let batch = pixels.dims()[0];
    let (model, grads, loss, mut logits) =
        accumulate(model, batch, plan, &policy, |m, start, len| {
            let (x, y) = (
                micro_batch(&pixels, (start, len)),
                micro_batch(&targets, (start, len)),
            );
            let logits = m.forward(x, forward);
            let loss = crate::recipe::soft_target_cross_entropy(logits.clone(), y);
            (loss, logits.detach())
        });
    let (model, grad_norm) = optim.step_gathered(model, grads, policy);
    flush(&device);
    StepOutput {
        model,
        loss,
        grad_norm,
        embedding_similarity: None,
        logits: Some(if logits.len() == 1 {
            logits.pop().expect("one micro-batch")
        } else {
            Tensor::cat(logits, 0)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batches_cover_the_batch_once() {
        assert_eq!(micro_batches(8, 1), vec![(0, 8)]);
        assert_eq!(micro_batches(8, 4), vec![(0, 2), (2, 2), (4, 2), (6, 2)]);
        assert_eq!(micro_batches(7, 3), vec![(0, 3), (3, 2), (5, 2)]);
        assert_eq!(micro_batches(2, 5), vec![(0, 1), (1, 1)], "never empty");
        assert_eq!(micro_batches(3, 0), vec![(0, 3)]);
    }
}
