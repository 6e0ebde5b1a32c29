"""Model configurations: one frozen, hashable dataclass per VMamba variant, and the registry.

The registry holds both families: VMamba (:class:`VMambaConfig`, here) and Vision Mamba
(:class:`~jaxmamba.models.vim_config.VimConfig`); :data:`ModelConfig` is either.

A config is a static argument (hashable), so a jitted forward is traced once per config.
The released classification variants follow the official builders and ``configs/vssm/*.yaml``
of MzeroMiko/VMamba (``classification/models/vmamba.py``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Any, Literal, NamedTuple

from jaxmamba.errors import ConfigError
from jaxmamba.models.vim_config import VIM_DIGITS, VIM_VARIANTS, VimConfig

__all__ = [
    "Block",
    "ConfigError",
    "ModelConfig",
    "VimConfig",
    "VMambaConfig",
    "get_config",
    "list_models",
    "parse_block_name",
    "register",
]

_BLOCK_NAME = re.compile(r"layers\.(\d+)\.blocks\.(\d+)")


def parse_block_name(name: str) -> tuple[int, int]:
    """``(stage, index)`` of an SS2D block's official name ``layers.{stage}.blocks.{index}``.

    The one place that reads block names.

    >>> parse_block_name("layers.2.blocks.5")
    (2, 5)
    """
    m = _BLOCK_NAME.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise ConfigError(f"{name!r} is not a block name layers.i.blocks.j (stage i, block j)")
    return int(m.group(1)), int(m.group(2))


_INT_FIELDS = ("d_state", "dt_rank", "num_classes", "patch_size", "in_chans", "k_routes", "d_conv")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Block(NamedTuple):
    """One block of a model at an image size: its name, stage, index, patch grid and token layout.

    A VMamba SS2D block's tokens are the patches of its grid (``cls`` is None); a Vim layer's are
    the patches with a class token inserted at position ``cls`` (row-major patch p is token p
    before it, p + 1 after it).

    >>> from jaxmamba import get_config
    >>> get_config("vmamba_test").block("layers.1.blocks.0", (64, 64))
    Block(name='layers.1.blocks.0', stage=1, index=0, grid=(8, 8), cls=None)
    >>> get_config("vim_test").block("layers.1", (64, 64)).length  # 4x4 patches + CLS
    17
    """

    name: str
    stage: int
    index: int  # type: ignore[assignment]  # the field shadows tuple.index, as it is meant to
    grid: tuple[int, int]
    cls: int | None = None

    @property
    def length(self) -> int:
        """Sequence length L: ``h·w`` patches, plus one with a class token."""
        return self.grid[0] * self.grid[1] + (self.cls is not None)


@dataclasses.dataclass(frozen=True)
class VMambaConfig:
    """Hyper-parameters of a VMamba classifier (the official ``VSSM`` constructor's, normalised).

    Attributes:
      name: variant name, or ``"custom"`` for a config that is no released variant.
      depths: VSS blocks per stage.
      dims: channels per stage.
      d_state: SSM state size N (16 for v0, 1 for the v2 families).
      ssm_ratio: d_inner = int(ssm_ratio * dim) per stage.
      dt_rank: rank R of Δ's projection; ``0`` means the official "auto" = ceil(dim / 16) per stage.
      mlp_ratio: hidden width of the per-block MLP over dim; 0 means no MLP (v0).
      forward_type: ``"v0"`` (z gate, channel-last official code) or ``"v05_noz"`` (no gate).
      conv_bias: whether the depthwise 3x3 conv of SS2D has a bias.
      norm_layer: ``"ln"`` (channel-last) or ``"ln2d"`` (channel-first); the same LayerNorm maths,
        recorded so that converted checkpoints round-trip.
      downsample: ``"v1"`` PatchMerging2D, ``"v2"`` 2x2 stride-2 conv, ``"v3"`` 3x3 stride-2 conv.
      patch_embed: ``"v1"`` one 4x4 stride-4 conv, ``"v2"`` two 3x3 stride-2 convs with GELU.
      num_classes: classifier outputs.
      patch_size, in_chans: patch-embed stride and input channels.
      k_routes: number of scan routes K (the official SS2D has 4).
      d_conv: depthwise conv kernel size.
      eps: LayerNorm epsilon (PyTorch's default, 1e-5, everywhere in VMamba).
    """

    name: str = "custom"
    depths: tuple[int, ...] = (2, 2, 9, 2)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    d_state: int = 16
    ssm_ratio: float = 2.0
    dt_rank: int = 0
    mlp_ratio: float = 0.0
    forward_type: Literal["v0", "v05_noz"] = "v0"
    conv_bias: bool = True
    norm_layer: Literal["ln", "ln2d"] = "ln"
    downsample: Literal["v1", "v2", "v3"] = "v1"
    patch_embed: Literal["v1", "v2"] = "v1"
    num_classes: int = 1000
    patch_size: int = 4
    in_chans: int = 3
    k_routes: int = 4
    d_conv: int = 3
    eps: float = 1e-5

    def __post_init__(self):
        problems = []
        dims = self.dims
        if _is_int(dims) and isinstance(self.depths, tuple | list):
            # official shorthand: dims=96 -> (96, 192, 384, 768)
            dims = tuple(int(dims) * 2**i for i in range(len(self.depths)))
        for field, value in (("depths", self.depths), ("dims", dims)):
            if not isinstance(value, tuple | list) or not all(_is_int(v) for v in value):
                problems.append(f"{field} must be a sequence of integers, got {value!r}")
                value = ()
            object.__setattr__(self, field, tuple(int(v) for v in value))
        for field in _INT_FIELDS:
            value = getattr(self, field)
            if _is_int(value):
                object.__setattr__(self, field, int(value))
            else:
                problems.append(f"{field} must be an integer, got {value!r}")
        for field in ("ssm_ratio", "mlp_ratio", "eps"):
            value = getattr(self, field)
            if _is_real(value) and math.isfinite(value):
                object.__setattr__(self, field, float(value))
            else:
                problems.append(f"{field} must be a finite number, got {value!r}")
        if not isinstance(self.name, str) or not self.name:
            problems.append(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.conv_bias, bool):
            problems.append(f"conv_bias must be true or false, got {self.conv_bias!r}")
        if problems:
            raise ConfigError("invalid VMamba config: " + "; ".join(problems))
        if len(self.dims) != len(self.depths) or not self.depths:
            problems.append(
                f"dims {self.dims} and depths {self.depths} must have one entry per stage"
            )
        if any(d < 1 for d in self.depths) or any(d < 1 for d in self.dims):
            problems.append("depths and dims must be positive")
        if self.d_state < 1:
            problems.append(f"d_state must be >= 1, got {self.d_state}")
        if self.ssm_ratio <= 0:
            problems.append(f"ssm_ratio must be > 0, got {self.ssm_ratio}")
        if self.mlp_ratio < 0:
            problems.append(f"mlp_ratio must be >= 0, got {self.mlp_ratio}")
        if self.eps <= 0:
            problems.append(f"eps must be > 0, got {self.eps}")
        if self.dt_rank < 0:
            problems.append(f"dt_rank must be >= 0 (0 = auto), got {self.dt_rank}")
        if self.patch_size < 1 or self.in_chans < 1 or self.d_conv < 1:
            problems.append("patch_size, in_chans and d_conv must be >= 1")
        for field, allowed in [
            ("forward_type", ("v0", "v05_noz")),
            ("norm_layer", ("ln", "ln2d")),
            ("downsample", ("v1", "v2", "v3")),
            ("patch_embed", ("v1", "v2")),
        ]:
            if getattr(self, field) not in allowed:
                problems.append(f"{field} must be one of {allowed}, got {getattr(self, field)!r}")
        if self.num_classes < 1 or self.k_routes < 1:
            problems.append("num_classes and k_routes must be >= 1")
        if self.patch_embed == "v2" and self.patch_size % 2:
            problems.append("the v2 patch embed needs an even patch_size")
        if problems:
            raise ConfigError("invalid VMamba config: " + "; ".join(problems))

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def gated(self) -> bool:
        """Whether SS2D has the z gate (``y = out_norm(y) * silu(z)``)."""
        return self.forward_type == "v0"

    @property
    def reduction(self) -> int:
        """Total spatial stride from image to the last stage's grid."""
        return self.patch_size * 2 ** (self.num_stages - 1)

    def d_inner(self, stage: int) -> int:
        return int(self.ssm_ratio * self.dims[stage])

    def rank(self, stage: int) -> int:
        """dt_rank R of ``stage`` (official "auto" = ceil(dim / 16))."""
        return self.dt_rank if self.dt_rank > 0 else math.ceil(self.dims[stage] / 16)

    def stage_grid(self, stage: int, height: int, width: int) -> tuple[int, int]:
        """Patch grid ``(h, w)`` of ``stage`` for an input image of ``height x width``."""
        s = self.patch_size * 2**stage
        return height // s, width // s

    def block_names(self) -> tuple[str, ...]:
        """Official names of the SS2D blocks, ``layers.{i}.blocks.{j}``, in forward order."""
        return tuple(f"layers.{i}.blocks.{j}" for i, d in enumerate(self.depths) for j in range(d))

    def block(self, name: str, image_hw: tuple[int, int]) -> Block:
        """The :class:`Block` called ``name`` for input images of ``image_hw = (H, W)``."""
        stage, index = parse_block_name(name)
        if stage >= self.num_stages or index >= self.depths[stage]:
            raise ConfigError(f"{self.describe()} has no block {name}")
        return Block(name, stage, index, self.stage_grid(stage, *image_hw))

    def describe(self) -> str:
        """Short human-readable description, e.g. ``custom v05_noz, dims 32, depths 1-1-2-1``."""
        depths = "-".join(map(str, self.depths))
        return (
            f"{self.name} {self.forward_type}, dims {self.dims[0]}, depths {depths}, "
            f"d_state {self.d_state}, ssm_ratio {self.ssm_ratio:g}, {self.num_classes} classes"
        )

    def replace(self, **changes) -> VMambaConfig:
        return dataclasses.replace(self, **changes)


_V0: dict[str, Any] = dict(
    d_state=16, ssm_ratio=2.0, mlp_ratio=0.0, forward_type="v0", conv_bias=True,
    norm_layer="ln", downsample="v1", patch_embed="v1",
)  # fmt: skip
_V2: dict[str, Any] = dict(
    d_state=1, mlp_ratio=4.0, forward_type="v05_noz", conv_bias=False,
    norm_layer="ln2d", downsample="v3", patch_embed="v2",
)  # fmt: skip

#: A config of either family.
ModelConfig = VMambaConfig | VimConfig

_REGISTRY: dict[str, ModelConfig] = {}


def register(config: ModelConfig) -> ModelConfig:
    """Add ``config`` (a VMamba or a Vim config) to the registry under ``config.name``."""
    _REGISTRY[config.name] = config
    return config


for _name, _depths, _dim, _family in [
    ("vanilla_vmamba_tiny", (2, 2, 9, 2), 96, dict(_V0)),
    ("vanilla_vmamba_small", (2, 2, 27, 2), 96, dict(_V0)),
    ("vanilla_vmamba_base", (2, 2, 27, 2), 128, dict(_V0)),
    ("vmamba_tiny_s2l5", (2, 2, 5, 2), 96, dict(_V2, ssm_ratio=2.0)),
    ("vmamba_small_s2l15", (2, 2, 15, 2), 96, dict(_V2, ssm_ratio=2.0)),
    ("vmamba_base_s2l15", (2, 2, 15, 2), 128, dict(_V2, ssm_ratio=2.0)),
    ("vmamba_tiny_s1l8", (2, 2, 8, 2), 96, dict(_V2, ssm_ratio=1.0)),
    ("vmamba_small_s1l20", (2, 2, 20, 2), 96, dict(_V2, ssm_ratio=1.0)),
    ("vmamba_base_s1l20", (2, 2, 20, 2), 128, dict(_V2, ssm_ratio=1.0)),
    # Tiny test variants, one per family: milliseconds on a CPU.
    ("vmamba_test", (1, 1, 2, 1), 16, dict(_V2, ssm_ratio=2.0, num_classes=10)),
    ("vanilla_vmamba_test", (1, 1, 2, 1), 16, dict(_V0, d_state=4, num_classes=10)),
]:
    _dims = tuple(_dim * 2**_i for _i in range(len(_depths)))  # the official dims=C shorthand
    register(VMambaConfig(name=_name, depths=_depths, dims=_dims, **_family))

for _vim in (*VIM_VARIANTS, VIM_DIGITS):
    register(_vim)

#: The released VMamba variants (:data:`~jaxmamba.models.vim_config.VIM_VARIANTS` holds Vim's).
OFFICIAL_VARIANTS = tuple(
    n for n, c in _REGISTRY.items() if isinstance(c, VMambaConfig) and not n.endswith("_test")
)


def list_models(family: Literal["vmamba", "vim"] | None = None) -> list[str]:
    """Names of the registered variants (released models and test variants).

    Args:
      family: ``None`` (both families), ``"vmamba"`` or ``"vim"``.

    >>> "vmamba_tiny_s1l8" in list_models(), "vim_tiny" in list_models()
    (True, True)
    >>> list_models("vim")[:3]
    ['vim_base', 'vim_digits', 'vim_small']
    """
    if family is None:
        return sorted(_REGISTRY)
    if family not in ("vmamba", "vim"):
        raise ConfigError(f"family must be None, 'vmamba' or 'vim', got {family!r}")
    kind = VimConfig if family == "vim" else VMambaConfig
    return sorted(n for n, c in _REGISTRY.items() if isinstance(c, kind))


def get_config(variant: str | ModelConfig, **overrides) -> ModelConfig:
    """The config of ``variant`` (a name or a config of either family), with ``overrides``.

    Overriding any field of a released variant makes a custom config of that family.

    >>> get_config("vmamba_tiny_s1l8").depths
    (2, 2, 8, 2)
    >>> get_config("vmamba_tiny_s1l8", num_classes=10).name
    'custom'
    >>> get_config("vim_small").embed_dim
    384
    """
    config: ModelConfig
    if isinstance(variant, VMambaConfig | VimConfig):
        config = variant
    elif isinstance(variant, str):
        if variant not in _REGISTRY:
            raise ConfigError(f"unknown variant {variant!r}; known: {', '.join(list_models())}")
        config = _REGISTRY[variant]
    else:
        raise ConfigError(
            f"variant must be a name, a VMambaConfig or a VimConfig, got {type(variant).__name__}"
        )
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(config)}
        if unknown:
            raise ConfigError(f"unknown config fields {sorted(unknown)}")
        overrides.setdefault("name", "custom")
        config = dataclasses.replace(config, **overrides)
    return config
