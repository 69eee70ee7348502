//! The model crate in a real browser (headless Chromium via wasm-bindgen-test): device
//! initialisation, loading a checkpoint from bytes, and a forward pass whose ẑ matches the
//! PyTorch reference — which native Flex matches to 1e-4 (crates/nepa/tests/parity.rs) — on WebGPU and
//! on the Flex (CPU, wasm) fallback. Also the async save path the browser must use.
#![cfg(target_arch = "wasm32")]

use std::sync::Once;

use burn::tensor::{Device, Tensor, TensorData};
use nepa::bench::max_abs_diff;
use nepa::checkpoint::{backbone_tensors, config_from_metadata, to_safetensors_async};
use nepa::{ForwardOptions, LoadOptions, NepaConfig, load_backbone};
use safetensors::SafeTensors;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// Runs the static constructors once (a wasm command module otherwise re-runs them on
/// every export call; docs/feasibility.md §5.2).
fn ctors() {
    static ONCE: Once = Once::new();
    // SAFETY: guarded to run exactly once, before any other use of the registries.
    ONCE.call_once(|| unsafe { __wasm_call_ctors() });
}

thread_local! {
    static WEBGPU: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
}

/// The WebGPU device, initialised once for all tests of this page (a second
/// initialisation of the default device is refused).
async fn webgpu() -> Device {
    if let Some(device) = WEBGPU.with(|d| d.borrow().clone()) {
        return device;
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .expect("WebGPU adapter (run Chromium with --enable-unsafe-webgpu)");
    WEBGPU.with(|d| *d.borrow_mut() = Some(device.clone()));
    device
}

const MODEL: &[u8] = include_bytes!("../../../tests/fixtures/causal_swiglu_4x3.model.safetensors");
const IO: &[u8] = include_bytes!("../../../tests/fixtures/causal_swiglu_4x3.io.safetensors");

fn io_tensor(key: &str) -> (Vec<usize>, Vec<f32>) {
    let file = SafeTensors::deserialize(IO).unwrap();
    let view = file.tensor(key).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), values)
}

async fn forward_matches_reference(device: &Device) {
    let (_, meta) = SafeTensors::read_metadata(IO).unwrap();
    let config = NepaConfig::from_json(&meta.metadata().as_ref().unwrap()["config"]).unwrap();
    let (model, report) = load_backbone(MODEL, &config, device, LoadOptions::default()).unwrap();
    assert!(report.prefixed);
    let (shape, pixels) = io_tensor("input.pixel_values");
    let pixels = Tensor::<4>::from_data(TensorData::new(pixels, shape), device);
    let z_hat = model
        .forward(pixels, &ForwardOptions::eval())
        .last_hidden_state;
    let (expected_shape, expected) = io_tensor("expected.z_hat");
    assert_eq!(z_hat.dims().to_vec(), expected_shape);
    let got = z_hat
        .into_data_async()
        .await
        .unwrap()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    // NaN or a length mismatch counts as infinitely far.
    let diff = max_abs_diff(&got, &expected);
    assert!(
        diff < 1e-3,
        "browser ẑ differs from the reference by {diff}"
    );

    // Saving reads the parameters back asynchronously; the file round-trips.
    let bytes = to_safetensors_async(&backbone_tensors(&model, true), &config)
        .await
        .unwrap();
    assert_eq!(config_from_metadata(&bytes).unwrap(), Some(config.clone()));
    load_backbone(&bytes, &config, device, LoadOptions::default()).unwrap();
}

#[wasm_bindgen_test]
async fn webgpu_forward_matches_the_reference() {
    ctors();
    let device = webgpu().await;
    forward_matches_reference(&device).await;
}

#[wasm_bindgen_test]
async fn flex_fallback_forward_matches_the_reference() {
    ctors();
    forward_matches_reference(&Device::flex()).await;
}

/// Fine-tuning (LoRA, the page's default) for 500 steps on WebGPU: the device memory Burn
/// reports must stay flat, i.e. nothing accumulates per step (graphs, optimizer state,
/// read-back buffers).
#[wasm_bindgen_test]
async fn webgpu_finetuning_memory_stays_flat_over_500_steps() {
    use nepa::NepaClassifier;
    use nepa::bench::{seeded_backbone, synthetic_batch};
    use nepa::finetune::{FinetuneMode, FinetuneSettings, Finetuner};
    use nepa::recipe::smooth_one_hot;
    use nepa::train::UpdatePlan;
    use wasm_bindgen_test::console_log;

    ctors();
    let device = webgpu().await;
    let config = NepaConfig::new(32, 2, 2)
        .with_image_size(16, 16)
        .with_patch_size(4);
    let backbone = seeded_backbone(&config, 0, &device).unwrap();
    let settings = FinetuneSettings {
        mode: FinetuneMode::Lora,
        ..FinetuneSettings::small_data()
    };
    let model = NepaClassifier::from_backbone(backbone, 2, &device);
    let mut tuner = Finetuner::new(model, &settings, 500);
    let autodiff = device.clone().autodiff();
    let pixels = Tensor::<4>::from_data(synthetic_batch(&config, 4, 1), &autodiff);
    let targets = Tensor::<2>::from_data(
        TensorData::new(smooth_one_hot(&[0, 1, 0, 1], 2, 0.1).unwrap(), [4, 2]),
        &autodiff,
    );
    let mut usage = vec![];
    for step in 0..500 {
        let out = tuner.step(
            pixels.clone(),
            targets.clone(),
            &ForwardOptions::eval(),
            UpdatePlan::default(),
        );
        let loss = out.loss.into_data_async().await.unwrap();
        assert!(loss.convert::<f32>().try_into_vec::<f32>().unwrap()[0].is_finite());
        let m = device
            .memory_pool_usage()
            .expect("WebGPU reports its memory pool");
        usage.push((m.bytes_in_use, m.bytes_reserved));
        if step % 100 == 0 || step == 499 {
            console_log!(
                "step {step}: in use {} B, reserved {} B, {} allocations",
                m.bytes_in_use,
                m.bytes_reserved,
                m.number_allocs
            );
        }
    }
    // After a warm-up of 50 steps (optimizer state and pools are created lazily), the
    // in-use bytes of the last step equal those of step 50 within 5 %.
    let (early, late) = (usage[49], usage[499]);
    assert!(
        (late.0 as f64) <= early.0 as f64 * 1.05 + 65536.0,
        "memory in use grew from {} to {} bytes",
        early.0,
        late.0
    );
    assert!(
        (late.1 as f64) <= early.1 as f64 * 1.05 + 1048576.0,
        "reserved memory grew from {} to {} bytes",
        early.1,
        late.1
    );
}

/// nepa's fused attention kernels (docs/attention.md §Fused attention) on WebGPU against Burn's
/// decomposed softmax(q·kᵀ)·v: output and dQ, dK, dV within 1e-5, causal and bidirectional, for
/// sequence lengths that fit one tile, fill their last tile or leave it ragged.
#[wasm_bindgen_test]
async fn webgpu_fused_attention_matches_the_decomposed_path() {
    use burn::tensor::activation::softmax;
    use burn::tensor::{Bool, Distribution};
    use nepa::kernels::flash_attention;

    async fn values(t: Tensor<4>) -> Vec<f32> {
        let data = t.into_data_async().await.unwrap();
        data.convert::<f32>().try_into_vec::<f32>().unwrap()
    }
    fn decomposed(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
        let t = q.dims()[2];
        let mut scores = q.matmul(k.swap_dims(2, 3)) * 0.125;
        if causal {
            let above: Vec<bool> = (0..t * t).map(|i| i % t > i / t).collect();
            let mask =
                Tensor::<2, Bool>::from_data(TensorData::new(above, [t, t]), &scores.device())
                    .reshape([1, 1, t, t])
                    .expand(scores.dims());
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        softmax(scores, 3).matmul(v)
    }

    ctors();
    let device = webgpu().await.autodiff();
    for t in [5, 64, 65, 257] {
        let qkv = Tensor::<4>::random([2, t, 6, 64], Distribution::Normal(0.0, 1.0), &device)
            .swap_dims(1, 2);
        let weights = Tensor::<4>::random([2, 2, t, 64], Distribution::Normal(0.0, 1.0), &device);
        for causal in [true, false] {
            let mut results = vec![];
            for fused in [true, false] {
                let [q, k, v] =
                    [0, 1, 2].map(|i| qkv.clone().narrow(1, 2 * i, 2).detach().require_grad());
                let out = if fused {
                    flash_attention(q.clone(), k.clone(), v.clone(), causal, 0.125)
                        .unwrap_or_else(|_| panic!("WebGPU f32 tensors take the fused kernels"))
                } else {
                    decomposed(q.clone(), k.clone(), v.clone(), causal)
                };
                let grads = (out.clone() * weights.clone()).sum().backward();
                let mut all = vec![values(out).await];
                for x in [q, k, v] {
                    all.push(values(x.grad(&grads).unwrap()).await);
                }
                results.push(all);
            }
            for (name, (a, b)) in ["out", "dq", "dk", "dv"]
                .iter()
                .zip(results[0].iter().zip(&results[1]))
            {
                let diff = max_abs_diff(a, b);
                assert!(
                    diff <= 1e-5,
                    "t {t} causal {causal}: {name} max |Δ| {diff:e}"
                );
            }
        }
    }
}
