"""PyTorch throughput benchmark of one NEPA pretraining step, written as a run report.

Reuses the independent reference model in ``nepa_ref.py`` (config dataclass, ``NepaModel`` and
``nepa_loss``); nothing of the model is re-implemented here.  The report follows the
``nepa-run-report/1`` schema of ``docs/run-report.md``, the same JSON that ``nepa bench`` (Rust)
and the browser write, so the numbers can be compared side by side.

Examples (from the repo root)::

    /work/venv/bin/python tests/reference/bench.py --preset tiny --layers 6 --threads 2
    /work/venv/bin/python tests/reference/bench.py --device cuda --preset base --image-size 224 \\
        --patch-size 14 --batch 64 --out bench-cuda.json
    # the official recipe's GPU setting: bf16 autocast and the fused attention kernel
    /work/venv/bin/python tests/reference/bench.py --device cuda --preset base --image-size 224 \\
        --patch-size 14 --batch 64 --amp bf16 --sdpa --out bench-cuda-bf16.json

What is timed:

* train step = forward (train mode) + NEPA loss (shift, stop-grad) + backward + global-norm grad
  clip 1.0 + AdamW update (beta (0.9, 0.95), eps 1e-8, lr 1e-3 constant, wd 0.05 except biases,
  norms and LayerScale).  RoPE coordinate rescale is off unless ``--rope-rescale`` is given, and
  there is no drop-path (``nepa_ref`` has none), so a step is deterministic.
* inference = forward only, ``model.eval()`` under ``torch.no_grad()``.
* ``--amp bf16|f16``: both forwards run under ``torch.autocast``; parameters, gradients and AdamW
  state stay float32 (f16 adds dynamic loss scaling).  ``--sdpa``: fused attention kernel.
* ``flops_per_image`` and ``train.tflops`` / ``inference.tflops``: matmul FLOPs as counted in
  docs/run-report.md §1.6, the same formula ``nepa bench`` uses.

Input is synthetic: one fixed batch of pixels drawn from U(-1, 1) with the seed, reused for every
step and run.  The output digest uses a closed-form probe image (see ``probe_pixels``) on the
weights before any training step.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict

import torch
from torch import nn

sys.dont_write_bytecode = True  # keep tests/reference free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nepa_ref import LayerScale, NepaConfig, NepaModel, nepa_loss  # noqa: E402

SCHEMA = "nepa-run-report/1"
BACKBONE_PREFIX = "vit_nepa."

# Same sizes as the Rust presets (crates/nepa-types/src/config.rs): intermediate = 4·D.
PRESETS = {
    "tiny": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, qk_norm_affine=True),
}

# --amp: autocast dtype of the timed forward passes, and the report's `dtype` for each.
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "f16": torch.float16}
DTYPE_NAMES = {"none": "float32", "bf16": "bfloat16-autocast", "f16": "float16-autocast"}

PROBE_DESCRIPTION = (
    "1 image [1, C, H, W]; pixel at row-major flat index i (c outer, then y, then x) = "
    "((37*i) mod 101)/50 - 1, computed in f64 and rounded to f32; eval mode, RoPE scale 1, "
    "weights before the first training step"
)


# ----------------------------------------------------------------------------- helpers


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                   help="model sizes (D, layers, heads); the explicit flags below override them")
    p.add_argument("--hidden-size", type=int)
    p.add_argument("--layers", type=int, help="num_hidden_layers")
    p.add_argument("--heads", type=int, help="num_attention_heads")
    p.add_argument("--intermediate", type=int, help="intermediate_size (default 4 x hidden size)")
    p.add_argument("--image-size", type=int, nargs="+", default=[32], metavar="PX",
                   help="square size, or height width (default 32)")
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--gated-mlp", action="store_true", help="SwiGLU MLP (use_gated_mlp, silu) instead of GELU")
    p.add_argument("--bidirectional", action="store_true", help="is_causal = false (fine-tuning attention)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10, help="measured train steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up train steps")
    p.add_argument("--runs", type=int, help="measured inference runs (default: --steps)")
    p.add_argument("--warmup-runs", type=int, help="untimed inference warm-up runs (default: --warmup)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rope-rescale", type=float, default=None,
                   help="enable train-time RoPE coordinate rescale exp(U(-ln s, ln s)) (default: off)")
    p.add_argument("--amp", choices=sorted(AMP_DTYPES), default="none",
                   help="run the timed forward passes under torch.autocast in bf16/f16; weights and "
                   "AdamW state stay float32 (the official recipe trains with bf16 autocast)")
    p.add_argument("--sdpa", action="store_true",
                   help="attention through torch.nn.functional.scaled_dot_product_attention (fused) "
                   "instead of the explicit softmax")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU); default: torch's choice")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", help="load backbone weights from a safetensors file (official keys) instead of init")
    p.add_argument("--save-init", metavar="PATH", help="write the initial weights (official bare keys) to safetensors")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-inference", action="store_true")
    p.add_argument("--out", help="write the JSON report here (it is always printed too)")
    a = p.parse_args(argv)
    if len(a.image_size) == 1:
        a.image_size = [a.image_size[0], a.image_size[0]]
    elif len(a.image_size) != 2:
        p.error("--image-size takes one or two numbers")
    if a.runs is None:
        a.runs = a.steps
    if a.warmup_runs is None:
        a.warmup_runs = a.warmup
    for name in ("batch", "steps", "runs"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1")
    if a.warmup < 0 or a.warmup_runs < 0:
        p.error("warm-up counts must be >= 0")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is false")
    return a


def build_config(a) -> NepaConfig:
    sizes = dict(PRESETS[a.preset])
    if a.hidden_size is not None:
        sizes["hidden_size"] = a.hidden_size
    if a.layers is not None:
        sizes["num_hidden_layers"] = a.layers
    if a.heads is not None:
        sizes["num_attention_heads"] = a.heads
    sizes["intermediate_size"] = a.intermediate if a.intermediate is not None else 4 * sizes["hidden_size"]
    cfg = NepaConfig(
        **sizes,
        patch_size=a.patch_size,
        image_size=list(a.image_size),
        num_channels=3,
        qkv_bias=True,
        qk_norm=True,
        layerscale_value=1e-5,
        layer_norm_eps=1e-12,
        rope_theta=100.0,
        is_causal=not a.bidirectional,
        use_gated_mlp=a.gated_mlp,
        hidden_act="silu" if a.gated_mlp else "gelu",
        num_labels=0,
    )
    cfg.validate()
    return cfg


def model_json(cfg: NepaConfig, a) -> dict:
    """The config under official config.json names, plus the train-time knobs nepa_ref lacks."""
    d = asdict(cfg)
    d.pop("num_labels")  # backbone only
    d["pos_embed_rescale"] = a.rope_rescale  # null: RoPE rescale off in this run
    d["drop_path_prob"] = 0.0
    d["initializer_range"] = 0.02
    d["model_type"] = "vit_nepa"
    return d


def init_weights(model: nn.Module, std: float = 0.02):
    """Official `_init_weights` (docs/nepa.md §2.2): Linear/Conv2d weight and cls_token ~
    trunc_normal(0, std) (PyTorch default bounds ±2, i.e. practically untruncated), biases 0,
    LayerNorm γ 1 / β 0, LayerScale λ = layerscale_value."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, LayerScale):
            nn.init.constant_(m.lambda1, model.cfg.layerscale_value)
    nn.init.trunc_normal_(model.embeddings.cls_token, mean=0.0, std=std)


def is_no_decay(key: str) -> bool:
    """Same rule as crates/nepa/src/train.rs: biases, every norm, LayerScale."""
    return key.endswith(".bias") or "norm." in key or key.endswith("lambda1")


def probe_pixels(cfg: NepaConfig) -> torch.Tensor:
    h, w = cfg.image_size
    n = cfg.num_channels * h * w
    i = torch.arange(n, dtype=torch.int64)
    v = ((37 * i) % 101).to(torch.float64) / 50.0 - 1.0
    return v.to(torch.float32).reshape(1, cfg.num_channels, h, w)


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


# ----------------------------------------------------------------------------- precision, FLOPs


def amp_context(device: torch.device, amp: str):
    """The autocast region of the timed forward passes; a no-op context for --amp none, so the
    float32 run executes exactly the ops it did before --amp existed."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def flops_per_image(cfg: NepaConfig) -> dict:
    """Matmul FLOPs of one image (docs/run-report.md §1.6; nepa bench counts the same way).

    Multiply-adds count 2. Per layer: Q, K, V, O projections 4·D² and the MLP 2·D·I (3·D·I
    gated) per token, plus QKᵀ and P·V at 2·T²·D each as a full square.  The causal mask is not
    halved, a fixed convention so both tools count alike (the explicit attention computes the
    whole square; a fused causal kernel may skip about half of it).  Patch embedding: a
    (C·p²) × D matmul per patch.  Biases, norms, softmax and RoPE are left out.  A train step is
    3 × forward (the backward pass is two matmuls per forward matmul)."""
    gh, gw = cfg.grid
    t, d, i = 1 + gh * gw, cfg.hidden_size, cfg.intermediate_size
    mlp = (3 if cfg.use_gated_mlp else 2) * d * i
    per_layer = 2 * t * (4 * d * d + mlp) + 4 * t * t * d
    patch = 2 * (t - 1) * cfg.num_channels * cfg.patch_size ** 2 * d
    forward = cfg.num_hidden_layers * per_layer + patch
    return {"forward": forward, "train": 3 * forward}


def tflops(flops: int, images_per_sec: float) -> float:
    return float(f"{flops * images_per_sec / 1e12:.4g}")


# ----------------------------------------------------------------------------- timed parts


def digest_of(model: nn.Module, cfg: NepaConfig, device: torch.device) -> dict:
    """Output digest of the probe image, in float32 without autocast, before any training step."""
    model.eval()
    with torch.no_grad():
        out = model(probe_pixels(cfg).to(device))
        zh = out["z_hat"].double().cpu()
        probe_loss = nepa_loss(out["z_hat"], out["z"]).item()
    return {
        "probe": PROBE_DESCRIPTION,
        "z_hat_sum": zh.sum().item(),
        "z_hat_abs_mean": zh.abs().mean().item(),
        "z_hat_first": [r(v, 7) for v in zh[0, 0, :8].tolist()],
        "z_hat_last": [r(v, 7) for v in zh[0, -1, :8].tolist()],
        "loss": probe_loss,
    }


def time_inference(model: nn.Module, pixels: torch.Tensor, a, device: torch.device) -> dict:
    """Forward only, eval mode, no grad."""
    model.eval()
    times = []
    with torch.no_grad():
        for _ in range(a.warmup_runs + a.runs):
            sync(device)
            t0 = time.perf_counter()
            with amp_context(device, a.amp):
                out = model(pixels)
            sync(device)
            times.append((time.perf_counter() - t0) * 1e3)
            del out
    ms = times[a.warmup_runs:]
    med = statistics.median(ms)
    return {
        "warmup_runs": a.warmup_runs,
        "runs": a.runs,
        "ms": [r(t) for t in ms],
        "ms_median": r(med),
        "images_per_sec": r(a.batch / (med / 1e3), 2),
        "first_run_ms": r(times[0]),
    }


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    named = list(model.named_parameters())
    groups = [
        {"params": [p for k, p in named if not is_no_decay(k)], "weight_decay": 0.05},
        {"params": [p for k, p in named if is_no_decay(k)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


def time_train(model: nn.Module, pixels: torch.Tensor, a, device: torch.device) -> dict:
    """Forward (train mode) + loss + backward + clip + AdamW, the step of docs/run-report.md §1.4.

    Parameters, gradients and AdamW state stay float32 under --amp; only the forward (and so the
    matching backward kernels) runs in the low precision.  float16 gets dynamic loss scaling, as
    float16 training in PyTorch always does: its narrow range would flush the small NEPA
    gradients (LayerScale 1e-5) to zero.  grad_norm is measured after unscaling."""
    opt = make_optimizer(model, a.lr)
    scaler = torch.amp.GradScaler(device.type) if a.amp == "f16" else None
    rope_gen = torch.Generator().manual_seed(a.seed + 1)
    model.train()
    times, losses, grad_norms = [], [], []
    for _ in range(a.warmup + a.steps):
        scale = 1.0
        if a.rope_rescale is not None and a.rope_rescale > 1.0:
            ls = math.log(a.rope_rescale)
            scale = math.exp((torch.rand((), generator=rope_gen, dtype=torch.float64).item() * 2 - 1) * ls)
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with amp_context(device, a.amp):
            out = model(pixels, rope_scale=scale)
            loss = nepa_loss(out["z_hat"], out["z"], shift=True, stop_grad=True)
        if scaler is None:
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            scaler.step(opt)
            scaler.update()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
        losses.append(loss.detach())
        grad_norms.append(gn.detach())
        del out, loss
    return train_report(a, times, losses, grad_norms)


def train_report(a, times, losses, grad_norms) -> dict:
    ms = times[a.warmup:]
    med = statistics.median(ms)
    return {
        "warmup_steps": a.warmup,
        "steps": a.steps,
        "step_ms": [r(t) for t in ms],
        "step_ms_median": r(med),
        "images_per_sec": r(a.batch / (med / 1e3), 2),
        "loss": [r(l.item(), 6) for l in losses[a.warmup:]],
        "first_step_ms": r(times[0]),
        "grad_norm": [r(g.item(), 6) for g in grad_norms[a.warmup:]],
        "optimizer": {
            "name": "adamw", "lr": a.lr, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.05,
            "no_decay": "biases, norms, LayerScale", "max_grad_norm": 1.0, "schedule": "constant",
        },
    }


# ----------------------------------------------------------------------------- report


def peak_memory(device: torch.device):
    """(bytes, kind, note) of the run's peak memory."""
    if device.type == "cuda":
        return (int(torch.cuda.max_memory_allocated(device)), "cuda-max-allocated",
                "peak_memory_bytes = torch.cuda.max_memory_allocated (tensor memory only); TF32 off")
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (int(rss if sys.platform == "darwin" else rss * 1024), "process-rss",
            "peak_memory_bytes = peak process RSS (ru_maxrss), includes the Python/torch runtime")


def run_notes(a) -> list:
    attention = ("fused torch.nn.functional.scaled_dot_product_attention, --sdpa; the attention "
                 "probabilities are not materialised" if a.sdpa else "explicit softmax attention, no fused SDPA")
    notes = [
        "synthetic data: one fixed batch of pixels ~ U(-1, 1) from torch.Generator().manual_seed(seed), "
        "reused for every step and run",
        f"model: tests/reference/nepa_ref.py, float32 weights; attention: {attention}",
        "train mode without RoPE rescale or drop-path" if a.rope_rescale is None
        else f"train mode with RoPE rescale s={a.rope_rescale}, no drop-path",
    ]
    if a.amp != "none":
        notes.append(
            f"--amp {a.amp}: the forward of every timed train step and inference run (and the loss) "
            f"under torch.autocast(dtype={AMP_DTYPES[a.amp]}); parameters, gradients and AdamW state "
            "float32; output_digest computed in float32 without autocast"
            + ("; dynamic loss scaling (torch.amp.GradScaler), grad_norm after unscaling" if a.amp == "f16" else ""))
    notes.append("flops_per_image: matmul FLOPs (2 per multiply-add) of the projections, MLP, QK^T and P.V "
                 "(full T x T square) and the patch embedding; train = 3 x forward (docs/run-report.md)")
    return notes


def main(argv=None):
    a = parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cpu" and a.threads is not None:
        torch.set_num_threads(a.threads)
    if device.type == "cuda":
        # Honest float32: no TF32 in matmuls or convolutions.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.cuda.reset_peak_memory_stats(device)

    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cfg = build_config(a)
    torch.manual_seed(a.seed)
    model = NepaModel(cfg, sdpa=a.sdpa)
    weights = {"source": "init", "init": "official: trunc_normal(0, 0.02) weights and cls_token, zero biases, "
               "LayerNorm 1/0, LayerScale 1e-5; torch.manual_seed(seed)"}
    if a.weights:
        from safetensors.torch import load_file

        sd = {k[len(BACKBONE_PREFIX):] if k.startswith(BACKBONE_PREFIX) else k: v for k, v in load_file(a.weights).items()}
        sd = {k: v for k, v in sd.items() if not k.startswith(("fc_norm.", "classifier."))}
        model.load_state_dict(sd, strict=True)
        weights = {"source": "file", "path": os.path.basename(a.weights), "sha256": sha256_file(a.weights)}
    else:
        init_weights(model)
    if a.save_init:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, a.save_init)
    model = model.to(device=device, dtype=torch.float32)

    # Synthetic data: one fixed batch, U(-1, 1), from its own seeded generator.
    gen = torch.Generator().manual_seed(a.seed)
    h, w = cfg.image_size
    pixels = (torch.rand(a.batch, cfg.num_channels, h, w, generator=gen, dtype=torch.float32) * 2 - 1).to(device)

    digest = digest_of(model, cfg, device)
    inference = None if a.skip_inference else time_inference(model, pixels, a, device)
    train = None if a.skip_train else time_train(model, pixels, a, device)
    flops = flops_per_image(cfg)
    if inference is not None:
        inference["tflops"] = tflops(flops["forward"], inference["images_per_sec"])
    if train is not None:
        train["tflops"] = tflops(flops["train"], train["images_per_sec"])
    peak, peak_kind, peak_note = peak_memory(device)
    report = {
        "schema": SCHEMA,
        "tool": "torch-reference",
        "created_unix": int(time.time()),
        "backend": "torch-cuda" if device.type == "cuda" else "torch-cpu",
        "adapter": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model_name(),
        "threads": None if device.type == "cuda" else torch.get_num_threads(),
        "model": model_json(cfg, a),
        "params": sum(p.numel() for p in model.parameters()),
        "seed": a.seed,
        "batch": a.batch,
        "train": train,
        "inference": inference,
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
        "output_digest": digest,
        "dtype": DTYPE_NAMES[a.amp],
        "attention": "sdpa" if a.sdpa else "explicit",
        "flops_per_image": flops,
        "weights": weights,
        "versions": {"torch": torch.__version__, "python": platform.python_version(),
                     "cuda": torch.version.cuda if device.type == "cuda" else None},
        "host": {"os": platform.platform(), "logical_cpus": os.cpu_count(),
                 "loadavg_1m_at_start": None if load_at_start is None else round(load_at_start, 2)},
        "command": " ".join([os.path.basename(sys.argv[0])] + (sys.argv[1:] if argv is None else list(argv))),
        "notes": run_notes(a) + [peak_note],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
        print(f"wrote {a.out}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
