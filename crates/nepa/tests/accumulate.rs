//! Gradient accumulation and f16 loss scaling (docs/performance.md §3), on Flex: a batch
//! split into micro-batches gives the update of the whole batch, and f16 training with a
//! loss scale skips the steps whose gradients overflow, shrinks the scale and keeps the
//! small gradients that f16 flushes to zero without one.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use common::values;
use futures_lite::future::block_on;
use nepa::bench::seeded_backbone;
use nepa::checkpoint::{backbone_tensors, classifier_tensors};
use nepa::data::ImageSet;
use nepa::finetune::{FinetuneMode, FinetuneRun, FinetuneSettings};
use nepa::pretrain::{PretrainOptions, PretrainSchedule, Pretrainer};
use nepa::train::{AdamW, AdamWConfig, LossScaler, UpdatePlan, pretrain_step};
use nepa::{
    ForwardOptions, LossOptions, NepaConfig, NepaModel, Precision, SplitMix64, StepOutcome,
};

/// The tests seed Flex's one device generator (LoRA's adapters, the fine-tuning head and the
/// batches come from it), so they must not interleave: each holds this lock.
static DEVICE_GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}

/// LayerScale and the norms away from their identity-like init, so that every block shapes
/// the gradients being compared.
fn config() -> NepaConfig {
    NepaConfig::new(32, 2, 4)
        .with_image_size(16, 16)
        .with_patch_size(4)
        .with_layerscale(0.5)
}

/// A model's tensors by official key, flattened.
type Tensors = Vec<(String, Vec<f32>)>;

fn tensors(model: &NepaModel) -> Tensors {
    backbone_tensors(model, false)
        .into_iter()
        .map(|t| (t.key, values(t.values).1))
        .collect()
}

/// Largest |a − b| over every tensor of two models with the same keys.
fn max_param_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> (f64, String) {
    assert_eq!(a.len(), b.len());
    let mut worst = (0.0f64, String::new());
    for ((ka, va), (kb, vb)) in a.iter().zip(b) {
        assert_eq!(ka, kb);
        let d = nepa_types::report::max_abs_diff(va, vb);
        if d > worst.0 {
            worst = (d, ka.clone());
        }
    }
    worst
}

/// Two pretraining steps on a fixed batch of 8 in `micro` passes: the models after each
/// step, the losses and gradient norms.
fn pretrain_two_steps(micro: usize) -> (Vec<Tensors>, Vec<[f32; 3]>) {
    let device = Device::flex().autodiff();
    let mut model = seeded_backbone(&config(), 7, &device).unwrap();
    device.seed(11);
    let pixels = Tensor::<4>::random([8, 3, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
    let mut optim = AdamW::new(AdamWConfig::default());
    let (mut models, mut figures) = (vec![], vec![]);
    for _ in 0..2 {
        let out = pretrain_step(
            model,
            &mut optim,
            pixels.clone(),
            3e-3,
            0.05,
            &ForwardOptions::eval(),
            LossOptions::default(),
            UpdatePlan {
                micro_batches: micro,
                loss_scale: 1.0,
            },
        );
        model = out.model;
        let scalar = |t: Tensor<1>| values(t).1[0];
        figures.push([
            scalar(out.loss),
            scalar(out.grad_norm.unwrap()),
            scalar(out.embedding_similarity.unwrap()),
        ]);
        models.push(tensors(&model));
    }
    (models, figures)
}

#[test]
fn micro_batches_give_the_update_of_the_whole_batch() {
    let _device = exclusive();
    let (whole, whole_figures) = pretrain_two_steps(1);
    // Even (2 × 4, 8 × 1) and uneven (3 + 3 + 2) splits.
    for micro in [2, 3, 8] {
        let (split, figures) = pretrain_two_steps(micro);
        for step in 0..2 {
            let (worst, key) = max_param_diff(&whole[step], &split[step]);
            eprintln!("{micro} micro-batches, step {step}: max |Δparam| {worst:.2e} ({key})");
            assert!(
                worst <= 1e-5,
                "{micro} micro-batches, step {step}: `{key}` differs by {worst:.2e} from the \
                 whole batch's update"
            );
            for (what, (a, b)) in ["loss", "gradient norm", "embedding similarity"]
                .iter()
                .zip(whole_figures[step].iter().zip(&figures[step]))
            {
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                    "{micro} micro-batches, step {step}: {what} {b} vs {a}"
                );
            }
        }
    }
}

/// Eighteen 16×16 images, reddish (0), greenish (1) or bluish (2). Three classes, so that no
/// batch of 8 is balanced: with the zero-initialised head a balanced batch gives the classifier
/// bias a gradient of exactly zero up to rounding, which AdamW would turn into a step of either
/// sign, and the comparison would measure rounding noise.
fn three_class_set() -> ImageSet {
    let mut rng = SplitMix64::new(5);
    let pairs = (0..18)
        .map(|i| {
            let label = i % 3;
            let pixels = (0..16 * 16)
                .flat_map(|_| {
                    let jitter = (rng.uniform(-40.0, 40.0)) as i32;
                    let mut rgb = [60 + jitter, 60 - jitter, 60 + jitter / 2];
                    rgb[label] = 200 - jitter;
                    rgb.map(|v| v.clamp(0, 255) as u8)
                })
                .collect();
            (nepa::image::RgbImage::new(16, 16, pixels), label)
        })
        .collect();
    let classes = vec!["red".into(), "green".into(), "blue".into()];
    ImageSet::labelled(pairs, classes, "test").unwrap()
}

/// Three fine-tuning steps of batch 8 with the data, augmentation and head of the driver
/// (`FinetuneRun`), in `accumulate` passes per step: the classifier's tensors at the end.
fn finetune_three_steps(mode: FinetuneMode, accumulate: usize) -> Tensors {
    let device = Device::flex();
    let backbone = seeded_backbone(&config(), 3, &device).unwrap();
    let settings = FinetuneSettings {
        accumulate,
        // No drop path: its masks are drawn per forward pass, so a split batch draws others.
        ..FinetuneSettings::quick(mode, 3, 8, 3e-3)
    };
    let mut run = FinetuneRun::new(
        backbone,
        &config(),
        three_class_set(),
        settings,
        &device.autodiff(),
    )
    .unwrap();
    while !run.is_done() {
        let record = block_on(run.step()).unwrap();
        assert_eq!(record.outcome, StepOutcome::Applied);
    }
    classifier_tensors(&run.model())
        .into_iter()
        .map(|t| (t.key, values(t.values).1))
        .collect()
}

#[test]
fn finetuning_with_accumulation_matches_the_whole_batch_in_every_mode() {
    let _device = exclusive();
    for mode in [FinetuneMode::Full, FinetuneMode::Lora] {
        let whole = finetune_three_steps(mode, 1);
        let split = finetune_three_steps(mode, 4);
        let (worst, key) = max_param_diff(&whole, &split);
        eprintln!("{mode}, 4 micro-batches: max |Δparam| {worst:.2e} ({key})");
        assert!(
            worst <= 1e-5,
            "{mode}: `{key}` differs by {worst:.2e} after 3 steps in 4 micro-batches"
        );
    }
}

/// A pretraining run of a model with LayerScale 1e-5 whose products run in `precision`
/// (Flex computes in f16), and its fixed batch.
fn pretrainer(precision: Precision) -> (Pretrainer, Tensor<4>) {
    let device = Device::flex().autodiff();
    let config = config().with_layerscale(1e-5);
    let model = seeded_backbone(&config, 7, &device)
        .unwrap()
        .with_precision(precision);
    let options = PretrainOptions {
        schedule: PretrainSchedule::constant(1e-3, 0.0),
        loss: LossOptions::default(),
        augment: Default::default(),
        seed: 0,
        // One non-finite step stops the run: an overflow must not count as one.
        max_bad_steps: 1,
        accumulate: 1,
    };
    let optim = AdamW::new(AdamWConfig::default());
    let trainer = Pretrainer::new(model, &config, optim, options, 0, &device);
    device.seed(11);
    let pixels = Tensor::<4>::random([4, 3, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
    (trainer, pixels)
}

#[test]
fn f16_overflow_skips_the_step_and_shrinks_the_scale() {
    let _device = exclusive();
    assert!(pretrainer(Precision::F32).0.loss_scaler().is_none());
    let (mut trainer, pixels) = pretrainer(Precision::F16);
    assert_eq!(
        trainer.loss_scaler().map(LossScaler::scale),
        Some(65536.0),
        "a model in f16 gets GradScaler's default scale"
    );
    let huge = 2f64.powi(40);
    trainer.set_loss_scaler(Some(LossScaler::new(huge)));
    let before = tensors(trainer.model());
    let record = block_on(trainer.step_pixels(pixels.clone(), &ForwardOptions::eval())).unwrap();
    assert_eq!(
        record.outcome,
        StepOutcome::Skipped,
        "gradients of a loss × 2⁴⁰ overflow f16 (grad norm {:?})",
        record.grad_norm
    );
    assert!(record.loss.is_finite());
    assert_eq!(
        max_param_diff(&before, &tensors(trainer.model())).0,
        0.0,
        "an overflowed step leaves the weights as they were"
    );
    assert_eq!(trainer.loss_scaler().unwrap().scale(), huge / 2.0);
    // The scale comes down until the gradients fit; then the steps apply.
    let mut applied = 0;
    for _ in 0..40 {
        let record =
            block_on(trainer.step_pixels(pixels.clone(), &ForwardOptions::eval())).unwrap();
        assert!(
            !matches!(record.outcome, StepOutcome::Diverged(_)),
            "an overflow is not a divergence: {:?}",
            record.outcome
        );
        if record.outcome == StepOutcome::Applied {
            applied += 1;
        }
    }
    let scale = trainer.loss_scaler().unwrap().scale();
    eprintln!(
        "scale after 41 steps: 2^{:.0}, {applied} applied, {} skipped",
        scale.log2(),
        trainer.skipped_steps()
    );
    assert!(
        applied > 0 && scale < huge / 2.0,
        "scale {scale}, applied {applied}"
    );
    assert!(
        tensors(trainer.model()) != before,
        "the applied steps moved the weights"
    );
}

/// LayerScale 1e-5 makes the gradients of the blocks' inner weights tiny: in f16 without a
/// loss scale many of them flush to zero and those weights do not move (AdamW moves every
/// weight with a non-zero gradient by about the learning rate); with the default scale
/// (2¹⁶) they move as in f32.
#[test]
fn loss_scaling_keeps_the_gradients_f16_flushes_to_zero() {
    let _device = exclusive();
    let key = "encoder.layer.0.intermediate.up_proj.weight";
    let moved = |precision: Precision, scaled: bool| {
        let (mut trainer, pixels) = pretrainer(precision);
        if !scaled {
            trainer.set_loss_scaler(None);
        }
        let find = |m: Vec<(String, Vec<f32>)>| m.into_iter().find(|(k, _)| k == key).unwrap().1;
        let before = find(tensors(trainer.model()));
        let record = block_on(trainer.step_pixels(pixels, &ForwardOptions::eval())).unwrap();
        assert_eq!(record.outcome, StepOutcome::Applied);
        let after = find(tensors(trainer.model()));
        let share =
            before.iter().zip(&after).filter(|(x, y)| x != y).count() as f64 / before.len() as f64;
        (share, record.grad_norm.unwrap())
    };
    let (f32_share, f32_norm) = moved(Precision::F32, false);
    let (unscaled, _) = moved(Precision::F16, false);
    let (scaled, scaled_norm) = moved(Precision::F16, true);
    // The scale is divided out before clipping: the gradient norm is f32's, not 2¹⁶ times it.
    assert!(
        (scaled_norm / f32_norm - 1.0).abs() < 0.05,
        "gradient norm under the f16 loss scale {scaled_norm}, in f32 {f32_norm}"
    );
    eprintln!(
        "share of {key} moved by one step: f32 {f32_share:.3}, f16 unscaled {unscaled:.3}, \
         f16 × 2^16 {scaled:.3}"
    );
    assert!(f32_share > 0.99, "f32 moves the weights: {f32_share}");
    assert!(
        unscaled < 0.5 * f32_share,
        "f16 without a scale should lose most of these gradients: {unscaled}"
    );
    assert!(scaled > 0.99 * f32_share, "f16 × 2^16 keeps them: {scaled}");
}
