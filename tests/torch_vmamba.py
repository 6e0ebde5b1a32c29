"""A compact PyTorch VMamba, written from the architecture, to test the checkpoint converter.

Both families of :class:`jaxmamba.VMambaConfig`: v0 (z gate, conv bias, PatchMerging downsample,
4x4 patch embed, no MLP) and v05_noz (no gate, two-conv patch embed, 3x3 stride-2 downsample,
MLP with exact GELU). Module names are the official ones, so ``state_dict()`` has the official
keys and shapes. Activations are channel-last ``(B, H, W, C)``; the LayerNorm over channels is the
same map for the official ``ln`` and ``ln2d``. The selective scan is a plain loop over the
sequence and works in float64 (``model.double()``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from jaxmamba.models.config import VMambaConfig

__all__ = ["TorchVSSM", "build_torch_vmamba", "cross_routes", "selective_scan_loop"]


class Permute(nn.Module):
    def __init__(self, *dims: int):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


def cross_routes(h: int, w: int) -> torch.Tensor:
    """``(4, h·w)`` scan routes (position → row-major index): rows, columns, both reversed."""
    grid = torch.arange(h * w).view(h, w)
    rows, cols = grid.reshape(-1), grid.t().reshape(-1)
    return torch.stack([rows, cols, rows.flip(0), cols.flip(0)])


def selective_scan_loop(u, delta, A, B, C, D, delta_bias):
    """Step-by-step selective scan with softplus Δ.

    u, delta ``(b, K·D, l)``; A ``(K·D, N)``; B, C ``(b, K, N, l)``; D, delta_bias ``(K·D,)``.
    """
    b, kd, l = u.shape
    groups = B.shape[1]
    dt = F.softplus(delta + delta_bias[:, None])
    Bx = B.repeat_interleave(kd // groups, dim=1)  # (b, K·D, N, l)
    Cx = C.repeat_interleave(kd // groups, dim=1)
    h = u.new_zeros(b, kd, A.shape[1])
    ys = []
    for t in range(l):
        h = (
            torch.exp(dt[:, :, t, None] * A) * h
            + (dt[:, :, t] * u[:, :, t])[..., None] * Bx[..., t]
        )
        ys.append((h * Cx[..., t]).sum(-1))
    return torch.stack(ys, dim=-1) + D[:, None] * u


class SS2D(nn.Module):
    def __init__(self, dim: int, d_inner: int, d_state: int, rank: int, cfg: VMambaConfig):
        super().__init__()
        k, self.gated = cfg.k_routes, cfg.gated
        self.d_inner, self.d_state, self.rank = d_inner, d_state, rank
        self.in_proj = nn.Linear(dim, d_inner * (2 if self.gated else 1), bias=False)
        self.conv2d = nn.Conv2d(
            d_inner, d_inner, cfg.d_conv, padding=(cfg.d_conv - 1) // 2, groups=d_inner,
            bias=cfg.conv_bias,
        )  # fmt: skip
        self.x_proj_weight = nn.Parameter(torch.empty(k, rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_inner))
        self.A_logs = nn.Parameter(torch.empty(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(k * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def forward(self, x):
        b, h, w, _ = x.shape
        d, n, r = self.d_inner, self.d_state, self.rank
        k = self.x_proj_weight.shape[0]
        xz = self.in_proj(x)
        x, z = (xz[..., :d], xz[..., d:]) if self.gated else (xz, None)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))  # (b, d, h, w)
        routes = cross_routes(h, w)
        xs = x.reshape(b, d, h * w)[:, :, routes].transpose(1, 2)  # (b, k, d, l) scan order
        proj = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = proj[:, :, :r], proj[:, :, r : r + n], proj[:, :, r + n :]
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        y = selective_scan_loop(
            xs.reshape(b, k * d, -1), dts.reshape(b, k * d, -1), -torch.exp(self.A_logs),
            Bs, Cs, self.Ds, self.dt_projs_bias.reshape(-1),
        ).view(b, k, d, h * w)  # fmt: skip
        inverse = torch.argsort(routes, dim=1)  # spatial index → scan position
        y = sum(y[:, i][:, :, inverse[i]] for i in range(k))  # (b, d, l) row-major
        y = self.out_norm(y.transpose(1, 2).reshape(b, h, w, d))
        if self.gated:
            y = y * F.silu(z)
        return self.out_proj(y)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class VSSBlock(nn.Module):
    def __init__(self, cfg: VMambaConfig, stage: int):
        super().__init__()
        dim = cfg.dims[stage]
        self.norm = nn.LayerNorm(dim, eps=cfg.eps)
        self.op = SS2D(dim, cfg.d_inner(stage), cfg.d_state, cfg.rank(stage), cfg)
        self.has_mlp = cfg.mlp_ratio > 0
        if self.has_mlp:
            self.norm2 = nn.LayerNorm(dim, eps=cfg.eps)
            self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x):
        x = x + self.op(self.norm(x))
        return x + self.mlp(self.norm2(x)) if self.has_mlp else x


class PatchMerging(nn.Module):
    def __init__(self, dim: int, out: int, eps: float):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, out, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    def forward(self, x):
        x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))


class Stage(nn.Module):
    def __init__(self, cfg: VMambaConfig, stage: int):
        super().__init__()
        self.blocks = nn.Sequential(*[VSSBlock(cfg, stage) for _ in range(cfg.depths[stage])])
        if stage == cfg.num_stages - 1:
            self.downsample = nn.Identity()
        elif cfg.downsample == "v1":
            self.downsample = PatchMerging(cfg.dims[stage], cfg.dims[stage + 1], cfg.eps)
        else:
            k, p = (2, 0) if cfg.downsample == "v2" else (3, 1)
            self.downsample = nn.Sequential(
                Permute(0, 3, 1, 2),
                nn.Conv2d(cfg.dims[stage], cfg.dims[stage + 1], k, stride=2, padding=p),
                Permute(0, 2, 3, 1),
                nn.LayerNorm(cfg.dims[stage + 1], eps=cfg.eps),
            )

    def forward(self, x):
        return self.downsample(self.blocks(x))


class Classifier(nn.Module):
    def __init__(self, dim: int, num_classes: int, eps: float):
        super().__init__()
        self.norm, self.head = nn.LayerNorm(dim, eps=eps), nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.norm(x).mean(dim=(1, 2)))


class TorchVSSM(nn.Module):
    """VMamba classifier; ``forward(images (B, H, W, C))`` → logits ``(B, num_classes)``."""

    def __init__(self, cfg: VMambaConfig):
        super().__init__()
        c0, ps = cfg.dims[0], cfg.patch_size
        if cfg.patch_embed == "v1":
            self.patch_embed = nn.Sequential(
                nn.Conv2d(cfg.in_chans, c0, ps, stride=ps),
                Permute(0, 2, 3, 1),
                nn.LayerNorm(c0, eps=cfg.eps),
            )
        else:
            k, s = ps // 2 + 1, ps // 2
            self.patch_embed = nn.Sequential(
                nn.Conv2d(cfg.in_chans, c0 // 2, k, stride=s, padding=1),
                Permute(0, 2, 3, 1),
                nn.LayerNorm(c0 // 2, eps=cfg.eps),
                Permute(0, 3, 1, 2),
                nn.GELU(),
                nn.Conv2d(c0 // 2, c0, k, stride=s, padding=1),
                Permute(0, 2, 3, 1),
                nn.LayerNorm(c0, eps=cfg.eps),
            )
        self.layers = nn.ModuleList([Stage(cfg, i) for i in range(cfg.num_stages)])
        self.classifier = Classifier(cfg.dims[-1], cfg.num_classes, cfg.eps)

    def forward(self, images):
        x = self.patch_embed(images.permute(0, 3, 1, 2))
        for layer in self.layers:
            x = layer(x)
        return self.classifier(x)


@torch.no_grad()
def build_torch_vmamba(config: VMambaConfig, seed: int = 0) -> TorchVSSM:
    """A float32 :class:`TorchVSSM` of ``config`` with seeded, deliberately non-trivial weights.

    Weights ~ U(±1/√fan_in); Δ bias = softplus⁻¹ of Δ ∈ [0.001, 0.1]; A_logs = log(1..N) and
    Ds = 1 plus noise (so A ≠ −1 and D ≠ 1 even with d_state 1); every LayerNorm weight/bias and
    every other bias perturbed away from (1, 0).
    """
    gen = torch.Generator().manual_seed(seed)

    def noise(t, std):
        return torch.randn(t.shape, generator=gen, dtype=t.dtype) * std

    model = TorchVSSM(config)
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "A_logs":
            base = torch.log(torch.arange(1, p.shape[1] + 1, dtype=p.dtype)).expand_as(p)
            p.copy_(base + noise(p, 0.3))
        elif leaf == "Ds":
            p.copy_(1.0 + noise(p, 0.3))
        elif leaf == "dt_projs_bias":
            u = torch.rand(p.shape, generator=gen)
            dt = torch.exp(u * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            p.copy_(dt + torch.log(-torch.expm1(-dt)))
        elif leaf == "weight" and _is_layernorm(model, name):
            p.copy_(1.0 + noise(p, 0.2))
        elif leaf == "bias":
            p.copy_(noise(p, 0.2))
        else:  # weights of Linear / Conv / the stacked projections: fan_in is the last axes
            fan_in = p.shape[-1] if p.ndim <= 3 else math.prod(p.shape[1:])
            bound = 1.0 / math.sqrt(fan_in)
            p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
    return model.eval()


def _is_layernorm(model: nn.Module, param_name: str) -> bool:
    module = model.get_submodule(param_name.rsplit(".", 1)[0])
    return isinstance(module, nn.LayerNorm)
