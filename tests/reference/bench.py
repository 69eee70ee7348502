"""PyTorch throughput benchmark of one NEPA pretraining step, written as a run report.

Reuses the independent reference model in ``nepa_ref.py`` (config dataclass, ``NepaModel`` and
``nepa_loss``); nothing of the model is re-implemented here.  The report follows the
``nepa-run-report/1`` schema of ``docs/run-report.md``, the same JSON that ``nepa bench`` (Rust)
and the browser write, so the numbers can be compared side by side.

Examples (from the repo root)::

    /work/venv/bin/python tests/reference/bench.py --preset tiny --layers 6 --threads 2
    /work/venv/bin/python tests/reference/bench.py --device cuda --preset base --image-size 224 \\
        --patch-size 14 --batch 64 --out bench-cuda.json

What is timed:

* train step = forward (train mode) + NEPA loss (shift, stop-grad) + backward + global-norm grad
  clip 1.0 + AdamW update (beta (0.9, 0.95), eps 1e-8, lr 1e-3 constant, wd 0.05 except biases,
  norms and LayerScale).  RoPE coordinate rescale is off unless ``--rope-rescale`` is given, and
  there is no drop-path (``nepa_ref`` has none), so a step is deterministic.
* inference = forward only, ``model.eval()`` under ``torch.no_grad()``.

Input is synthetic: one fixed batch of pixels drawn from U(-1, 1) with the seed, reused for every
step and run.  The output digest uses a closed-form probe image (see ``probe_pixels``) on the
weights before any training step.
"""

from __future__ import annotations

import argparse
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

# Same sizes as the Rust presets (crates/nepa/src/config.rs): intermediate = 4·D.
PRESETS = {
    "tiny": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, qk_norm_affine=True),
}

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


# ----------------------------------------------------------------------------- main


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
    model = NepaModel(cfg)
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
    params = sum(p.numel() for p in model.parameters())

    # Synthetic data: one fixed batch, U(-1, 1), from its own seeded generator.
    gen = torch.Generator().manual_seed(a.seed)
    h, w = cfg.image_size
    pixels = (torch.rand(a.batch, cfg.num_channels, h, w, generator=gen, dtype=torch.float32) * 2 - 1).to(device)
    rope_gen = torch.Generator().manual_seed(a.seed + 1)

    # ---- output digest (before any training step)
    model.eval()
    with torch.no_grad():
        out = model(probe_pixels(cfg).to(device))
        zh = out["z_hat"].double().cpu()
        probe_loss = nepa_loss(out["z_hat"], out["z"]).item()
    digest = {
        "probe": PROBE_DESCRIPTION,
        "z_hat_sum": zh.sum().item(),
        "z_hat_abs_mean": zh.abs().mean().item(),
        "z_hat_first": [r(v, 7) for v in zh[0, 0, :8].tolist()],
        "z_hat_last": [r(v, 7) for v in zh[0, -1, :8].tolist()],
        "loss": probe_loss,
    }
    del out, zh

    # ---- inference: forward only, eval mode, no grad
    inference = None
    if not a.skip_inference:
        times = []
        with torch.no_grad():
            for i in range(a.warmup_runs + a.runs):
                sync(device)
                t0 = time.perf_counter()
                out = model(pixels)
                sync(device)
                times.append((time.perf_counter() - t0) * 1e3)
                del out
        ms = times[a.warmup_runs:]
        med = statistics.median(ms)
        inference = {
            "warmup_runs": a.warmup_runs,
            "runs": a.runs,
            "ms": [r(t) for t in ms],
            "ms_median": r(med),
            "images_per_sec": r(a.batch / (med / 1e3), 2),
            "first_run_ms": r(times[0]),
        }

    # ---- train: forward + loss + backward + clip + AdamW
    train = None
    if not a.skip_train:
        named = list(model.named_parameters())
        groups = [
            {"params": [p for k, p in named if not is_no_decay(k)], "weight_decay": 0.05},
            {"params": [p for k, p in named if is_no_decay(k)], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
        model.train()
        times, losses, grad_norms = [], [], []
        for i in range(a.warmup + a.steps):
            scale = 1.0
            if a.rope_rescale is not None and a.rope_rescale > 1.0:
                ls = math.log(a.rope_rescale)
                scale = math.exp((torch.rand((), generator=rope_gen, dtype=torch.float64).item() * 2 - 1) * ls)
            sync(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out = model(pixels, rope_scale=scale)
            loss = nepa_loss(out["z_hat"], out["z"], shift=True, stop_grad=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            opt.step()
            sync(device)
            times.append((time.perf_counter() - t0) * 1e3)
            losses.append(loss.detach())
            grad_norms.append(gn.detach())
            del out, loss
        ms = times[a.warmup:]
        med = statistics.median(ms)
        train = {
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

    # ---- memory
    notes = [
        "synthetic data: one fixed batch of pixels ~ U(-1, 1) from torch.Generator().manual_seed(seed), "
        "reused for every step and run",
        "model: tests/reference/nepa_ref.py (explicit softmax attention, no fused SDPA), float32",
        "train mode without RoPE rescale or drop-path" if a.rope_rescale is None
        else f"train mode with RoPE rescale s={a.rope_rescale}, no drop-path",
    ]
    if device.type == "cuda":
        peak = int(torch.cuda.max_memory_allocated(device))
        peak_kind = "cuda-max-allocated"
        notes.append("peak_memory_bytes = torch.cuda.max_memory_allocated (tensor memory only); TF32 off")
    else:
        # Linux reports ru_maxrss in KiB (macOS in bytes).
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = int(rss if sys.platform == "darwin" else rss * 1024)
        peak_kind = "process-rss"
        notes.append("peak_memory_bytes = peak process RSS (ru_maxrss), includes the Python/torch runtime")

    report = {
        "schema": SCHEMA,
        "tool": "torch-reference",
        "created_unix": int(time.time()),
        "backend": "torch-cuda" if device.type == "cuda" else "torch-cpu",
        "adapter": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model_name(),
        "threads": None if device.type == "cuda" else torch.get_num_threads(),
        "model": model_json(cfg, a),
        "params": params,
        "seed": a.seed,
        "batch": a.batch,
        "train": train,
        "inference": inference,
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
        "output_digest": digest,
        "dtype": "float32",
        "weights": weights,
        "versions": {"torch": torch.__version__, "python": platform.python_version(),
                     "cuda": torch.version.cuda if device.type == "cuda" else None},
        "host": {"os": platform.platform(), "logical_cpus": os.cpu_count(),
                 "loadavg_1m_at_start": None if load_at_start is None else round(load_at_start, 2)},
        "command": " ".join([os.path.basename(sys.argv[0])] + (sys.argv[1:] if argv is None else list(argv))),
        "notes": notes,
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
