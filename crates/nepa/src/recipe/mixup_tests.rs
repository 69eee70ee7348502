//! Tests of `mixup.rs`.

use super::*;
use burn::tensor::{Device, TensorData};

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

#[test]
fn mixup_targets_for_a_fixed_lambda() {
    // ε = 0.1, C = 3: off = 1/30, on = 0.9 + 1/30. λ = 0.7 mixes label 0 with label 2:
    // row 0 = 0.7·(0.9333, 0.0333, 0.0333) + 0.3·(0.0333, 0.0333, 0.9333).
    let s = smooth_one_hot(&[0, 2], 3, 0.1).unwrap();
    close(
        &s,
        &[
            0.933_333, 0.033_333, 0.033_333, 0.033_333, 0.033_333, 0.933_333,
        ],
    );
    let t = mix_targets(&s, 2, 3, 0.7);
    close(
        &t,
        &[
            0.663_333, 0.033_333, 0.303_333, 0.303_333, 0.033_333, 0.663_333,
        ],
    );
}

#[test]
fn mixup_blends_pixels_with_the_flipped_batch() {
    let cfg = MixupConfig {
        cutmix_alpha: 0.0,
        ..MixupConfig::official()
    };
    let mut px = vec![0.0, 0.0, 1.0, 1.0]; // B = 2 images of 1×1×2
    let out = cfg
        .apply(&mut px, [2, 1, 1, 2], &[0, 1], 2, &mut SplitMix64::new(3))
        .unwrap();
    assert_eq!(out.kind, Mix::Mixup);
    let l = out.lam as f32;
    close(&px, &[1.0 - l, 1.0 - l, l, l]);
    // Row 0 = λ·(0.95, 0.05) + (1 − λ)·(0.05, 0.95).
    let a = 0.05 + 0.9 * l;
    close(&out.targets, &[a, 1.0 - a, 1.0 - a, a]);
}

#[test]
fn cutmix_box_area_gives_the_corrected_lambda() {
    // λ = 0.64 → cut ratio 0.6 → a 6×6 box on 10×10, centred at the next two draws and
    // clipped, so the corrected λ is 1 − clipped area / 100.
    let mut rng = SplitMix64::new(11);
    let mut probe = rng.clone();
    let (cy, cx) = (probe.below(10), probe.below(10));
    let (yl, yh, xl, xh) = rand_bbox(10, 10, 0.64, &mut rng);
    assert_eq!((yl, yh), (cy.saturating_sub(3), (cy + 3).min(10)));
    assert_eq!((xl, xh), (cx.saturating_sub(3), (cx + 3).min(10)));

    // Through `apply`: image 0 is all 0, image 1 all 1; image 0 then holds ones exactly
    // in the box, and λ = 1 − ones / (H·W).
    let cfg = MixupConfig {
        mixup_alpha: 0.0,
        ..MixupConfig::official()
    };
    let (h, w) = (16, 12);
    let mut px: Vec<f32> = (0..2 * h * w).map(|i| (i >= h * w) as u8 as f32).collect();
    let out = cfg
        .apply(&mut px, [2, 1, h, w], &[1, 0], 2, &mut SplitMix64::new(5))
        .unwrap();
    assert_eq!(out.kind, Mix::Cutmix);
    let (yl, yh, xl, xh) = out.bbox.unwrap();
    let ones = px[..h * w].iter().filter(|&&v| v == 1.0).count();
    assert_eq!(ones, (yh - yl) * (xh - xl));
    assert!(ones > 0);
    assert_eq!(out.lam, 1.0 - ones as f64 / (h * w) as f64);
    // Image 1 got zeros in the same box.
    assert_eq!(px[h * w..].iter().filter(|&&v| v == 0.0).count(), ones);
}

#[test]
fn odd_batches_and_bad_labels_are_errors() {
    let cfg = MixupConfig::official();
    let mut px = vec![0.0; 3];
    let mut rng = SplitMix64::new(0);
    assert!(
        cfg.apply(&mut px, [3, 1, 1, 1], &[0, 1, 0], 2, &mut rng)
            .is_err()
    );
    let mut px = vec![0.0; 2];
    assert!(
        cfg.apply(&mut px, [2, 1, 1, 1], &[0, 5], 2, &mut rng)
            .is_err()
    );
    assert!(
        cfg.apply(&mut px, [2, 1, 2, 1], &[0, 1], 2, &mut rng)
            .is_err()
    );
    let none = MixupConfig::none()
        .apply(&mut px, [2, 1, 1, 1], &[0, 1], 2, &mut rng)
        .unwrap();
    assert_eq!((none.kind, none.lam), (Mix::None, 1.0));
}

#[test]
fn beta_draws_have_the_right_mean_and_range() {
    let mut rng = SplitMix64::new(1);
    // Beta(0.8, 0.8) has mean 0.5 and variance 1 / (4·2.6) ≈ 0.0962.
    let xs: Vec<f64> = (0..20_000).map(|_| beta(&mut rng, 0.8)).collect();
    assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)));
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    assert!((mean - 0.5).abs() < 0.01, "{mean}");
    assert!((var - 1.0 / 10.4).abs() < 0.005, "{var}");
}

#[test]
fn soft_target_ce_on_smoothed_one_hot() {
    // logits (1, 2, 3), label 2, ε = 0.1: log p = x − ln(e + e² + e³) = x − 3.4076060;
    // loss = 0.9·0.4076060 + 0.1·mean(2.4076060, 1.4076060, 0.4076060) = 0.5076060.
    let device = Device::flex();
    let logits = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 3]), &device);
    let t = smooth_one_hot(&[2], 3, 0.1).unwrap();
    let targets = Tensor::<2>::from_data(TensorData::new(t, [1, 3]), &device);
    let loss = soft_target_cross_entropy(logits, targets)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!((loss[0] - 0.507_606).abs() < 1e-5, "{loss:?}");
}
