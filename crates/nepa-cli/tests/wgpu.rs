//! The model on burn-wgpu (Mesa lavapipe on a CPU-only machine, a real GPU elsewhere), built
//! with Burn's fusion and autotune (docs/performance.md §1): the reference fixture's ẑ, the
//! same training steps as Flex, and a few pretraining steps lowering the loss.

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use futures_lite::future::block_on;
use nepa::bench::{BenchRun, BenchSettings, compare_run, max_abs_diff};
use nepa::train::{AdamW, AdamWConfig, UpdatePlan, pretrain_step};
use nepa::{ForwardOptions, LoadOptions, LossOptions, NepaConfig, NepaModel, load_backbone};
use safetensors::SafeTensors;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tensor_f32(bytes: &[u8], key: &str) -> (Vec<usize>, Vec<f32>) {
    let file = SafeTensors::deserialize(bytes).unwrap();
    let view = file.tensor(key).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), values)
}

#[test]
fn wgpu_matches_the_reference_and_trains() {
    // One test: a process can initialise the wgpu runtime only once.
    let (device, setup) = Device::wgpu_options()
        .init_with_setup()
        .expect("no wgpu adapter: install mesa-vulkan-drivers (lavapipe) or run on a GPU");
    eprintln!("wgpu adapter: {:?}", setup.adapter.get_info().name);

    // Parity: the reference model's ẑ on the GPU backend.
    let model_bytes = fixture("causal_swiglu_4x3.model.safetensors");
    let io = fixture("causal_swiglu_4x3.io.safetensors");
    let (_, meta) = SafeTensors::read_metadata(&io).unwrap();
    let config = NepaConfig::from_json(&meta.metadata().as_ref().unwrap()["config"]).unwrap();
    let (model, _) = load_backbone(&model_bytes, &config, &device, LoadOptions::default()).unwrap();
    let (shape, pixels) = tensor_f32(&io, "input.pixel_values");
    let pixels = Tensor::<4>::from_data(TensorData::new(pixels, shape), &device);
    let z_hat = model
        .forward(pixels, &ForwardOptions::eval())
        .last_hidden_state;
    let (expected_shape, expected) = tensor_f32(&io, "expected.z_hat");
    assert_eq!(z_hat.dims().to_vec(), expected_shape);
    let got = z_hat
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    // NaN or a length mismatch counts as infinitely far.
    let diff = max_abs_diff(&got, &expected);
    assert!(diff < 1e-4, "wgpu ẑ differs from the reference by {diff}");

    // Training: a few steps on a fixed batch lower the loss.
    let train = device.clone().autodiff();
    train.seed(1);
    let config = NepaConfig::new(32, 2, 4)
        .with_image_size(16, 16)
        .with_patch_size(4);
    let mut model = NepaModel::new(&config, &train).unwrap();
    let pixels = Tensor::<4>::random([4, 3, 16, 16], Distribution::Uniform(-1.0, 1.0), &train);
    let mut optim = AdamW::new(AdamWConfig::default());
    let mut losses = vec![];
    for _ in 0..8 {
        let out = pretrain_step(
            model,
            &mut optim,
            pixels.clone(),
            3e-3,
            0.05,
            &ForwardOptions::eval(),
            LossOptions::default(),
            UpdatePlan::default(),
        );
        model = out.model;
        losses.push(out.loss.into_scalar::<f32>());
    }
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses[7] < losses[0] - 0.05, "{losses:?}");

    // Step parity: from the same host-side init, on the same batch, the wgpu steps (fused,
    // autotuned kernels) give Flex's loss and gradient norm at every step.
    let on_wgpu = train_steps(&device);
    let on_flex = train_steps(&Device::flex());
    assert_eq!((on_wgpu.len(), on_flex.len()), (5, 5));
    // A NaN fails these comparisons (`<` and `<=` are false for NaN).
    for (step, (w, f)) in on_wgpu.iter().zip(&on_flex).enumerate() {
        assert!(
            (w.0 - f.0).abs() < 1e-4 && (w.1 - f.1).abs() <= 1e-3 * f.1.abs(),
            "step {step}: wgpu (loss, grad norm) {w:?}, Flex {f:?}"
        );
    }
}

/// (loss, gradient norm) of 5 steps of the Compare run's model and batch on `device`.
fn train_steps(device: &Device) -> Vec<(f32, f32)> {
    let (config, settings) = compare_run();
    let settings = BenchSettings {
        steps: 5,
        warmup: 0,
        runs: 1,
        ..settings
    };
    let mut run = block_on(BenchRun::new(
        config,
        settings,
        &device.clone().autodiff(),
        None,
    ))
    .expect("bench run");
    let mut steps = vec![];
    while !run.train_done() {
        let record = block_on(run.train_step()).expect("train step");
        steps.push((record.loss, record.grad_norm));
    }
    steps
}
