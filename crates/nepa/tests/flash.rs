//! nepa's fused attention kernels (docs/attention.md §Fused attention) against Burn's decomposed
//! softmax(q·kᵀ)·v on burn-wgpu (Mesa lavapipe on a CPU-only machine, a real GPU elsewhere):
//! the output and dQ, dK, dV, causal and bidirectional, for sequence lengths that fill their
//! last tile, leave it ragged, or fit in one tile; and the memory a training step keeps for
//! the backward pass, which no longer grows with T².
#![cfg(feature = "cube")]

use std::sync::{Mutex, MutexGuard, OnceLock};

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};
use nepa::kernels::flash_attention;

/// One wgpu runtime per process: every test shares the device.
fn device() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            Device::wgpu_options()
                .init()
                .expect("no wgpu adapter: install mesa-vulkan-drivers (lavapipe) or run on a GPU")
        })
        .clone()
}

/// The tests run one at a time: the memory test reads the device's allocator.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Burn's decomposed attention with the key mask built from the data.
fn decomposed(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool, scale: f32) -> Tensor<4> {
    let t = q.dims()[2];
    let mut scores = q.matmul(k.swap_dims(2, 3)) * scale;
    if causal {
        let above: Vec<bool> = (0..t * t).map(|i| i % t > i / t).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(above, [t, t]), &scores.device())
            .reshape([1, 1, t, t])
            .expand(scores.dims());
        scores = scores.mask_fill(mask, f32::NEG_INFINITY);
    }
    softmax(scores, 3).matmul(v)
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if (x - y).is_nan() {
                f32::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f32::max)
}

/// q, k, v `[2, 3, t, d]` as the model passes them: heads as strided views of one tensor.
fn inputs(t: usize, d: usize, device: &Device) -> [Tensor<4>; 3] {
    let qkv =
        Tensor::<4>::random([2, t, 9, d], Distribution::Normal(0.0, 1.0), device).swap_dims(1, 2);
    [0, 1, 2].map(|i| qkv.clone().narrow(1, 3 * i, 3))
}

const LENGTHS: [usize; 4] = [5, 64, 65, 257];
const TOL: f32 = 1e-5;

#[test]
fn forward_matches_the_decomposed_path() {
    let _serial = serial();
    let device = device();
    for d in [64, 32] {
        let scale = 1.0 / (d as f32).sqrt();
        for t in LENGTHS {
            let [q, k, v] = inputs(t, d, &device);
            for causal in [true, false] {
                let ours = flash_attention(q.clone(), k.clone(), v.clone(), causal, scale)
                    .unwrap_or_else(|_| panic!("wgpu f32 tensors take the fused kernels"));
                let reference = decomposed(q.clone(), k.clone(), v.clone(), causal, scale);
                let diff = max_diff(&values(ours), &values(reference));
                println!("d {d} t {t} causal {causal}: forward max |Δ| {diff:.2e}");
                assert!(diff <= TOL, "d {d} t {t} causal {causal}: max |Δ| {diff:e}");
            }
        }
    }
}

#[test]
fn gradients_match_the_decomposed_path() {
    let _serial = serial();
    let device = device().autodiff();
    let d = 64;
    let scale = 1.0 / (d as f32).sqrt();
    for t in LENGTHS {
        let [q, k, v] = inputs(t, d, &device);
        let weights = Tensor::<4>::random(q.dims(), Distribution::Normal(0.0, 1.0), &device);
        for causal in [true, false] {
            let grads_of = |fused: bool| {
                let [q, k, v] = [&q, &k, &v].map(|x| x.clone().detach().require_grad());
                let out = if fused {
                    flash_attention(q.clone(), k.clone(), v.clone(), causal, scale)
                        .unwrap_or_else(|_| panic!("wgpu f32 tensors take the fused kernels"))
                } else {
                    decomposed(q.clone(), k.clone(), v.clone(), causal, scale)
                };
                let grads = (out * weights.clone()).sum().backward();
                [q, k, v].map(|x| values(x.grad(&grads).expect("a gradient")))
            };
            let (ours, reference) = (grads_of(true), grads_of(false));
            for (name, (a, b)) in ["dq", "dk", "dv"].iter().zip(ours.iter().zip(&reference)) {
                let diff = max_diff(a, b);
                println!("t {t} causal {causal}: {name} max |Δ| {diff:.2e}");
                assert!(
                    diff <= TOL,
                    "t {t} causal {causal}: {name} max |Δ| {diff:e}"
                );
            }
        }
    }
}

/// Bytes in use on the device after the forward pass of a training step (its output read, so
/// every operation ran), less those in use before: what the step keeps for its backward pass.
fn kept_for_backward(t: usize, fused: bool) -> u64 {
    let device = device().autodiff();
    let in_use = || {
        device
            .memory_pool_usage()
            .expect("wgpu reports its pool")
            .bytes_in_use
    };
    let [q, k, v] = inputs(t, 64, &device).map(|x| x.detach().require_grad());
    for x in [&q, &k, &v] {
        x.clone().into_data();
    }
    let before = in_use();
    let out = if fused {
        flash_attention(q.clone(), k.clone(), v.clone(), true, 0.125)
            .unwrap_or_else(|_| panic!("wgpu f32 tensors take the fused kernels"))
    } else {
        decomposed(q.clone(), k.clone(), v.clone(), true, 0.125)
    };
    let loss = out.sum();
    loss.clone().into_data();
    let kept = in_use().saturating_sub(before);
    let grads = loss.backward();
    assert!(q.grad(&grads).is_some());
    kept
}

/// From T = 129 to T = 257 (×1.99) what the decomposed path keeps grows about fourfold (the
/// probabilities, T²); the fused one keeps Q, K, V, O and the log-sum-exp, linear in T.
#[test]
fn fused_training_memory_grows_linearly() {
    let _serial = serial();
    let growth = |fused| {
        let (short, long) = (kept_for_backward(129, fused), kept_for_backward(257, fused));
        println!("fused {fused}: kept {short} B at T = 129, {long} B at T = 257");
        long as f64 / short.max(1) as f64
    };
    let (fused, decomposed) = (growth(true), growth(false));
    assert!(
        decomposed > 3.0,
        "the control: the decomposed path's memory grows {decomposed:.2}×"
    );
    assert!(fused < 2.5, "the fused path's memory grows {fused:.2}×");
}

/// The model with `--attention fused` gives the decomposed path's ẑ and input gradient on
/// wgpu, causal (pretraining) and bidirectional (fine-tuning); LayerScale 1 so that attention
/// shows in ẑ (at 1e-5 the two paths round to the same bits).
#[test]
fn the_model_takes_the_fused_kernels() {
    use nepa::kernels::{
        AttentionMode, fused_attention_calls, set_attention_mode, takes_fused_kernels,
    };
    use nepa::{ForwardOptions, NepaConfig, NepaModel};

    let _serial = serial();
    let device = device().autodiff();
    for causal in [true, false] {
        let config = NepaConfig::new(64, 2, 1)
            .with_image_size(20, 20)
            .with_patch_size(4)
            .with_causal(causal)
            .with_layerscale(1.0);
        let model = NepaModel::new(&config, &device).unwrap();
        let pixels = Tensor::<4>::random([2, 3, 20, 20], Distribution::Normal(0.0, 1.0), &device);
        let weights = Tensor::<3>::random([2, 26, 64], Distribution::Normal(0.0, 1.0), &device);
        let run = |mode| {
            set_attention_mode(mode);
            assert_eq!(takes_fused_kernels(&device), mode == AttentionMode::Fused);
            let x = pixels.clone().detach().require_grad();
            let calls = fused_attention_calls();
            let z = model
                .forward(x.clone(), &ForwardOptions::eval())
                .last_hidden_state;
            // One fused call per layer with --attention fused, none without.
            let taken = fused_attention_calls() - calls;
            assert_eq!(taken, if mode == AttentionMode::Fused { 2 } else { 0 });
            let grads = (z.clone() * weights.clone()).sum().backward();
            let dx = x.grad(&grads).unwrap();
            (values3(z), values(dx))
        };
        let (fused, decomposed) = (run(AttentionMode::Fused), run(AttentionMode::Decomposed));
        let (dz, dgrad) = (
            max_diff(&fused.0, &decomposed.0),
            max_diff(&fused.1, &decomposed.1),
        );
        let scale = decomposed.1.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        println!(
            "model causal {causal}: ẑ max |Δ| {dz:.2e}, input grad max |Δ| {dgrad:.2e} of {scale:.2e}"
        );
        assert!(dz <= 1e-5, "causal {causal}: ẑ max |Δ| {dz:e}");
        assert!(
            dgrad <= 1e-5 * scale,
            "causal {causal}: input gradient max |Δ| {dgrad:e}"
        );
    }
}

fn values3(t: Tensor<3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Burn's own `attention` op called as it takes its fused kernels (no `scale`, q unscaled: Burn
/// applies 1/√d itself) gives nepa's result; with `--nocapture` it prints the inference time of
/// the three paths (nepa's kernels, Burn's op, decomposed) at T 257 (docs/results/attention.md).
#[test]
fn burns_unscaled_attention_op_agrees() {
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use std::time::Instant;

    let _serial = serial();
    let device = device();
    let (t, d) = (257, 64);
    let scale = 1.0 / (d as f32).sqrt();
    let [q, k, v] = inputs(t, d, &device);
    let burn_op = |q: Tensor<4>| {
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        attention(q, k.clone(), v.clone(), None, None, options)
    };
    let ours = |q: Tensor<4>| {
        flash_attention(q * scale, k.clone(), v.clone(), true, 1.0)
            .unwrap_or_else(|_| panic!("wgpu f32 tensors take the fused kernels"))
    };
    let reference = |q: Tensor<4>| decomposed(q, k.clone(), v.clone(), true, scale);
    let diff = max_diff(&values(burn_op(q.clone())), &values(ours(q.clone())));
    println!("Burn's op without scale vs nepa's kernels: max |Δ| {diff:.2e}");
    assert!(diff <= TOL, "max |Δ| {diff:e}");
    type Path<'a> = (&'a str, &'a dyn Fn(Tensor<4>) -> Tensor<4>);
    let paths: [Path; 3] = [
        ("nepa fused", &ours),
        ("Burn op", &burn_op),
        ("decomposed", &reference),
    ];
    for (name, path) in paths {
        for _ in 0..2 {
            values(path(q.clone()));
        }
        let start = Instant::now();
        for _ in 0..5 {
            values(path(q.clone()));
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / 5.0;
        println!("{name}: {ms:.1} ms per call ([2, 3, {t}, {d}], causal, read back)");
    }
}

/// f16 inputs go through the same kernels (f32 tiles, softmax and accumulators; f16 loads and
/// stores). Compared with the f32 decomposed path on the same values (the f16 inputs widened),
/// what is left is the rounding of the f16 outputs: half an f16 ulp, 2⁻¹¹ of the largest value.
/// The stated bound is twice that: max |Δ| ≤ 2⁻¹⁰ · max |reference| (docs/attention.md).
#[test]
fn f16_inputs_match_f32_within_half_precision() {
    use burn::tensor::DType;

    let _serial = serial();
    let device = device().autodiff();
    let bound = |reference: &[f32]| reference.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 1024.0;
    let d = 64;
    let scale = 1.0 / (d as f32).sqrt();
    for t in LENGTHS {
        let [q, k, v] = inputs(t, d, &device).map(|x| x.cast(DType::F16));
        let weights =
            Tensor::<4>::random(q.dims(), Distribution::Normal(0.0, 1.0), &device).cast(DType::F16);
        for causal in [true, false] {
            let run = |half: bool| {
                let widen = |x: &Tensor<4>| {
                    let x = x.clone().detach();
                    if half { x } else { x.cast(DType::F32) }
                };
                let [q, k, v] = [&q, &k, &v].map(|x| widen(x).require_grad());
                let out = if half {
                    flash_attention(q.clone(), k.clone(), v.clone(), causal, scale)
                        .unwrap_or_else(|_| panic!("wgpu f16 tensors take the fused kernels"))
                } else {
                    decomposed(q.clone(), k.clone(), v.clone(), causal, scale)
                };
                assert_eq!(out.dtype(), if half { DType::F16 } else { DType::F32 });
                let grads = (out.clone() * widen(&weights)).sum().backward();
                let [dq, dk, dv] = [q, k, v].map(|x| values(x.grad(&grads).expect("a gradient")));
                [values(out), dq, dk, dv]
            };
            let (ours, reference) = (run(true), run(false));
            for (name, (a, b)) in ["out", "dq", "dk", "dv"]
                .iter()
                .zip(ours.iter().zip(&reference))
            {
                let (diff, bound) = (max_diff(a, b), bound(b));
                println!(
                    "f16 t {t} causal {causal}: {name} max |Δ| {diff:.2e} (bound {bound:.2e})"
                );
                assert!(
                    diff <= bound,
                    "f16 t {t} causal {causal}: {name} max |Δ| {diff:e} > {bound:e}"
                );
            }
        }
    }
}
