//! Learning-rate schedules (docs/nepa.md §4–§5): linear warmup from 0 then cosine, and the
//! official fine-tuning parameter groups with layer-wise decay and per-group warmup.

use super::{ParamGroup, is_no_decay, layer_id};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
