//! The fine-tuning settings (docs/nepa.md §5, docs/finetune-recipe.md): the mode, the named
//! recipes and every knob of a run. One definition for the model crate's driver, the CLI's
//! flags (with the `clap` feature), the page's choices and the engine protocol.

use serde::{Deserialize, Serialize};

use crate::error::NepaError;

/// What a fine-tuning run trains (docs/nepa.md §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FinetuneMode {
    /// The whole model, with layer-wise lr decay (patch embedding frozen).
    Full,
    /// The classifier head only (backbone frozen).
    #[cfg_attr(feature = "clap", value(name = "head"))]
    HeadOnly,
    /// LoRA adapters on the attention projections, and the head.
    #[default]
    Lora,
}

impl FinetuneMode {
    /// In the order the page offers them (its default first).
    pub const ALL: [FinetuneMode; 3] = [
        FinetuneMode::Lora,
        FinetuneMode::Full,
        FinetuneMode::HeadOnly,
    ];

    /// The short name: the CLI's `--mode` value and the page's option value.
    pub fn name(self) -> &'static str {
        match self {
            FinetuneMode::Full => "full",
            FinetuneMode::HeadOnly => "head",
            FinetuneMode::Lora => "lora",
        }
    }

    /// What the mode trains, as the page and the CLI's summary show it.
    pub fn label(self) -> &'static str {
        match self {
            FinetuneMode::Full => "full model, layer-wise lr decay (patch embedding frozen)",
            FinetuneMode::HeadOnly => "head only (backbone frozen)",
            FinetuneMode::Lora => "LoRA adapters + head",
        }
    }

    /// The mode of a short name ([`FinetuneMode::name`]).
    pub fn parse(name: &str) -> Result<Self, NepaError> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name.trim())
            .ok_or_else(|| {
                NepaError::Input(format!(
                    "unknown fine-tuning mode \"{name}\" (expected lora, full or head)"
                ))
            })
    }
}

impl std::fmt::Display for FinetuneMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every setting of a fine-tuning run. The same struct is stored in a checkpoint's sidecar,
/// is `nepa finetune`'s flags (with the `clap` feature: each field a `--flag`, defaults from
/// [`FinetuneSettings::small_data`]; the CLI applies the flags given over the `--recipe`
/// preset), and is set by the page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct FinetuneSettings {
    /// full (layer-wise lr decay), head (backbone frozen) or lora (adapters + head).
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = FinetuneSettings::small_data().mode))]
    pub mode: FinetuneMode,
    /// Images per update (the recipe's batch; the learning rate scales with it).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().batch_size))]
    pub batch_size: usize,
    /// Forward/backward passes each batch is split into: the same update with the memory of
    /// `batch_size / accumulate` images (gradient accumulation).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1))]
    #[serde(default = "one")]
    pub accumulate: usize,
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().epochs))]
    pub epochs: usize,
    /// A fixed number of steps instead of `epochs` (the page trains for N steps).
    #[cfg_attr(feature = "clap", arg(long))]
    pub steps: Option<usize>,
    /// Base learning rate per 256 images: the peak rate of the top block (full mode) or of
    /// the LoRA adapters is `blr × batch / 256` (docs/nepa.md §5).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().blr))]
    pub blr: f64,
    /// Peak rate of `classifier.*` and the final `layernorm.*`, not scaled by the batch.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().head_lr))]
    pub head_lr: f64,
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().layer_decay))]
    pub layer_decay: f64,
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().weight_decay))]
    pub weight_decay: f64,
    /// Fraction of the steps in warmup (W of the per-group warmup).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().warmup_ratio))]
    pub warmup_ratio: f64,
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().label_smoothing))]
    pub label_smoothing: f64,
    /// Global gradient-norm clipping (0 disables it).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().clip_grad))]
    pub clip_grad: f64,
    /// Largest stochastic-depth rate (last block), set on the backbone even when it comes
    /// from a checkpoint (the CLI's model flag `--drop-path`).
    #[cfg_attr(feature = "clap", arg(skip = FinetuneSettings::small_data().drop_path))]
    pub drop_path: f64,
    /// Mixup α (0: off).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().mixup))]
    pub mixup: f64,
    /// CutMix α (0: off).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().cutmix))]
    pub cutmix: f64,
    /// Probability of CutMix instead of Mixup when both are on.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().mix_switch_prob))]
    pub mix_switch_prob: f64,
    /// RandAugment (2 ops, magnitude 9, std 0.5, increasing op set) on or off.
    #[cfg_attr(feature = "clap", arg(long, action = clap::ArgAction::Set, default_value_t = FinetuneSettings::small_data().randaug))]
    pub randaug: bool,
    /// RandomErasing probability (0: off).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().erasing))]
    pub erasing: f64,
    /// EMA of the weights, evaluated alongside (None, or 0 on the command line: off).
    #[cfg_attr(feature = "clap", arg(long))]
    pub ema_decay: Option<f64>,
    /// RandomResizedCrop smallest area fraction.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().crop_min_scale))]
    pub crop_min_scale: f64,
    /// Learnable QK-norm weights, initialised to 1 (the official base fine-tuning).
    #[cfg_attr(feature = "clap", arg(long = "affine-qk-norm", action = clap::ArgAction::Set, default_value_t = FinetuneSettings::small_data().qk_norm_affine))]
    pub qk_norm_affine: bool,
    /// Train the patch-embedding conv too (the official recipe freezes it).
    #[cfg_attr(feature = "clap", arg(long))]
    pub train_patch_embed: bool,
    /// Keep causal attention instead of switching to bidirectional.
    #[cfg_attr(feature = "clap", arg(long))]
    pub causal: bool,
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().lora_rank))]
    pub lora_rank: usize,
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().lora_alpha))]
    pub lora_alpha: f64,
    /// Non-finite steps in a row before the run stops (each one is undone).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().max_bad_steps))]
    pub max_bad_steps: usize,
    #[cfg_attr(feature = "clap", arg(long, default_value_t = FinetuneSettings::small_data().seed))]
    pub seed: u64,
}

fn one() -> usize {
    1
}

/// The named presets of `nepa finetune --recipe`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Recipe {
    /// The official ViT-B recipe (docs/nepa.md §5): batch 1024, 100 epochs, Mixup/CutMix,
    /// RandAugment, RandomErasing, EMA 0.9999.
    Official,
    /// Hundreds to thousands of images: batch 64, 30 epochs, no mixing
    /// (docs/finetune-recipe.md).
    #[default]
    SmallData,
}

impl Recipe {
    /// The `--recipe` value.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Official => "official",
            Recipe::SmallData => "small-data",
        }
    }
}

impl FinetuneSettings {
    /// The official ViT-B fine-tuning recipe (docs/nepa.md §5).
    pub fn official() -> Self {
        Self {
            mode: FinetuneMode::Full,
            batch_size: 1024,
            accumulate: 1,
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
        if self.accumulate == 0 || self.accumulate > self.batch_size {
            return bad(format!(
                "--accumulate must be in 1..={} (the batch size), got {}",
                self.batch_size, self.accumulate
            ));
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
            return bad("--max-bad-steps must be at least 1".into());
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
    fn modes_round_trip_through_their_names() {
        for mode in FinetuneMode::ALL {
            assert_eq!(FinetuneMode::parse(mode.name()).unwrap(), mode);
            assert!(!mode.label().is_empty());
        }
        let e = FinetuneMode::parse("everything").unwrap_err().to_string();
        assert!(e.contains("everything") && e.contains("lora"), "{e}");
    }

    #[test]
    fn bad_settings_name_their_flag() {
        type Spoil = fn(&mut FinetuneSettings);
        let cases: [(Spoil, &str); 7] = [
            (|s| s.batch_size = 0, "--batch-size"),
            (|s| s.accumulate = 0, "--accumulate"),
            (|s| s.accumulate = s.batch_size + 1, "--accumulate"),
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
