//! Per-layer parity with the independent PyTorch reference (tests/reference/), on Flex.
//!
//! Every tensor the reference saved is matched to ≤ 1e-4 absolute, the loss to ≤ 1e-5:
//! z, each layer's output, each layer's attention probabilities, ẑ, ẑ with rescaled RoPE
//! coordinates, the loss with and without the shift, the logits, and the gradient of the
//! loss for every backbone parameter (with and without stop-grad for the embedding).

mod common;

use burn::tensor::Device;
use common::{Fixture, assert_close, values};
use nepa::checkpoint::backbone_gradients;
use nepa::{
    ForwardOptions, LoadOptions, LossOptions, NepaModel, load_backbone, load_classifier,
    prediction_loss,
};

const TOL: f32 = 1e-4;
const LOSS_TOL: f32 = 1e-5;

fn check_fixture(name: &str) {
    let fx = Fixture::load(name);
    let device = Device::flex().autodiff();
    let (backbone, logits_model) = if fx.num_labels > 0 {
        let (model, report) = load_classifier(
            &fx.model_bytes,
            &fx.config,
            None,
            &device,
            LoadOptions::default(),
        )
        .unwrap();
        assert!(report.unused_keys.is_empty(), "{:?}", report.unused_keys);
        assert_eq!(model.num_labels(), fx.num_labels);
        (model.vit_nepa.clone(), Some(model))
    } else {
        let (model, report) =
            load_backbone(&fx.model_bytes, &fx.config, &device, LoadOptions::default()).unwrap();
        assert!(report.unused_keys.is_empty(), "{:?}", report.unused_keys);
        assert_eq!(report.prefixed, fx.prefixed);
        (model, None)
    };
    assert_eq!(backbone.is_causal, fx.config.is_causal);

    let pixels = fx.tensor::<4>("input.pixel_values", &device);
    let out = backbone.forward(pixels.clone(), &ForwardOptions::eval().with_attentions());

    assert_close(
        &format!("{name} z"),
        values(out.input_embedding.clone()),
        fx.get("expected.z"),
        TOL,
    );
    assert_eq!(out.hidden_states.len(), fx.config.num_hidden_layers);
    for (l, (hidden, attention)) in out.hidden_states.iter().zip(&out.attentions).enumerate() {
        assert_close(
            &format!("{name} hidden_states.{l}"),
            values(hidden.clone()),
            fx.get(&format!("expected.hidden_states.{l}")),
            TOL,
        );
        assert_close(
            &format!("{name} attentions.{l}"),
            values(attention.clone()),
            fx.get(&format!("expected.attentions.{l}")),
            TOL,
        );
    }
    assert_close(
        &format!("{name} z_hat"),
        values(out.last_hidden_state.clone()),
        fx.get("expected.z_hat"),
        TOL,
    );

    // Training-time RoPE rescale with its random draw fixed (1.37, as in the fixture).
    let scaled = backbone.forward(
        pixels.clone(),
        &ForwardOptions {
            rope_scale: 1.37,
            ..ForwardOptions::eval()
        },
    );
    assert_close(
        &format!("{name} z_hat_rope_scaled"),
        values(scaled.last_hidden_state),
        fx.get("expected.z_hat_rope_scaled"),
        TOL,
    );

    if let Some(classifier) = &logits_model {
        let logits = classifier.forward(pixels.clone(), &ForwardOptions::eval());
        assert_close(
            &format!("{name} logits"),
            values(logits),
            fx.get("expected.logits"),
            TOL,
        );
    }

    let no_shift = prediction_loss(
        out.last_hidden_state.clone(),
        out.input_embedding.clone(),
        LossOptions {
            shift: false,
            stop_grad: true,
        },
    );
    assert_close(
        &format!("{name} loss_no_shift"),
        values(no_shift),
        fx.get("expected.loss_no_shift"),
        LOSS_TOL,
    );

    let loss = prediction_loss(
        out.last_hidden_state,
        out.input_embedding,
        LossOptions::default(),
    );
    assert_close(
        &format!("{name} loss"),
        values(loss.clone()),
        fx.get("expected.loss"),
        LOSS_TOL,
    );

    let grads = loss.backward();
    let grads = backbone_gradients(&backbone, &grads);
    let expected_grads = fx
        .io_keys()
        .into_iter()
        .filter(|k| k.starts_with("grad."))
        .count();
    assert_eq!(
        grads.len(),
        expected_grads,
        "{name}: every backbone parameter has a gradient"
    );
    for grad in grads {
        assert_close(
            &format!("{name} grad.{}", grad.key),
            (grad.shape.clone(), values(grad.values).1),
            fx.get(&format!("grad.{}", grad.key)),
            TOL,
        );
    }

    check_no_stop_grad(&fx, &backbone, &device);
}

/// Without stop-grad the embedding also gets gradient through the target side.
fn check_no_stop_grad(fx: &Fixture, backbone: &NepaModel, device: &Device) {
    let pixels = fx.tensor::<4>("input.pixel_values", device);
    let out = backbone.forward(pixels, &ForwardOptions::eval());
    let loss = prediction_loss(
        out.last_hidden_state,
        out.input_embedding,
        LossOptions {
            shift: true,
            stop_grad: false,
        },
    );
    let grads = loss.backward();
    let mut checked = 0;
    for grad in backbone_gradients(backbone, &grads) {
        let key = format!("grad_no_stopgrad.{}", grad.key);
        if fx.has(&key) {
            assert_close(
                &format!("{} {key}", fx.name),
                (grad.shape.clone(), values(grad.values).1),
                fx.get(&key),
                TOL,
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, 3,
        "{}: conv weight, conv bias and CLS checked",
        fx.name
    );
}

macro_rules! parity_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_fixture(stringify!($name));
            }
        )*
    };
}

parity_tests!(
    causal_gelu_2x2,
    causal_gelu_affine_4x3,
    causal_swiglu_4x3,
    bidir_gelu_2x2_cls,
    bidir_swiglu_4x3_cls,
    causal_gelu_3x3_l3,
    causal_gelu_noqk_2x2,
);
