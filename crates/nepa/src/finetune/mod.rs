//! Supervised fine-tuning (docs/nepa.md §5): one driver for `nepa finetune` and the page's
//! Fine-tune tab.
//!
//! - [`FinetuneSettings`]: every knob of the recipe, with the official values
//!   ([`FinetuneSettings::official`]) and a preset for small data sets
//!   ([`FinetuneSettings::small_data`]); docs/finetune-recipe.md says what differs and why.
//! - [`Finetuner`] (`tuner.rs`): the model and its optimizer, one update per call, in one of
//!   three modes (full with layer-wise lr decay, head only, LoRA).
//! - [`FinetuneRun`] (`run.rs`): the loop body both shells call: seeded batch order, the
//!   recipe's augmentation and label mixing, the step, the divergence guard, the EMA, and
//!   evaluation.

mod run;
mod tuner;

pub use crate::guard::StepOutcome;
pub use run::{
    FinetuneRecord, FinetuneRun, class_probabilities, eval_pixels, evaluate, mixup_config,
    train_transform,
};
pub use tuner::Finetuner;

use serde::{Deserialize, Serialize};

use crate::error::NepaError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinetuneMode {
    Full,
    HeadOnly,
    Lora,
}

impl FinetuneMode {
    pub const ALL: [FinetuneMode; 3] = [
        FinetuneMode::Lora,
        FinetuneMode::Full,
        FinetuneMode::HeadOnly,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FinetuneMode::Full => "full model, layer-wise lr decay (patch embedding frozen)",
            FinetuneMode::HeadOnly => "head only (backbone frozen)",
            FinetuneMode::Lora => "LoRA adapters + head",
        }
    }
}

/// Every setting of a fine-tuning run. The same struct is stored in a checkpoint's sidecar,
/// filled from `nepa finetune`'s flags, and set by the page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneSettings {
    pub mode: FinetuneMode,
    pub batch_size: usize,
    pub epochs: usize,
    /// A fixed number of steps instead of `epochs` (the page trains for N steps).
    pub steps: Option<usize>,
    /// Base learning rate per 256 images: the peak rate of the top block (full mode) or of
    /// the LoRA adapters is `blr × batch / 256` (docs/nepa.md §5).
    pub blr: f64,
    /// Peak rate of `classifier.*` and the final `layernorm.*`, not scaled by the batch.
    pub head_lr: f64,
    pub layer_decay: f64,
    pub weight_decay: f64,
    /// Fraction of the steps in warmup (W of the per-group warmup).
    pub warmup_ratio: f64,
    pub label_smoothing: f64,
    /// Global gradient-norm clipping (0 disables it).
    pub clip_grad: f64,
    /// Largest stochastic-depth rate (last block), set on the backbone even when it comes
    /// from a checkpoint.
    pub drop_path: f64,
    /// Mixup α (0: off).
    pub mixup: f64,
    /// CutMix α (0: off).
    pub cutmix: f64,
    /// Probability of CutMix instead of Mixup when both are on.
    pub mix_switch_prob: f64,
    /// RandAugment (2 ops, magnitude 9, std 0.5, increasing op set).
    pub randaug: bool,
    /// RandomErasing probability (0: off).
    pub erasing: f64,
    /// EMA of the weights, evaluated alongside (None: off).
    pub ema_decay: Option<f64>,
    /// RandomResizedCrop smallest area fraction.
    pub crop_min_scale: f64,
    /// Learnable QK-norm weights, initialised to 1 (the official base fine-tuning).
    pub qk_norm_affine: bool,
    /// Train the patch-embedding conv too (the official recipe freezes it).
    pub train_patch_embed: bool,
    /// Keep causal attention instead of switching to bidirectional.
    pub causal: bool,
    pub lora_rank: usize,
    pub lora_alpha: f64,
    /// Non-finite steps in a row before the run stops (each one is undone).
    pub max_bad_steps: usize,
    pub seed: u64,
}

/// The named presets of `nepa finetune --recipe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recipe {
    Official,
    SmallData,
}

impl FinetuneSettings {
    /// The official ViT-B fine-tuning recipe (docs/nepa.md §5).
    pub fn official() -> Self {
        Self {
            mode: FinetuneMode::Full,
            batch_size: 1024,
            epochs: 100,
            steps: None,
            blr: 1.5e-3,
            head_lr: 1e-3,
            layer_decay: 0.65,
            weight_decay: 0.05,
            warmup_ratio: 0.2,
            label_smoothing: 0.1,
            clip_grad: 1.0,
            drop_path: 0.1,
            mixup: 0.8,
            cutmix: 1.0,
            mix_switch_prob: 0.5,
            randaug: true,
            erasing: 0.25,
            ema_decay: Some(0.9999),
            crop_min_scale: 0.08,
            qk_norm_affine: true,
            train_patch_embed: false,
            causal: false,
            lora_rank: 8,
            lora_alpha: 16.0,
            max_bad_steps: 5,
            seed: 1337,
        }
    }

    /// Hundreds to a few thousand labelled images (docs/finetune-recipe.md): batch 64 for
    /// enough steps, no Mixup/CutMix or RandAugment (on so few images they slow learning
    /// more than they regularise it in a short schedule), milder crops, an EMA short
    /// enough to follow a few hundred steps.
    pub fn small_data() -> Self {
        Self {
            batch_size: 64,
            epochs: 30,
            blr: 4e-3,
            layer_decay: 0.75,
            warmup_ratio: 0.1,
            mixup: 0.0,
            cutmix: 0.0,
            randaug: false,
            erasing: 0.0,
            ema_decay: Some(0.99),
            crop_min_scale: 0.35,
            seed: 0,
            ..Self::official()
        }
    }

    /// A short run on a few dozen images (the page's Fine-tune tab): `steps` steps of
    /// `batch` images at peak rate `lr` for the body (or the LoRA adapters) and the head,
    /// warmup over 10 % of the steps, no EMA (over a few dozen steps an average would stay
    /// close to the start) and no drop path (a few dozen steps gain nothing from it, and on
    /// WebGPU its random masks are more shaders to compile before the first step). The rest
    /// as [`FinetuneSettings::small_data`]. `nepa finetune --recipe small-data --mode M
    /// --steps N --batch-size B --lr LR --head-lr LR --warmup-ratio 0.1 --ema-decay 0
    /// --drop-path 0` gives the same settings.
    pub fn quick(mode: FinetuneMode, steps: usize, batch: usize, lr: f64) -> Self {
        Self {
            mode,
            steps: Some(steps),
            batch_size: batch,
            blr: lr * 256.0 / batch.max(1) as f64,
            head_lr: lr,
            warmup_ratio: 0.1,
            ema_decay: None,
            drop_path: 0.0,
            ..Self::small_data()
        }
    }

    pub fn preset(recipe: Recipe) -> Self {
        match recipe {
            Recipe::Official => Self::official(),
            Recipe::SmallData => Self::small_data(),
        }
    }

    /// The peak learning rate of the body: `blr × batch / 256`.
    pub fn peak_lr(&self) -> f64 {
        self.blr * self.batch_size as f64 / 256.0
    }

    /// Whether a batch mixes images (Mixup or CutMix).
    pub fn mixes(&self) -> bool {
        self.mixup > 0.0 || self.cutmix > 0.0
    }

    /// Refuses settings no run can use, naming the flag.
    pub fn validate(&self) -> Result<(), NepaError> {
        let bad = |msg: String| Err(NepaError::Input(msg));
        if self.batch_size == 0 || (self.steps.is_none() && self.epochs == 0) {
            return bad("--batch-size and --epochs (or --steps) must be at least 1".into());
        }
        if self.steps == Some(0) {
            return bad("--steps must be at least 1".into());
        }
        for (name, lr) in [("--blr", self.blr), ("--head-lr", self.head_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                return bad(format!("{name} must be a positive number, got {lr}"));
            }
        }
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        for (name, v) in [
            ("--warmup-ratio", self.warmup_ratio),
            ("--layer-decay", self.layer_decay),
            ("--mix-switch-prob", self.mix_switch_prob),
            ("--erasing", self.erasing),
        ] {
            if !unit(v) {
                return bad(format!("{name} must be in [0, 1], got {v}"));
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) || !(0.0..1.0).contains(&self.drop_path) {
            return bad(format!(
                "--label-smoothing and --drop-path must be in [0, 1), got {} and {}",
                self.label_smoothing, self.drop_path
            ));
        }
        if !(self.crop_min_scale > 0.0 && self.crop_min_scale <= 1.0) {
            return bad(format!(
                "--crop-min-scale must be in (0, 1], got {}",
                self.crop_min_scale
            ));
        }
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        for (name, v) in [
            ("--weight-decay", self.weight_decay),
            ("--clip-grad", self.clip_grad),
            ("--mixup", self.mixup),
            ("--cutmix", self.cutmix),
        ] {
            if !non_negative(v) {
                return bad(format!("{name} must be ≥ 0, got {v}"));
            }
        }
        if let Some(d) = self.ema_decay
            && !(0.0..1.0).contains(&d)
        {
            return bad(format!("--ema-decay must be in [0, 1), got {d}"));
        }
        if self.mode == FinetuneMode::Lora
            && (self.lora_rank == 0 || self.lora_alpha.is_nan() || self.lora_alpha <= 0.0)
        {
            return bad("LoRA needs a rank ≥ 1 and a positive alpha".into());
        }
        if self.max_bad_steps == 0 {
            return bad("max_bad_steps must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_scale_the_learning_rate_by_the_batch() {
        let official = FinetuneSettings::official();
        official.validate().unwrap();
        // ViT-B: 1.5e-3 × 1024 / 256 = 6e-3 (docs/nepa.md §5).
        assert!((official.peak_lr() - 6e-3).abs() < 1e-15);
        assert!(official.mixes() && official.randaug && official.qk_norm_affine);
        let small = FinetuneSettings::small_data();
        small.validate().unwrap();
        assert!(!small.mixes());
        assert!((small.peak_lr() - 1e-3).abs() < 1e-15);
    }

    #[test]
    fn bad_settings_name_their_flag() {
        type Spoil = fn(&mut FinetuneSettings);
        let cases: [(Spoil, &str); 5] = [
            (|s| s.batch_size = 0, "--batch-size"),
            (|s| s.blr = f64::NAN, "--blr"),
            (|s| s.erasing = 1.5, "--erasing"),
            (|s| s.mixup = -1.0, "--mixup"),
            (|s| s.ema_decay = Some(1.0), "--ema-decay"),
        ];
        for (spoil, flag) in cases {
            let mut s = FinetuneSettings::small_data();
            spoil(&mut s);
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(flag), "{flag}: {e}");
        }
    }
}
