"""Layers whose parameters keep PyTorch's names and shapes (``weight`` (out, in), conv OIHW).

Keeping PyTorch's layout makes checkpoint conversion a renaming, never a transpose. Activations
are channel-last ``(B, H, W, C)``; float32 matmuls and convs run at full precision.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmamba.models.init_rules import Constant, TruncNormal, Uniform, declare

__all__ = ["Linear", "Conv2d", "LayerNorm"]

HIGHEST = jax.lax.Precision.HIGHEST


class Linear(nn.Module):
    """``y = x Wᵀ + b`` over the last axis; ``weight`` (out, in) as in ``torch.nn.Linear``."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        w = declare(self, "weight", TruncNormal(0.02), (self.features, x.shape[-1]))
        y = jnp.einsum("...i,oi->...o", x, w, precision=HIGHEST)
        if self.use_bias:
            y = y + declare(self, "bias", Constant(0.0), (self.features,))
        return y


class Conv2d(nn.Module):
    """2-D convolution on NHWC input with an OIHW ``weight``, as ``torch.nn.Conv2d``."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        cin = x.shape[-1]
        k = self.kernel_size
        fan_in = cin // self.groups * k * k
        shape = (self.features, cin // self.groups, k, k)
        w = declare(self, "weight", Uniform.torch(fan_in), shape)
        if self.groups == cin == self.features and self.stride == 1:
            y = _depthwise(x, w.astype(x.dtype), self.padding)
        else:
            y = self._dense_conv(x, w)
        if self.use_bias:
            y = y + declare(self, "bias", Uniform.torch(fan_in), (self.features,))
        return y

    def _dense_conv(self, x, w):
        return jax.lax.conv_general_dilated(
            x,
            w.astype(x.dtype),
            window_strides=(self.stride, self.stride),
            padding=[(self.padding, self.padding)] * 2,
            dimension_numbers=("NHWC", "OIHW", "NHWC"),
            feature_group_count=self.groups,
            precision=HIGHEST,
        )


def _depthwise(x, w, padding: int):
    """Stride-1 depthwise conv as k² shifted multiply-adds (XLA:CPU's grouped conv is slow).

    x ``(B, H, W, C)``, w ``(C, 1, k, k)``; the same map as the grouped convolution.
    """
    k = w.shape[-1]
    h, wd = x.shape[1] + 2 * padding - k + 1, x.shape[2] + 2 * padding - k + 1
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    taps = jnp.moveaxis(w[:, 0], 0, -1)  # (k, k, C)
    out = None
    for i in range(k):
        for j in range(k):
            term = xp[:, i : i + h, j : j + wd, :] * taps[i, j]
            out = term if out is None else out + term
    return out


class LayerNorm(nn.Module):
    """LayerNorm over the last (channel) axis with ``weight``/``bias``, as ``torch.nn.LayerNorm``.

    VMamba's ``LayerNorm2d`` (channel-first) is the same map on a channel-last array.
    """

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        w = declare(self, "weight", Constant(1.0), (c,))
        b = declare(self, "bias", Constant(0.0), (c,))
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * w + b
