//! The NEPA objective (docs/nepa.md §3.1): −mean cos(ẑ_t, stopgrad(z_{t+1})).

use burn::tensor::Tensor;

/// Which pairs the loss compares, and whether the target is detached.
/// The defaults are the paper's; the switches exist for the ablations of docs/nepa.md §3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossOptions {
    /// Pair ẑ_t with z_{t+1} (`true`) or with z_t (`false`: the trivial copy task).
    pub shift: bool,
    /// Detach the target (`false` lets gradients reach the embedding through the target,
    /// which collapses all embeddings to one vector).
    pub stop_grad: bool,
}

impl Default for LossOptions {
    fn default() -> Self {
        Self {
            shift: true,
            stop_grad: true,
        }
    }
}

/// `x / max(‖x‖, eps)` over the last dimension (as `F.normalize`, eps 1e-12).
pub fn l2_normalize(x: Tensor<3>, eps: f64) -> Tensor<3> {
    let norm = x.clone().square().sum_dim(2).sqrt().clamp_min(eps);
    x / norm
}

/// Per-position cosine `[B, T']` between `prediction` and `target` (same shape).
pub fn cosine(prediction: Tensor<3>, target: Tensor<3>) -> Tensor<2> {
    let [b, t, _] = prediction.dims();
    (l2_normalize(prediction, 1e-12) * l2_normalize(target, 1e-12))
        .sum_dim(2)
        .reshape([b, t])
}

/// The pairs the loss compares: `(ẑ[:, :T−1], z[:, 1:])` with the shift, `(ẑ, z)` without.
pub fn loss_pairs(
    prediction: Tensor<3>,
    input_embedding: Tensor<3>,
    options: LossOptions,
) -> (Tensor<3>, Tensor<3>) {
    let target = if options.stop_grad {
        input_embedding.detach()
    } else {
        input_embedding
    };
    if options.shift {
        let [_, t, _] = prediction.dims();
        (prediction.narrow(1, 0, t - 1), target.narrow(1, 1, t - 1))
    } else {
        (prediction, target)
    }
}

/// The per-position negative cosine, `[B, T']`: the quantity whose mean is the loss
/// (the UI's predictability map is its negation).
pub fn prediction_loss_map(
    prediction: Tensor<3>,
    input_embedding: Tensor<3>,
    options: LossOptions,
) -> Tensor<2> {
    let (pred, target) = loss_pairs(prediction, input_embedding, options);
    cosine(pred, target).neg()
}

/// The scalar NEPA loss, shape `[1]`.
pub fn prediction_loss(
    prediction: Tensor<3>,
    input_embedding: Tensor<3>,
    options: LossOptions,
) -> Tensor<1> {
    prediction_loss_map(prediction, input_embedding, options).mean()
}
