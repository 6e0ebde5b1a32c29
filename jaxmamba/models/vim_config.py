"""Vision Mamba (Vim) configurations: one frozen, hashable dataclass per released variant.

The released classification variants of hustvl/Vim (``vim/models_mamba.py``): depth 24,
d_state 16, a middle CLS token, absolute position embeddings, RMSNorm with the fused add-norm
residual stream and the bidirectional ("v2") Mamba mixer whose two directions are averaged.
A Vim model only takes the input size it was built for (its position embedding has one entry
per patch), so the input size and the patch stride are part of the config.

Token layout (``M`` patches on a ``gh x gw`` grid, ``L = M + 1`` tokens): the CLS token sits at
``M // 2`` and patch ``p`` (row-major) at token ``p`` if ``p < M // 2`` else ``p + 1``.

>>> c = VimConfig(embed_dim=192, stride=8)
>>> c.grid, c.num_patches, c.seq_len, c.cls_position
((27, 27), 729, 730, 364)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import TYPE_CHECKING

import numpy as np

from jaxmamba.errors import ConfigError

if TYPE_CHECKING:
    from jaxmamba.models.config import Block

__all__ = ["parse_layer_name", "VimConfig", "VIM_DIGITS", "VIM_VARIANTS", "patch_token_index"]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_INT_FIELDS = (
    "embed_dim", "depth", "d_state", "patch_size", "stride", "in_chans", "num_classes",
    "expand", "d_conv",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class VimConfig:
    """Hyper-parameters of a Vision Mamba classifier (the official ``VisionMamba`` constructor's).

    Attributes:
      name: variant name, or ``"custom"`` for a config that is no released variant.
      embed_dim: model width E.
      depth: number of Mamba layers (``layers.0`` … ``layers.{depth-1}``).
      d_state: SSM state size N.
      patch_size: side of the square patch-embedding kernel.
      stride: patch-embedding stride (16: disjoint patches; 8: the overlapping "+" models).
      img_size: input ``(H, W)``: the only size the model takes.
      in_chans: input channels.
      num_classes: classifier outputs.
      expand: d_inner = expand · E.
      d_conv: causal depthwise conv kernel size.
      eps: RMSNorm epsilon.
    """

    name: str = "custom"
    embed_dim: int = 192
    depth: int = 24
    d_state: int = 16
    patch_size: int = 16
    stride: int = 16
    img_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    num_classes: int = 1000
    expand: int = 2
    d_conv: int = 4
    eps: float = 1e-5

    def __post_init__(self):
        problems = []
        for field in _INT_FIELDS:
            value = getattr(self, field)
            if _is_int(value) and value >= 1:
                object.__setattr__(self, field, int(value))
            else:
                problems.append(f"{field} must be a positive integer, got {value!r}")
        size = self.img_size
        if _is_int(size):
            size = (size, size)
        if (
            isinstance(size, tuple | list)
            and len(size) == 2
            and all(_is_int(v) and v >= 1 for v in size)
        ):
            object.__setattr__(self, "img_size", (int(size[0]), int(size[1])))
        else:
            problems.append(f"img_size must be (H, W) positive integers, got {self.img_size!r}")
        eps = self.eps
        if isinstance(eps, numbers.Real) and not isinstance(eps, bool) and 0 < eps < math.inf:
            object.__setattr__(self, "eps", float(eps))
        else:
            problems.append(f"eps must be a positive finite number, got {eps!r}")
        if not isinstance(self.name, str) or not self.name:
            problems.append(f"name must be a non-empty string, got {self.name!r}")
        if not problems:
            h, w = self.img_size
            if h < self.patch_size or w < self.patch_size:
                p = self.patch_size
                problems.append(f"img_size {h}x{w} is smaller than one {p}x{p} patch")
        if problems:
            raise ConfigError("invalid Vim config: " + "; ".join(problems))

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """``"vim"`` (a VMamba config says ``"vmamba"``)."""
        return "vim"

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid ``(gh, gw) = ((H - p) // s + 1, (W - p) // s + 1)``."""
        h, w = self.img_size
        p, s = self.patch_size, self.stride
        return (h - p) // s + 1, (w - p) // s + 1

    @property
    def num_patches(self) -> int:
        """M = gh · gw."""
        return self.grid[0] * self.grid[1]

    @property
    def seq_len(self) -> int:
        """L = M + 1 tokens (the patches and the CLS token)."""
        return self.num_patches + 1

    @property
    def cls_position(self) -> int:
        """Token index of the CLS token, ``M // 2``."""
        return self.num_patches // 2

    def d_inner(self, stage: int = 0) -> int:
        """Channels D of every mixer, ``expand · E`` (``stage``: 0, the one stage)."""
        return self.expand * self.embed_dim

    @property
    def dt_rank(self) -> int:
        """Rank R of Δ's projection, the official "auto" ``ceil(E / 16)``."""
        return math.ceil(self.embed_dim / 16)

    def rank(self, stage: int = 0) -> int:
        """:attr:`dt_rank` (every layer alike)."""
        return self.dt_rank

    @property
    def k_routes(self) -> int:
        """Scan directions K of every layer: 2 (forward and backward)."""
        return 2

    @property
    def num_stages(self) -> int:
        """1: an isotropic model is one stage of ``depth`` layers."""
        return 1

    @property
    def depths(self) -> tuple[int, ...]:
        """``(depth,)``: the layers as one stage."""
        return (self.depth,)

    @property
    def dims(self) -> tuple[int, ...]:
        """``(embed_dim,)``: the width of the one stage."""
        return (self.embed_dim,)

    def stage_grid(self, stage: int, height: int, width: int) -> tuple[int, int]:
        """Patch grid of ``height x width`` images (the same grid for every layer)."""
        p, s = self.patch_size, self.stride
        return (height - p) // s + 1, (width - p) // s + 1

    def block_names(self) -> tuple[str, ...]:
        """Official names of the layers, ``layers.{i}``, in forward order."""
        return tuple(f"layers.{i}" for i in range(self.depth))

    def block(self, name: str, image_hw: tuple[int, int]) -> Block:
        """The :class:`~jaxmamba.models.config.Block` of layer ``name`` (``layers.{i}``): stage 0,
        index i, the patch grid and the CLS token's position (its ``length`` is L = M + 1).

        >>> VimConfig(img_size=(48, 80)).block("layers.3", (48, 80))
        Block(name='layers.3', stage=0, index=3, grid=(3, 5), cls=7)
        """
        from jaxmamba.models.config import Block  # config imports this module

        index = parse_layer_name(name)
        if index >= self.depth:
            raise ConfigError(f"{self.describe()} has no layer {name}")
        if tuple(image_hw) != self.img_size:
            raise ConfigError(
                f"{self.name} takes {self.img_size[0]}x{self.img_size[1]} images, not "
                f"{image_hw[0]}x{image_hw[1]}"
            )
        return Block(name, 0, index, self.grid, self.cls_position)

    def describe(self) -> str:
        """Short description, e.g. ``vim_tiny: Vim E 192, depth 24, 224x224 stride 16, ...``."""
        h, w = self.img_size
        return (
            f"{self.name} Vim, embed_dim {self.embed_dim}, depth {self.depth}, "
            f"{h}x{w} input, patch {self.patch_size} stride {self.stride}, "
            f"d_state {self.d_state}, {self.num_classes} classes"
        )

    def replace(self, **changes) -> VimConfig:
        return dataclasses.replace(self, **changes)


_LAYER_NAME = re.compile(r"layers\.(\d+)")


def parse_layer_name(name: str) -> int:
    """The index of a Vim layer's official name ``layers.{i}``: the one place that reads them.

    >>> parse_layer_name("layers.23")
    23
    """
    m = _LAYER_NAME.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise ConfigError(f"{name!r} is not a Vim layer name layers.i")
    return int(m.group(1))


def patch_token_index(config: VimConfig) -> np.ndarray:
    """``(M,)`` token index of each row-major patch: ``p`` before the CLS token, ``p + 1`` after.

    >>> patch_token_index(VimConfig(img_size=(48, 80))).tolist()
    [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15]
    """
    p = np.arange(config.num_patches)
    return np.where(p < config.cls_position, p, p + 1)


#: The released variants (all at 224 x 224, 1000 classes) and a tiny test variant.
VIM_VARIANTS: tuple[VimConfig, ...] = (
    VimConfig(name="vim_tiny", embed_dim=192),
    VimConfig(name="vim_tiny_s8", embed_dim=192, stride=8),
    VimConfig(name="vim_small", embed_dim=384),
    VimConfig(name="vim_small_s8", embed_dim=384, stride=8),
    VimConfig(name="vim_base", embed_dim=768),
    # Milliseconds on a CPU: 4x4 patches of a 64x64 image, M = 16, CLS at token 8.
    VimConfig(name="vim_test", embed_dim=32, depth=2, img_size=(64, 64), num_classes=10),
)

#: The config of the shipped digit Vim (``jaxmamba/vim_digits_model``,
#: :func:`jaxmamba.pretrained.load_vim_digits`): 8x8 disjoint patches of the 64x64 digits (M = 64
#: patches, L = 65 tokens, CLS at token 32), embed_dim 64, 4 layers, 10 classes. Registered as
#: ``"vim_digits"``; not a released variant.
VIM_DIGITS = VimConfig(
    name="vim_digits", embed_dim=64, depth=4, patch_size=8, stride=8, img_size=(64, 64),
    num_classes=10,
)  # fmt: skip
