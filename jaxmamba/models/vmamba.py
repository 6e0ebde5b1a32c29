"""Flax VMamba classifier (``VSSM``) for every official family, parameterised by a config.

Submodule names follow the official state dict with numeric path segments joined by ``_``
(``layers.0.blocks.1.op.A_logs`` ↔ ``params["layers_0"]["blocks_1"]["op"]["A_logs"]``).
Activations are channel-last ``(B, H, W, C)``; semantics follow ``VSSM``, ``VSSBlock``, ``SS2D``,
``PatchMerging2D`` and ``Mlp`` of MzeroMiko/VMamba ``classification/models/vmamba.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmamba.models.config import VMambaConfig
from jaxmamba.models.layers import Conv2d, LayerNorm, Linear
from jaxmamba.models.ss2d import SS2D

__all__ = ["VSSM", "gelu"]


def gelu(x):
    """The exact (erf) GELU of ``torch.nn.GELU()``."""
    return jax.nn.gelu(x, approximate=False)


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))``."""

    hidden: int

    @nn.compact
    def __call__(self, x):
        return Linear(x.shape[-1], name="fc2")(gelu(Linear(self.hidden, name="fc1")(x)))


class VSSBlock(nn.Module):
    """``x + op(norm(x))``, then ``x + mlp(norm2(x))`` where the family has an MLP."""

    config: VMambaConfig
    stage: int
    implementation: str | None = None

    @nn.compact
    def __call__(self, x, routes, capture: bool = False):
        c, i = self.config, self.stage
        op = SS2D(
            d_model=c.dims[i], d_inner=c.d_inner(i), d_state=c.d_state, dt_rank=c.rank(i),
            k_routes=c.k_routes, gated=c.gated, conv_bias=c.conv_bias, d_conv=c.d_conv,
            eps=c.eps, implementation=self.implementation, name="op",
        )  # fmt: skip
        x = x + op(LayerNorm(c.eps, name="norm")(x), routes, capture)
        if c.mlp_ratio > 0:
            mlp = Mlp(int(c.dims[i] * c.mlp_ratio), name="mlp")
            x = x + mlp(LayerNorm(c.eps, name="norm2")(x))
        return x


class PatchMerging(nn.Module):
    """v1 downsample: concat of the four 2x2 phases, LayerNorm(4C), Linear(4C → out, no bias)."""

    out: int
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        h, w = x.shape[1:3]
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        x = jnp.concatenate(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1
        )
        return Linear(self.out, use_bias=False, name="reduction")(
            LayerNorm(self.eps, name="norm")(x)
        )


class Classifier(nn.Module):
    """``classifier``: LayerNorm, global average pool over the grid, linear head."""

    num_classes: int
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        x = jnp.mean(LayerNorm(self.eps, name="norm")(x), axis=(1, 2))
        return Linear(self.num_classes, name="head")(x)


class Stage(nn.Module):
    """``layers.{i}``: the stage's VSS blocks, then its downsample (none after the last stage)."""

    config: VMambaConfig
    stage: int
    implementation: str | None = None

    @nn.compact
    def __call__(self, x, routes, capture: frozenset = frozenset()):
        c, i = self.config, self.stage
        for j in range(c.depths[i]):
            block = VSSBlock(c, i, self.implementation, name=f"blocks_{j}")
            x = block(x, routes, f"layers.{i}.blocks.{j}" in capture)
        if i == c.num_stages - 1:
            return x
        out = c.dims[i + 1]
        if c.downsample == "v1":
            return PatchMerging(out, c.eps, name="downsample")(x)
        k, p = (2, 0) if c.downsample == "v2" else (3, 1)
        x = Conv2d(out, k, stride=2, padding=p, name="downsample_1")(x)
        return LayerNorm(c.eps, name="downsample_3")(x)


class VSSM(nn.Module):
    """VMamba classifier: patch embed → stages → LayerNorm → global average pool → head.

    ``__call__(images (B, H, W, 3), routes_for, capture, pieces)`` where ``routes_for(h, w)``
    gives the routes of an ``h x w`` grid and ``capture`` is a set of block names whose SS2D input
    ``x`` and cross-merged scan output ``y`` (both ``(B, D, L)``) are sown into
    ``"intermediates"`` (one entry per slice of the batch, in batch order). ``pieces[i]`` cuts
    stage ``i``'s batch into that many slices run as separate subgraphs (same parameters; equal
    results up to float rounding); the caller chooses them for its device
    (:func:`jaxmamba.models.model.cpu_pieces`), the module never asks which device it runs on.
    """

    config: VMambaConfig
    implementation: str | None = None

    @nn.compact
    def __call__(
        self,
        images,
        routes_for: Callable,
        capture: frozenset = frozenset(),
        pieces: tuple[int, ...] = (),
    ):
        c = self.config
        if c.patch_embed == "v1":
            x = Conv2d(c.dims[0], c.patch_size, stride=c.patch_size, name="patch_embed_0")(images)
            x = LayerNorm(c.eps, name="patch_embed_2")(x)
        else:
            k, s = c.patch_size // 2 + 1, c.patch_size // 2
            x = Conv2d(c.dims[0] // 2, k, stride=s, padding=1, name="patch_embed_0")(images)
            x = gelu(LayerNorm(c.eps, name="patch_embed_2")(x))
            x = Conv2d(c.dims[0], k, stride=s, padding=1, name="patch_embed_5")(x)
            x = LayerNorm(c.eps, name="patch_embed_7")(x)
        for i in range(c.num_stages):
            routes = routes_for(x.shape[1], x.shape[2])
            stage = Stage(c, i, self.implementation, name=f"layers_{i}")
            n = min(pieces[i] if i < len(pieces) else 1, x.shape[0])
            if n > 1:  # the same stage on n slices of the batch: n independent subgraphs
                x = jnp.concatenate([stage(p, routes, capture) for p in jnp.array_split(x, n)])
            else:
                x = stage(x, routes, capture)
        return Classifier(c.num_classes, c.eps, name="classifier")(x)
