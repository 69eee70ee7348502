"""Independent PyTorch reference implementation of the NEPA vision transformer.

Written from docs/nepa.md (sections 2, 3 and 7.3) only.  Plain torch.nn,
works in float32 or float64 (call ``model.double()``).  Module attribute names are chosen so
that ``state_dict()`` yields exactly the official checkpoint keys:

* ``NepaModel``                    -> bare backbone keys (``embeddings.cls_token``, ...)
* ``NepaForImageClassification``   -> ``vit_nepa.<backbone key>``, ``fc_norm.*``, ``classifier.*``

Eval-mode semantics only: no dropout (all rates are 0 in the released configs), no drop-path,
and the train-time RoPE coordinate rescale is exposed as an explicit ``rope_scale`` argument
(the random draw fixed to a given scalar).

Attention is written out (``softmax(QKᵀ/√d + mask) V``) so that the probabilities can be returned
and checked.  ``NepaModel(cfg, sdpa=True)`` (off by default) computes the same function through
``torch.nn.functional.scaled_dot_product_attention`` instead, the fused kernel a fast PyTorch run
uses; it is opt-in for benchmarks (tests/reference/bench.py ``--sdpa``), and the fused kernel
does not expose the probabilities, so ``out["attentions"]`` then holds ``None`` for each layer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class NepaConfig:
    hidden_size: int = 32
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 48
    patch_size: int = 4
    image_size: List[int] = field(default_factory=lambda: [8, 8])  # [height, width]
    num_channels: int = 3
    qkv_bias: bool = True
    qk_norm: bool = True  # whether a QK LayerNorm exists at all
    qk_norm_affine: bool = False  # weight only, never a bias
    layerscale_value: float = 1e-5
    layer_norm_eps: float = 1e-12
    rope_theta: float = 100.0
    is_causal: bool = True
    use_gated_mlp: bool = False
    hidden_act: str = "gelu"  # "gelu" (exact erf) or "silu"
    num_labels: int = 0  # 0 = no classifier

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def grid(self):
        h, w = self.image_size
        return h // self.patch_size, w // self.patch_size

    def to_dict(self):
        return asdict(self)

    def validate(self):
        assert self.hidden_size % self.num_attention_heads == 0
        assert self.head_dim % 4 == 0, "head_dim must be divisible by 4 for 2D RoPE"
        h, w = self.image_size
        assert h % self.patch_size == 0 and w % self.patch_size == 0
        assert self.hidden_act in ("gelu", "silu")


def activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "gelu":
        return F.gelu(x)  # exact (erf) GELU
    if name == "silu":
        return F.silu(x)
    raise ValueError(name)


# ---------------------------------------------------------------- RoPE (docs/nepa.md §2.3)


def rope_cos_sin(cfg: NepaConfig, rope_scale: float = 1.0, dtype=torch.float64, device=None):
    """cos/sin tables [gh*gw, head_dim] for the patch tokens (row-major, y outer)."""
    hd = cfg.head_dim
    gh, gw = cfg.grid
    nf = hd // 4
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(nf, dtype=dtype, device=device) * 4.0 / hd))
    ys = (torch.arange(gh, dtype=dtype, device=device) + 0.5) / gh * 2.0 - 1.0
    xs = (torch.arange(gw, dtype=dtype, device=device) + 0.5) / gw * 2.0 - 1.0
    yy = ys[:, None].expand(gh, gw).reshape(-1)
    xx = xs[None, :].expand(gh, gw).reshape(-1)
    coords = torch.stack([yy, xx], dim=-1) * rope_scale  # [N, 2]
    angles = 2.0 * math.pi * coords[:, :, None] * inv_freq[None, None, :]  # [N, 2, hd/4]
    angles = angles.reshape(coords.shape[0], hd // 2)  # [y f0..f(nf-1), x f0..f(nf-1)]
    angles = torch.cat([angles, angles], dim=-1)  # tiled twice -> [N, hd]
    return angles.cos(), angles.sin()


def rotate_half(u: torch.Tensor) -> torch.Tensor:
    h = u.shape[-1] // 2
    return torch.cat([-u[..., h:], u[..., :h]], dim=-1)


def apply_rope(u: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """u: [B, H, T, hd]; rotates tokens 1.. (CLS at 0 untouched)."""
    prefix, patches = u[:, :, :1], u[:, :, 1:]
    patches = patches * cos + rotate_half(patches) * sin
    return torch.cat([prefix, patches], dim=2)


# ----------------------------------------------------------------------------- modules


class PatchEmbeddings(nn.Module):
    def __init__(self, cfg: NepaConfig):
        super().__init__()
        self.projection = nn.Conv2d(cfg.num_channels, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=True)

    def forward(self, x):
        p = self.projection(x)  # [B, D, gh, gw]
        return p.flatten(2).transpose(1, 2)  # [B, gh*gw, D], index = row*gw + col


class Embeddings(nn.Module):
    def __init__(self, cfg: NepaConfig):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        self.patch_embeddings = PatchEmbeddings(cfg)

    def forward(self, x):
        p = self.patch_embeddings(x)
        cls = self.cls_token.expand(p.shape[0], -1, -1)
        return torch.cat([cls, p], dim=1)


class SelfAttention(nn.Module):
    def __init__(self, cfg: NepaConfig):
        super().__init__()
        d = cfg.hidden_size
        self.cfg = cfg
        # Not a NepaConfig field: the config mirrors the official config.json (and is written
        # into the fixtures), while this only picks a kernel.  NepaModel(sdpa=...) sets it.
        self.sdpa = False
        self.query = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.key = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.value = nn.Linear(d, d, bias=cfg.qkv_bias)
        if cfg.qk_norm:
            # LayerNorm over head_dim; affine = weight only (never a bias).
            self.q_norm = nn.LayerNorm(cfg.head_dim, eps=cfg.layer_norm_eps, elementwise_affine=cfg.qk_norm_affine, bias=False)
            self.k_norm = nn.LayerNorm(cfg.head_dim, eps=cfg.layer_norm_eps, elementwise_affine=cfg.qk_norm_affine, bias=False)
        else:
            self.q_norm = None
            self.k_norm = None

    def forward(self, a, cos, sin):
        cfg = self.cfg
        b, t, d = a.shape
        h, hd = cfg.num_attention_heads, cfg.head_dim

        def heads(x):
            return x.view(b, t, h, hd).transpose(1, 2)  # [B, H, T, hd]

        q, k, v = heads(self.query(a)), heads(self.key(a)), heads(self.value(a))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.sdpa:
            # Under autocast the norms and RoPE leave q, k in float32 while v is in the low
            # precision; the fused kernel wants one dtype.  Its default scale is hd ** -0.5.
            q, k = q.to(v.dtype), k.to(v.dtype)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=cfg.is_causal)
            return o.transpose(1, 2).reshape(b, t, d), None
        s = (q @ k.transpose(-1, -2)) * (hd ** -0.5)
        if cfg.is_causal:
            mask = torch.full((t, t), float("-inf"), dtype=s.dtype, device=s.device).triu(1)
            s = s + mask
        probs = torch.softmax(s, dim=-1)
        o = (probs @ v).transpose(1, 2).reshape(b, t, d)
        return o, probs


class SelfOutput(nn.Module):
    def __init__(self, cfg: NepaConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x):
        return self.dense(x)


class Attention(nn.Module):
    def __init__(self, cfg: NepaConfig):
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.output = SelfOutput(cfg)

    def forward(self, a, cos, sin):
        o, probs = self.attention(a, cos, sin)
        return self.output(o), probs


class LayerScale(nn.Module):
    def __init__(self, cfg: NepaConfig):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.full((cfg.hidden_size,), float(cfg.layerscale_value)))

    def forward(self, x):
        return x * self.lambda1


class Intermediate(nn.Module):
    def __init__(self, cfg: NepaConfig):
        super().__init__()
        self.cfg = cfg
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size) if cfg.use_gated_mlp else None

    def forward(self, x):
        if self.gate_proj is not None:
            return activation(self.cfg.hidden_act, self.gate_proj(x)) * self.up_proj(x)
        return activation(self.cfg.hidden_act, self.up_proj(x))


class Output(nn.Module):
    def __init__(self, cfg: NepaConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.layer_scale = LayerScale(cfg)

    def forward(self, x):
        return self.layer_scale(self.dense(x))


class Layer(nn.Module):
    def __init__(self, cfg: NepaConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attention = Attention(cfg)
        self.layer_scale = LayerScale(cfg)
        self.layernorm_after = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.intermediate = Intermediate(cfg)
        self.output = Output(cfg)

    def forward(self, h, cos, sin):
        o, probs = self.attention(self.layernorm_before(h), cos, sin)
        h = h + self.layer_scale(o)
        m = self.output(self.intermediate(self.layernorm_after(h)))
        return h + m, probs


class Encoder(nn.Module):
    def __init__(self, cfg: NepaConfig):
        super().__init__()
        self.layer = nn.ModuleList([Layer(cfg) for _ in range(cfg.num_hidden_layers)])


class NepaModel(nn.Module):
    """Backbone; ``state_dict()`` has bare keys (no ``vit_nepa.`` prefix).

    ``sdpa=True``: attention through the fused ``scaled_dot_product_attention`` (same function,
    same parameters); ``out["attentions"]`` is then a list of ``None``."""

    def __init__(self, cfg: NepaConfig, sdpa: bool = False):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)
        self.layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        for m in self.modules():
            if isinstance(m, SelfAttention):
                m.sdpa = sdpa

    def forward(self, pixel_values, rope_scale: float = 1.0):
        z = self.embeddings(pixel_values)  # input embedding = loss target
        cos, sin = rope_cos_sin(self.cfg, rope_scale, dtype=z.dtype, device=z.device)
        h = z
        hidden_states, attentions = [], []
        for layer in self.encoder.layer:
            h, probs = layer(h, cos, sin)
            hidden_states.append(h)
            attentions.append(probs)
        z_hat = self.layernorm(h)
        return {"z": z, "hidden_states": hidden_states, "attentions": attentions, "z_hat": z_hat}


class NepaForImageClassification(nn.Module):
    """``vit_nepa.*`` backbone + ``fc_norm`` + ``classifier`` (mean of patch tokens of z_hat)."""

    def __init__(self, cfg: NepaConfig):
        super().__init__()
        assert cfg.num_labels > 0
        self.cfg = cfg
        self.vit_nepa = NepaModel(cfg)
        self.fc_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, pixel_values, rope_scale: float = 1.0):
        out = self.vit_nepa(pixel_values, rope_scale)
        pooled = out["z_hat"][:, 1:].mean(dim=1)
        out["logits"] = self.classifier(self.fc_norm(pooled))
        return out


def build_model(cfg: NepaConfig) -> nn.Module:
    return NepaForImageClassification(cfg) if cfg.num_labels > 0 else NepaModel(cfg)


def backbone(model: nn.Module) -> NepaModel:
    return model.vit_nepa if isinstance(model, NepaForImageClassification) else model


# ---------------------------------------------------------------- loss (docs/nepa.md §3.1)


def nepa_loss(z_hat: torch.Tensor, z: torch.Tensor, shift: bool = True, stop_grad: bool = True) -> torch.Tensor:
    """-mean_{b,t} cos(z_hat[:, t], target[:, t+1]) (shift) or cos(z_hat[:, t], target[:, t]) (no shift)."""
    target = z.detach() if stop_grad else z
    if shift:
        pred, target = z_hat[:, :-1], target[:, 1:]
    else:
        pred = z_hat
    pred = F.normalize(pred, dim=-1, eps=1e-12)
    target = F.normalize(target, dim=-1, eps=1e-12)
    return -(pred * target).sum(dim=-1).mean()
