//! The shared training pieces: AdamW against a host computation, and a few pretraining and
//! fine-tuning steps on a fixed batch lowering the loss (Flex).

mod common;

use std::collections::BTreeMap;

use burn::tensor::{Device, Distribution, Tensor};
use common::values;
use nepa::checkpoint::{backbone_tensors, to_safetensors};
use nepa::train::{AdamW, AdamWConfig, ParamGroup, cross_entropy, is_no_decay};
use nepa::{ForwardOptions, LossOptions, NepaClassifier, NepaConfig, NepaModel, prediction_loss};

fn config() -> NepaConfig {
    NepaConfig::new(32, 2, 4)
        .with_image_size(16, 16)
        .with_patch_size(4)
}

fn batch(device: &Device) -> Tensor<4> {
    device.seed(5);
    Tensor::random([4, 3, 16, 16], Distribution::Uniform(-1.0, 1.0), device)
}

fn param_values(model: &NepaModel, key: &str) -> Vec<f32> {
    let t = backbone_tensors(model, false)
        .into_iter()
        .find(|t| t.key == key)
        .unwrap();
    values(t.values).1
}

#[test]
fn adamw_matches_a_host_computation_over_two_steps() {
    let device = Device::flex().autodiff();
    device.seed(1);
    let mut model = NepaModel::new(&config(), &device).unwrap();
    let pixels = batch(&device);
    let key = "embeddings.cls_token";
    let (lr, wd) = (0.01, 0.05);
    let cfg = AdamWConfig {
        max_grad_norm: None,
        ..AdamWConfig::default()
    };
    let mut optim = AdamW::new(cfg);
    let conv = "embeddings.patch_embeddings.projection.weight";
    let conv_before = param_values(&model, conv);
    let mut p = param_values(&model, key);
    let (mut m, mut v) = (vec![0.0f64; p.len()], vec![0.0f64; p.len()]);
    for step in 1..=2 {
        let out = model.forward(pixels.clone(), &ForwardOptions::eval());
        let loss = prediction_loss(
            out.last_hidden_state,
            out.input_embedding,
            LossOptions::default(),
        );
        let grads = loss.backward();
        let g = values(model.embeddings.cls_token.val().grad(&grads).unwrap()).1;
        let (next, _) = optim.step(model, &grads, |k| {
            (k == key).then_some(ParamGroup {
                lr,
                weight_decay: wd,
            })
        });
        model = next;
        // Host AdamW (PyTorch's algorithm) in f64.
        for i in 0..p.len() {
            let gi = g[i] as f64;
            m[i] = 0.9 * m[i] + 0.1 * gi;
            v[i] = 0.95 * v[i] + 0.05 * gi * gi;
            let mh = m[i] / (1.0 - 0.9f64.powi(step));
            let vh = v[i] / (1.0 - 0.95f64.powi(step));
            let pi = p[i] as f64 * (1.0 - lr * wd) - lr * mh / (vh.sqrt() + 1e-8);
            p[i] = pi as f32;
        }
        let got = param_values(&model, key);
        for (a, b) in got.iter().zip(&p) {
            assert!((a - b).abs() < 1e-6, "step {step}: {a} vs {b}");
        }
    }
    // Parameters the policy leaves out (frozen) do not move.
    assert_eq!(conv_before, param_values(&model, conv));
}

/// The first moments after one AdamW step from zero, by parameter key: `m = (1 − β1)·g` with
/// `g` the gradient the update used (after clipping), so `m / (1 − β1)` is that gradient.
fn first_step_gradients(
    model: &NepaModel,
    grads: &burn::tensor::Gradients,
    max_grad_norm: Option<f64>,
) -> (BTreeMap<String, Vec<f64>>, Option<f32>) {
    let cfg = AdamWConfig {
        max_grad_norm,
        ..AdamWConfig::default()
    };
    let mut optim = AdamW::new(cfg);
    let all = |_: &str| {
        Some(ParamGroup {
            lr: 1e-3,
            weight_decay: 0.0,
        })
    };
    let (_, norm) = optim.step(model.clone(), grads, all);
    let moments = optim
        .state_tensors()
        .into_iter()
        .filter_map(|t| {
            let key = t.key.strip_prefix("exp_avg.")?.to_string();
            let g = values(t.values)
                .1
                .iter()
                .map(|&m| f64::from(m) / (1.0 - cfg.beta1))
                .collect();
            Some((key, g))
        })
        .collect();
    (moments, norm.map(|n| values(n).1[0]))
}

fn global_norm(grads: &BTreeMap<String, Vec<f64>>) -> f64 {
    grads.values().flatten().map(|g| g * g).sum::<f64>().sqrt()
}

/// Global-norm clipping: with `max_grad_norm` c below the gradient norm ‖g‖, the update uses
/// g·c/‖g‖, one factor for every parameter (not each tensor clipped on its own), so the
/// clipped gradient's global norm is c; above ‖g‖ the gradient is left as it is. Read from
/// the first moments, which after one step are (1 − β1) times the gradient used.
#[test]
fn gradient_clipping_bounds_the_update_norm() {
    let device = Device::flex().autodiff();
    device.seed(2);
    let model = NepaModel::new(&config().with_layerscale(1.0), &device).unwrap();
    let out = model.forward(batch(&device), &ForwardOptions::eval());
    let loss = prediction_loss(
        out.last_hidden_state,
        out.input_embedding,
        LossOptions::default(),
    );
    let grads = loss.backward();

    let (raw, none_norm) = first_step_gradients(&model, &grads, None);
    let norm = global_norm(&raw);
    // The returned norm is the pre-clipping one, with or without clipping.
    let none_norm = f64::from(none_norm.unwrap());
    assert!(
        (none_norm - norm).abs() <= 1e-4 * norm,
        "{none_norm} vs {norm}"
    );
    let max = 1e-3;
    assert!(
        norm > 10.0 * max,
        "the gradient norm ({norm}) is not above the threshold"
    );
    // Parameters with a zero gradient would not show a factor.
    assert!(raw.values().all(|g| g.iter().any(|v| *v != 0.0)));

    let (clipped, clipped_norm) = first_step_gradients(&model, &grads, Some(max));
    let reported = f64::from(clipped_norm.unwrap());
    assert!(
        (reported - norm).abs() <= 1e-4 * norm,
        "{reported} vs {norm}"
    );
    let clipped_total = global_norm(&clipped);
    assert!(
        (clipped_total - max).abs() <= 1e-4 * max,
        "clipped gradient norm {clipped_total:e}, threshold {max:e} (raw {norm:e})"
    );
    assert_eq!(
        clipped.keys().collect::<Vec<_>>(),
        raw.keys().collect::<Vec<_>>()
    );
    // One factor, c/‖g‖, for every parameter.
    let factor = max / norm;
    for (key, g) in &raw {
        let c = &clipped[key];
        let ratio =
            c.iter().zip(g).map(|(c, g)| c * g).sum::<f64>() / g.iter().map(|g| g * g).sum::<f64>();
        assert!(
            (ratio - factor).abs() <= 1e-4 * factor,
            "{key}: scaled by {ratio:e}, the global factor is {factor:e}"
        );
        let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs())) * factor;
        for (a, b) in c.iter().zip(g) {
            assert!(
                (a - b * factor).abs() <= 1e-4 * scale,
                "{key}: {a:e} vs {:e}",
                b * factor
            );
        }
    }

    // A threshold above the norm leaves the gradient as it is.
    let (loose, _) = first_step_gradients(&model, &grads, Some(2.0 * norm));
    for (key, g) in &raw {
        for (a, b) in loose[key].iter().zip(g) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1e-12),
                "{key}: {a:e} vs {b:e}"
            );
        }
    }
}

/// The losses of `steps` pretraining steps on a fixed batch, from the seed, on `device`.
fn pretraining_losses(device: &Device, steps: usize) -> Vec<f32> {
    device.seed(3);
    let mut model = NepaModel::new(&config(), device).unwrap();
    let pixels = batch(device);
    let mut optim = AdamW::new(AdamWConfig::default());
    let mut losses = vec![];
    for _ in 0..steps {
        let out = model.forward(pixels.clone(), &ForwardOptions::eval());
        let loss = prediction_loss(
            out.last_hidden_state,
            out.input_embedding,
            LossOptions::default(),
        );
        losses.push(values(loss.clone()).1[0]);
        let grads = loss.backward();
        model = optim
            .step(model, &grads, |k| {
                Some(ParamGroup {
                    lr: 3e-3,
                    weight_decay: if is_no_decay(k) { 0.0 } else { 0.05 },
                })
            })
            .0;
    }
    losses
}

#[test]
fn pretraining_steps_lower_the_loss_on_a_fixed_batch() {
    let losses = pretraining_losses(&Device::flex().autodiff(), 12);
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[11] < losses[0] - 0.05, "{losses:?}");
}

/// Checkpointing recomputes activations in the backward pass instead of keeping them: the
/// same arithmetic, so the same losses. Several steps, because the updated parameters must
/// keep the run's strategy (the first step alone passed while the second panicked).
#[test]
fn gradient_checkpointing_trains_like_a_run_without_it() {
    let plain = pretraining_losses(&Device::flex().autodiff(), 4);
    let checkpointed = pretraining_losses(&Device::flex().autodiff().gradient_checkpointing(), 4);
    for (step, (a, b)) in plain.iter().zip(&checkpointed).enumerate() {
        assert!((a - b).abs() < 1e-5, "step {step}: {a} vs {b}");
    }
}

#[test]
fn finetuning_steps_fit_a_labelled_batch() {
    let device = Device::flex().autodiff();
    device.seed(4);
    let mut model = NepaClassifier::new(&config(), 3, &device).unwrap();
    let pixels = batch(&device);
    let labels = [0usize, 1, 2, 1];
    let mut optim = AdamW::new(AdamWConfig {
        beta2: 0.999,
        ..AdamWConfig::default()
    });
    let mut losses = vec![];
    for _ in 0..15 {
        let logits = model.forward(pixels.clone(), &ForwardOptions::eval());
        let loss = cross_entropy(logits, &labels, 0.1);
        losses.push(values(loss.clone()).1[0]);
        let grads = loss.backward();
        model = optim
            .step(model, &grads, |k| {
                // The patch embedding is frozen, as in the official fine-tuning.
                (!k.contains("patch_embeddings")).then_some(ParamGroup {
                    lr: 5e-3,
                    weight_decay: 0.0,
                })
            })
            .0;
    }
    // A zero head starts at ln(3) exactly.
    assert!((losses[0] - 3f32.ln()).abs() < 1e-5, "{losses:?}");
    assert!(losses[14] < 0.5 * losses[0], "{losses:?}");
}

#[test]
fn optimizer_state_round_trips_through_safetensors() {
    let device = Device::flex().autodiff();
    device.seed(6);
    let model = NepaModel::new(&config(), &device).unwrap();
    let out = model.forward(batch(&device), &ForwardOptions::eval());
    let loss = prediction_loss(
        out.last_hidden_state,
        out.input_embedding,
        LossOptions::default(),
    );
    let grads = loss.backward();
    let mut optim = AdamW::new(AdamWConfig::default());
    let policy = |_: &str| {
        Some(ParamGroup {
            lr: 1e-3,
            weight_decay: 0.05,
        })
    };
    let model = optim.step(model, &grads, policy).0;
    let bytes = to_safetensors(&optim.state_tensors(), &config()).unwrap();
    let restored = AdamW::load_state(AdamWConfig::default(), &bytes, &device).unwrap();
    let again = to_safetensors(&restored.state_tensors(), &config()).unwrap();
    // Same tensors, names and values (the metadata map's order may differ between writes).
    let tensors = |b: &[u8]| {
        let file = safetensors::SafeTensors::deserialize(b).unwrap();
        let mut all: Vec<(String, Vec<usize>, Vec<u8>)> = file
            .tensors()
            .into_iter()
            .map(|(k, v)| (k, v.shape().to_vec(), v.data().to_vec()))
            .collect();
        all.sort();
        all
    };
    let (saved, restored_tensors) = (tensors(&bytes), tensors(&again));
    let params = backbone_tensors(&model, false).len();
    assert_eq!(
        saved.len(),
        3 * params,
        "exp_avg, exp_avg_sq and step per parameter"
    );
    assert_eq!(saved, restored_tensors);
}
