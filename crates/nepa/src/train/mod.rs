//! Training pieces shared by the native trainer and the browser: the pretraining and
//! fine-tuning steps, the parameter groups (no decay on biases, norms and LayerScale;
//! layer-wise depth for fine-tuning), read-back helpers, and, in submodules, this crate's
//! AdamW (`adamw.rs`), the learning-rate schedules of docs/nepa.md §4–§5 (`schedule.rs`),
//! the steps with gradient accumulation (`step.rs`) and f16 loss scaling (`loss_scale.rs`).

mod adamw;
mod loss_scale;
mod schedule;
mod step;

pub use adamw::{AdamW, AdamWConfig, GradientSum, MAX_STATE_STEP};
pub use loss_scale::{LossScaler, ScaleVerdict, step_verdict};
pub use schedule::{FinetuneSchedule, llrd_cosine_warmup, warmup_cosine};
pub use step::{
    StepOutput, UpdatePlan, embedding_similarity, finetune_step, micro_batch, micro_batches,
    pretrain_step,
};

use burn::tensor::{Device, Tensor, TensorData, Transaction};

use crate::error::NepaError;

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

/// A pretraining parameter's group: `lr` everywhere, `weight_decay` except on biases, norms
/// and LayerScale (docs/nepa.md §4).
pub fn pretrain_group(key: &str, lr: f64, weight_decay: f64) -> Option<ParamGroup> {
    Some(ParamGroup {
        lr,
        weight_decay: if is_no_decay(key) { 0.0 } else { weight_decay },
    })
}

/// Hands the operations queued so far to the device, without waiting for them
/// (docs/performance.md §2). Burn's fusion backend otherwise queues a whole training step
/// (forward, backward, optimizer) before it plans fused kernels, and that planning grows
/// faster than the queue (measured on Mesa's lavapipe in docs/results/gpu.md). Eager
/// backends (Flex) have no queue: a no-op. An
/// error here means the device failed; the step's read-back reports it.
pub(crate) fn flush(device: &Device) {
    let _ = device.flush();
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
    let data = tensor
        .into_data_async()
        .await
        .map_err(|e| NepaError::Readback(format!("{e:?}")))?;
    host_f32(data)
}

/// Read-back data as f32 values.
fn host_f32(data: TensorData) -> Result<Vec<f32>, NepaError> {
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| NepaError::Readback(format!("{e:?}")))
}

/// The first value of a read-back tensor (a loss, a norm); NaN if there is none, so a
/// divergence guard treats a missing value as a bad step.
pub async fn read_scalar<const D: usize>(tensor: Tensor<D>) -> Result<f32, NepaError> {
    Ok(read_f32(tensor).await?.first().copied().unwrap_or(f32::NAN))
}

/// The first value of each of `tensors`, read back in one transaction: a training step waits
/// for the device once, not once per value (NaN for an empty tensor, as [`read_scalar`]).
pub async fn read_scalars(tensors: Vec<Tensor<1>>) -> Result<Vec<f32>, NepaError> {
    let transaction = tensors
        .into_iter()
        // One transaction holds tensors of one kind: read the values without their autodiff
        // association (a loss has one, a gradient norm does not).
        .fold(Transaction::default(), |t, tensor| {
            t.register(tensor.without_autodiff())
        });
    let data = transaction
        .execute_async()
        .await
        .map_err(|e| NepaError::Readback(format!("{e:?}")))?;
    data.into_iter()
        .map(|d| Ok(host_f32(d)?.first().copied().unwrap_or(f32::NAN)))
        .collect()
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
    fn argmax() {
        assert_eq!(argmax_rows(&[0.1, 0.9, 0.0, 2.0, 1.0, 3.0], 3), vec![1, 2]);
        assert_eq!(argmax_rows(&[0.1, 0.9], 0), Vec::<usize>::new());
    }
}
