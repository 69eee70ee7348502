"""Regenerate the NEPA parity fixtures in tests/fixtures/ (run from the repo root):

    /work/venv/bin/python tests/reference/make_fixtures.py

Deterministic: fixed per-config seeds, single-threaded, weights and inputs drawn in float64,
rounded to float32 (that is what is saved), then everything is computed in float64 from the
rounded values and the results are saved as float32.  See tests/reference/README.md for the format.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from dataclasses import replace

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

sys.dont_write_bytecode = True  # keep tests/reference free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nepa_ref import (  # noqa: E402
    LayerScale,
    NepaConfig,
    NepaForImageClassification,
    backbone,
    build_model,
    nepa_loss,
)

ROPE_SCALE = 1.37
PREFIX = "vit_nepa."
OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")

_base = NepaConfig(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, patch_size=4,
    image_size=[8, 8], num_channels=3, qkv_bias=True, qk_norm=True, qk_norm_affine=False,
    layerscale_value=1e-5, layer_norm_eps=1e-12, rope_theta=100.0, is_causal=True,
    use_gated_mlp=False, hidden_act="gelu", num_labels=0,
)

# (name, config, batch, prefix)
CONFIGS = [
    ("causal_gelu_2x2", replace(_base), 2, True),
    ("causal_gelu_affine_4x3", replace(_base, image_size=[16, 12], qk_norm_affine=True), 3, False),
    ("causal_swiglu_4x3", replace(_base, image_size=[16, 12], intermediate_size=40, use_gated_mlp=True,
                                  hidden_act="silu", qk_norm_affine=True), 2, True),
    ("bidir_gelu_2x2_cls", replace(_base, is_causal=False, num_labels=5), 2, True),
    ("bidir_swiglu_4x3_cls", replace(_base, image_size=[16, 12], intermediate_size=40, use_gated_mlp=True,
                                     hidden_act="silu", qk_norm_affine=True, is_causal=False, num_labels=3), 3, True),
    ("causal_gelu_3x3_l3", replace(_base, image_size=[9, 9], patch_size=3, hidden_size=48, num_attention_heads=2,
                                   num_hidden_layers=3, intermediate_size=64, qk_norm_affine=True), 2, False),
    ("causal_gelu_noqk_2x2", replace(_base, qk_norm=False), 2, False),
]


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def r32(t: torch.Tensor) -> torch.Tensor:
    """Round a float64 tensor to float32 precision, keep float64 dtype."""
    return t.float().double()


@torch.no_grad()
def randomize(model: nn.Module, g: torch.Generator):
    """Overwrite every parameter with O(1) random values (sensitive weights), float32-representable."""

    def normal(p, std):
        p.copy_(r32(torch.randn(p.shape, generator=g, dtype=torch.float64) * std))

    def uniform(p, lo, hi):
        p.copy_(r32(lo + (hi - lo) * torch.rand(p.shape, generator=g, dtype=torch.float64)))

    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            normal(m.weight, fan_in ** -0.5)  # classifier: fan_in = D -> N(0, 1/D)
            if m.bias is not None:
                normal(m.bias, 0.1)
        elif isinstance(m, nn.LayerNorm):
            is_qk = name.endswith("q_norm") or name.endswith("k_norm")
            if m.weight is not None:
                uniform(m.weight, 0.5, 2.0) if is_qk else uniform(m.weight, 0.5, 1.5)
            if m.bias is not None:
                normal(m.bias, 0.2)
        elif isinstance(m, LayerScale):
            uniform(m.lambda1, 0.3, 1.2)
        elif name.endswith("embeddings") and hasattr(m, "cls_token"):
            normal(m.cls_token, 1.0)
    # every parameter must have been touched by one of the rules above
    counted = set()
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm, LayerScale)) or hasattr(m, "cls_token"):
            for pn, _ in m.named_parameters(recurse=False):
                counted.add(f"{name}.{pn}" if name else pn)
    assert counted == set(n for n, _ in model.named_parameters()), "unhandled parameter"


def save_safetensors(tensors, path, metadata):
    """Minimal deterministic safetensors writer (the library serializes metadata from a hash map,
    so its key order - and thus the file bytes - varies between runs).  Only float32 tensors.
    Header: JSON with sorted keys, ``__metadata__`` first, padded with spaces to a multiple of 8."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for k in sorted(tensors):
        t = tensors[k]
        assert t.dtype == torch.float32
        b = t.contiguous().numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def model_state_dict(model: nn.Module, prefix: bool):
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    if isinstance(model, NepaForImageClassification):
        assert prefix, "classifier fixtures always carry the vit_nepa. prefix"
        return sd
    return {(PREFIX + k if prefix else k): v for k, v in sd.items()}


def grads(model: nn.Module, pixel_values, stop_grad: bool):
    bb = backbone(model)
    model.zero_grad(set_to_none=True)
    out = bb(pixel_values)
    loss = nepa_loss(out["z_hat"], out["z"], shift=True, stop_grad=stop_grad)
    loss.backward()
    res = {}
    for k, p in bb.named_parameters():
        res[k] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
    model.zero_grad(set_to_none=True)
    return res


def metadata(name, cfg, batch, prefix):
    c = cfg.to_dict()
    c["prefix"] = prefix
    c["batch"] = batch
    return {
        "name": name,
        "config": json.dumps(c, sort_keys=True),
        "rope_scale": repr(ROPE_SCALE),
        "prefix": "true" if prefix else "false",
    }


def f32(t):
    return t.detach().float().contiguous()


def make_one(name, cfg, batch, prefix):
    g = torch.Generator().manual_seed(seed_of(name))
    model = build_model(cfg).double().eval()
    randomize(model, g)
    h, w = cfg.image_size
    x = r32(torch.rand((batch, cfg.num_channels, h, w), generator=g, dtype=torch.float64) * 2.0 - 1.0)

    with torch.no_grad():
        out = model(x)
        out_scaled = model(x, rope_scale=ROPE_SCALE)
        loss = nepa_loss(out["z_hat"], out["z"], shift=True, stop_grad=True)
        loss_ns = nepa_loss(out["z_hat"], out["z"], shift=False, stop_grad=True)

    io = {"input.pixel_values": f32(x), "expected.z": f32(out["z"]), "expected.z_hat": f32(out["z_hat"])}
    for l, (hs, at) in enumerate(zip(out["hidden_states"], out["attentions"])):
        io[f"expected.hidden_states.{l}"] = f32(hs)
        io[f"expected.attentions.{l}"] = f32(at)
    io["expected.loss"] = f32(loss.reshape(1))
    io["expected.loss_no_shift"] = f32(loss_ns.reshape(1))
    if cfg.num_labels > 0:
        io["expected.logits"] = f32(out["logits"])
    io["expected.z_hat_rope_scaled"] = f32(out_scaled["z_hat"])

    g_sg = grads(model, x, stop_grad=True)
    for k, v in g_sg.items():
        io["grad." + k] = f32(v)
    g_nsg = grads(model, x, stop_grad=False)
    # only the embedding parameters feed the target, so only they differ without stop-grad
    for k in ("embeddings.patch_embeddings.projection.weight", "embeddings.patch_embeddings.projection.bias",
              "embeddings.cls_token"):
        io["grad_no_stopgrad." + k] = f32(g_nsg[k])
    for k in g_sg:
        if not k.startswith("embeddings."):
            assert torch.equal(g_sg[k], g_nsg[k]) or torch.allclose(g_sg[k], g_nsg[k], rtol=1e-12, atol=1e-15), k

    meta = metadata(name, cfg, batch, prefix)
    sd = model_state_dict(model, prefix)
    save_safetensors(sd, os.path.join(OUT_DIR, f"{name}.model.safetensors"), meta)
    save_safetensors(io, os.path.join(OUT_DIR, f"{name}.io.safetensors"), meta)
    return model, x, out, io, sd


# ----------------------------------------------------------------------------- sanity checks


def check_rope_loop(cfg):
    """Scalar re-derivation of the RoPE rotation for every patch token and every dim pair."""
    import math
    from nepa_ref import apply_rope, rope_cos_sin
    hd, (gh, gw) = cfg.head_dim, cfg.grid
    nf, half = hd // 4, hd // 2
    g = torch.Generator().manual_seed(7)
    u = torch.randn((1, 1, 1 + gh * gw, hd), generator=g, dtype=torch.float64)
    for scale in (1.0, ROPE_SCALE):
        cos, sin = rope_cos_sin(cfg, scale)
        r = apply_rope(u, cos, sin)
        assert torch.equal(r[0, 0, 0], u[0, 0, 0]), "CLS must not be rotated"
        for row in range(gh):
            for col in range(gw):
                t = 1 + row * gw + col
                y = ((row + 0.5) / gh * 2 - 1) * scale
                xc = ((col + 0.5) / gw * 2 - 1) * scale
                for a in range(half):  # dim a pairs with a + hd/2
                    j = a % nf
                    coord = y if a < nf else xc
                    th = 2 * math.pi * coord / cfg.rope_theta ** (j * 4 / hd)
                    u0, u1 = u[0, 0, t, a].item(), u[0, 0, t, a + half].item()
                    e0 = u0 * math.cos(th) - u1 * math.sin(th)
                    e1 = u1 * math.cos(th) + u0 * math.sin(th)
                    assert abs(r[0, 0, t, a].item() - e0) < 1e-12 and abs(r[0, 0, t, a + half].item() - e1) < 1e-12


def check(name, cfg, model, x, out, sd, prefix):
    msgs = []
    check_rope_loop(cfg)
    bb = backbone(model)
    gh, gw = cfg.grid
    T = 1 + gh * gw
    assert out["z"].shape == (x.shape[0], T, cfg.hidden_size)
    # attention rows sum to 1; causal -> future entries exactly 0
    for l, a in enumerate(out["attentions"]):
        assert a.shape == (x.shape[0], cfg.num_attention_heads, T, T)
        assert torch.allclose(a.sum(-1), torch.ones_like(a[..., 0]), atol=1e-12), f"layer {l} rows"
        fut = torch.ones(T, T, dtype=torch.bool).triu(1)
        if cfg.is_causal:
            assert (a[..., fut] == 0).all(), "future attention not exactly 0"
        else:
            assert (a[..., fut] > 0).all()
    # non-uniformity: mean over rows (t >= 1) of max prob / uniform prob and of total variation to uniform
    a = torch.stack(out["attentions"])  # [L,B,H,T,T]
    n_allowed = (torch.arange(T) + 1).double() if cfg.is_causal else torch.full((T,), float(T), dtype=torch.float64)
    ratio = (a.amax(-1) * n_allowed)[..., 1:].mean().item()
    allowed = torch.ones(T, T, dtype=torch.bool).tril() if cfg.is_causal else torch.ones(T, T, dtype=torch.bool)
    uni = allowed.double() / allowed.double().sum(-1, keepdim=True)
    tv = (0.5 * (a - uni).abs().sum(-1))[..., 1:].mean().item()
    assert ratio > 1.5 and tv > 0.15, (ratio, tv)
    msgs.append(f"attn max/uniform={ratio:.2f} TV-to-uniform={tv:.3f}")

    # causality: change the last patch's pixels
    p = cfg.patch_size
    h, w = cfg.image_size
    x2 = x.clone()
    x2[:, :, h - p:, w - p:] = r32(-x2[:, :, h - p:, w - p:] * 0.7 + 0.1)
    with torch.no_grad():
        o2 = bb(x2)
    pairs = [("z", out["z"], o2["z"]), ("z_hat", out["z_hat"], o2["z_hat"])]
    pairs += [(f"hs{l}", a1, a2) for l, (a1, a2) in enumerate(zip(out["hidden_states"], o2["hidden_states"]))]
    for nm, a1, a2 in pairs:
        assert (a1[:, -1] - a2[:, -1]).abs().max() > 1e-3, f"last position insensitive ({nm})"
        early = (a1[:, :-1] - a2[:, :-1]).abs().max().item()
        if cfg.is_causal:
            assert early == 0.0, f"causality violated in {nm}: {early}"
        elif nm != "z":
            assert early > 1e-3, f"bidirectional model insensitive at earlier positions ({nm})"
    for l, (a1, a2) in enumerate(zip(out["attentions"], o2["attentions"])):
        early = (a1[:, :, :-1] - a2[:, :, :-1]).abs().max().item()
        if cfg.is_causal:
            assert early == 0.0, f"causality violated in attentions.{l}"
    msgs.append("causal: earlier positions bit-identical" if cfg.is_causal else "bidir: earlier positions change")

    # sensitivity: every component moves the loss / outputs
    with torch.no_grad():
        for pn, prm in model.named_parameters():
            old = prm.clone()
            prm.mul_(1.1).add_(0.05)
            o3 = model(x)
            key = "logits" if pn.startswith(("fc_norm", "classifier")) else "z_hat"
            d = (o3[key] - out[key]).abs().max().item()
            prm.copy_(old)
            assert d > 1e-4, f"output insensitive to {pn}: {d}"
    msgs.append("all params sensitive")

    # the rope_scale argument must matter
    with torch.no_grad():
        d = (bb(x, rope_scale=ROPE_SCALE)["z_hat"] - out["z_hat"]).abs().max().item()
    assert d > 1e-3, "rope_scale has no effect"
    msgs.append("rope loop-check ok")

    # reload the saved float32 weights into a fresh model and reproduce the expectations
    fresh = build_model(cfg).double().eval()
    loaded = load_file(os.path.join(OUT_DIR, f"{name}.model.safetensors"))
    if prefix and not isinstance(fresh, NepaForImageClassification):
        loaded = {k[len(PREFIX):]: v for k, v in loaded.items()}
    fresh.load_state_dict({k: v.double() for k, v in loaded.items()}, strict=True)
    io = load_file(os.path.join(OUT_DIR, f"{name}.io.safetensors"))
    for suffix in ("model", "io"):
        with safe_open(os.path.join(OUT_DIR, f"{name}.{suffix}.safetensors"), "pt") as f:
            md = f.metadata()
        assert json.loads(md["config"])["prefix"] == prefix and md["rope_scale"] == "1.37"
    with torch.no_grad():
        o4 = fresh(io["input.pixel_values"].double())
    err = (o4["z_hat"] - io["expected.z_hat"].double()).abs().max().item()
    assert err < 1e-5, err
    msgs.append(f"reload ok (z_hat err {err:.1e})")
    return msgs


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, cfg, batch, prefix in CONFIGS:
        model, x, out, io, sd = make_one(name, cfg, batch, prefix)
        msgs = check(name, cfg, model, x, out, sd, prefix)
        print(f"{name}: loss={io['expected.loss'].item():+.6f} loss_no_shift={io['expected.loss_no_shift'].item():+.6f} "
              f"| " + "; ".join(msgs))
    total = 0
    for fn in sorted(os.listdir(OUT_DIR)):
        sz = os.path.getsize(os.path.join(OUT_DIR, fn))
        total += sz
        print(f"  {fn:45s} {sz:8d} B")
    print(f"total fixture size: {total} B ({total / 1024:.1f} KiB)")
    assert total < 2_000_000, "fixtures too large"


if __name__ == "__main__":
    main()
