//! Properties of the objective that do not depend on the reference: causality, the shifted
//! pairing (CLS predicts patch 1) and stop-grad.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use common::values;
use nepa::checkpoint::backbone_gradients;
use nepa::loss::{cosine, prediction_loss_map};
use nepa::{ForwardOptions, LossOptions, NepaConfig, NepaModel, prediction_loss};

/// A small model with O(1) LayerScale so that every block visibly moves the residual stream.
fn small_model(causal: bool, device: &Device) -> (NepaConfig, NepaModel) {
    let config = NepaConfig::new(32, 2, 4)
        .with_image_size(12, 12)
        .with_patch_size(4)
        .with_layerscale(0.5)
        .with_causal(causal);
    device.seed(3);
    let model = NepaModel::new(&config, device).unwrap();
    (config, model)
}

fn image(device: &Device) -> Tensor<4> {
    Tensor::random([2, 3, 12, 12], Distribution::Uniform(-1.0, 1.0), device)
}

/// Replaces the pixels of the last patch row (patches 6..8) with noise.
fn perturb_last_row(pixels: Tensor<4>, device: &Device) -> Tensor<4> {
    let noise = Tensor::random([2, 3, 4, 12], Distribution::Uniform(-1.0, 1.0), device);
    pixels.slice_assign([0..2, 0..3, 8..12, 0..12], noise)
}

fn max_diff_upto(a: &Tensor<3>, b: &Tensor<3>, tokens: usize) -> f32 {
    let a = values(a.clone().narrow(1, 0, tokens)).1;
    let b = values(b.clone().narrow(1, 0, tokens)).1;
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn causal_outputs_ignore_later_patches() {
    let device = Device::flex();
    let (_, model) = small_model(true, &device);
    let pixels = image(&device);
    let perturbed = perturb_last_row(pixels.clone(), &device);
    let a = model.forward(pixels, &ForwardOptions::eval());
    let b = model.forward(perturbed, &ForwardOptions::eval());
    // Tokens 0..=6 are CLS and patches 0..5: none of them sees the last row.
    assert_eq!(
        max_diff_upto(&a.last_hidden_state, &b.last_hidden_state, 7),
        0.0
    );
    for (ha, hb) in a.hidden_states.iter().zip(&b.hidden_states) {
        assert_eq!(max_diff_upto(ha, hb, 7), 0.0);
    }
    // The perturbed patches themselves do change.
    assert!(max_diff_upto(&a.last_hidden_state, &b.last_hidden_state, 10) > 1e-3);
}

#[test]
fn bidirectional_outputs_see_later_patches() {
    // The converse, so the causality test above is known to be able to fail.
    let device = Device::flex();
    let (_, model) = small_model(false, &device);
    let pixels = image(&device);
    let perturbed = perturb_last_row(pixels.clone(), &device);
    let a = model.forward(pixels, &ForwardOptions::eval());
    let b = model.forward(perturbed, &ForwardOptions::eval());
    assert!(max_diff_upto(&a.last_hidden_state, &b.last_hidden_state, 1) > 1e-4);
}

#[test]
fn causal_attention_is_zero_on_future_tokens_and_rows_sum_to_one() {
    let device = Device::flex();
    let (config, model) = small_model(true, &device);
    let out = model.forward(image(&device), &ForwardOptions::eval().with_attentions());
    let t = config.seq_len();
    for attention in out.attentions {
        let (shape, v) = values(attention);
        assert_eq!(shape, vec![2, 4, t, t]);
        for row in v.chunks(t).enumerate() {
            let (index, probs) = row;
            let query = index % t;
            assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(probs[query + 1..].iter().all(|&p| p == 0.0));
        }
    }
}

#[test]
fn cls_position_predicts_the_first_patch() {
    let device = Device::flex();
    let (_, model) = small_model(true, &device);
    let out = model.forward(image(&device), &ForwardOptions::eval());
    let map = prediction_loss_map(
        out.last_hidden_state.clone(),
        out.input_embedding.clone(),
        LossOptions::default(),
    );
    let [b, pairs] = map.dims();
    assert_eq!((b, pairs), (2, 9), "T − 1 pairs: CLS→p1 … p8→p9");
    // Position 0 (the CLS output) is compared with z_1, the first patch embedding.
    let cls_pred = out.last_hidden_state.clone().narrow(1, 0, 1);
    let first_patch = out.input_embedding.clone().narrow(1, 1, 1);
    let expected = values(cosine(cls_pred, first_patch).neg()).1;
    let got = values(map.clone().narrow(1, 0, 1)).1;
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() < 1e-6);
    }
    // And not with itself (z_0 = CLS token): the pairing is really shifted.
    let cls_self = values(
        cosine(
            out.last_hidden_state.clone().narrow(1, 0, 1),
            out.input_embedding.clone().narrow(1, 0, 1),
        )
        .neg(),
    )
    .1;
    assert!((got[0] - cls_self[0]).abs() > 1e-4);
    // The last output has no target.
    let loss = values(prediction_loss(
        out.last_hidden_state,
        out.input_embedding,
        LossOptions::default(),
    ))
    .1[0];
    let mean = values(map).1.iter().sum::<f32>() / 18.0;
    assert!((loss - mean).abs() < 1e-6);
}

#[test]
fn stop_grad_blocks_the_target_path() {
    // With stop-grad, a loss whose prediction side is detached has no gradient at all for
    // the embedding; without stop-grad it has one, through the target.
    let device = Device::flex().autodiff();
    let (_, model) = small_model(true, &device);
    let out = model.forward(image(&device), &ForwardOptions::eval());
    let pred = out.last_hidden_state.detach();
    let with_stop = prediction_loss(
        pred.clone(),
        out.input_embedding.clone(),
        LossOptions::default(),
    );
    assert!(
        !with_stop.is_tracked(),
        "a detached target and prediction leave nothing to differentiate"
    );

    let out = model.forward(image(&device), &ForwardOptions::eval());
    let without_stop = prediction_loss(
        out.last_hidden_state.detach(),
        out.input_embedding,
        LossOptions {
            shift: true,
            stop_grad: false,
        },
    );
    let grads = without_stop.backward();
    // CLS is never a target (position 0 has no predecessor), so its gradient is zero.
    let keys: Vec<String> = backbone_gradients(&model, &grads)
        .into_iter()
        .filter(|g| values(g.values.clone()).1.iter().any(|v| *v != 0.0))
        .map(|g| g.key)
        .collect();
    assert_eq!(
        keys,
        vec![
            "embeddings.patch_embeddings.projection.weight",
            "embeddings.patch_embeddings.projection.bias"
        ],
        "only the conv receives gradient through the target path"
    );
}

#[test]
fn training_mode_draws_a_rope_scale_within_the_rescale_range() {
    let config = NepaConfig::tiny();
    let mut rng = nepa::SplitMix64::new(11);
    let scales: Vec<f64> = (0..200)
        .map(|_| ForwardOptions::train(&config, &mut rng).rope_scale)
        .collect();
    assert!(scales.iter().all(|s| (0.5..=2.0).contains(s)));
    assert!(scales.iter().any(|s| *s < 0.8) && scales.iter().any(|s| *s > 1.25));
    let no_rescale = config.with_pos_embed_rescale(None);
    assert_eq!(ForwardOptions::train(&no_rescale, &mut rng).rope_scale, 1.0);
}

#[test]
fn drop_path_only_in_training() {
    let device = Device::flex();
    let config = NepaConfig::new(32, 2, 4)
        .with_image_size(8, 8)
        .with_patch_size(4)
        .with_layerscale(0.5)
        .with_drop_path(0.9);
    let model = NepaModel::new(&config, &device).unwrap();
    let pixels = Tensor::random([8, 3, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
    let eval_a = values(
        model
            .forward(pixels.clone(), &ForwardOptions::eval())
            .last_hidden_state,
    );
    let eval_b = values(
        model
            .forward(pixels.clone(), &ForwardOptions::eval())
            .last_hidden_state,
    );
    assert_eq!(eval_a, eval_b);
    let train = ForwardOptions {
        drop_path: true,
        ..ForwardOptions::eval()
    };
    let train_out = values(model.forward(pixels, &train).last_hidden_state);
    assert_ne!(train_out, eval_a);
}
