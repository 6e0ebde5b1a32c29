"""Official VMamba state dict → :class:`~jaxmamba.Model`, as pure functions on NumPy arrays.

:func:`state_dict_to_model` also takes a Vision Mamba (Vim) state dict, which
:mod:`convert.vim_state_dict` converts.

The steps (timm's ``checkpoint_filter_fn`` pattern): :func:`normalize_state_dict` (strip
``module.``, rename the old v0 names the official ``VSSM._load_from_state_dict`` renames, view the
4-D ``(out, in, 1, 1)`` weights of 1x1 linear layers as 2-D), :func:`detect_config` (hyper-
parameters from the shapes), a strict check (every key used, every parameter filled, every shape
right) and the mechanical key → path rule of :mod:`jaxmamba.models.params`. No torch here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from jaxmamba.models import params as P
from jaxmamba.models.config import (
    ConfigError,
    ModelConfig,
    VimConfig,
    VMambaConfig,
    get_config,
    list_models,
)
from jaxmamba.models.model import Model
from jaxmamba.storage.checkpoint import CheckpointError, check_params
from jaxmamba.storage.store import first_line

__all__ = [
    "normalize_state_dict", "detect_config", "is_vim_state_dict", "state_dict_to_model",
    "UNDETECTABLE",
]  # fmt: skip

#: Config fields that a state dict does not determine: taken from ``variant`` when one is given.
UNDETECTABLE = ("name", "norm_layer", "eps")

_OLD_NAMES = [  # (old, new) prefixes, as the official VSSM._load_from_state_dict renames them
    (re.compile(r"^patch_embed\.proj\."), "patch_embed.0."),
    (re.compile(r"^patch_embed\.norm\."), "patch_embed.2."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+\.)ln_1\."), r"\1norm."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+\.)self_attention\."), r"\1op."),
    (re.compile(r"^norm\."), "classifier.norm."),
    (re.compile(r"^head\."), "classifier.head."),
]
# Linear layers that channel-first checkpoints may store as 1x1 convs, (out, in, 1, 1).
_LINEAR_WEIGHT = re.compile(
    r"(\.op\.in_proj|\.op\.out_proj|\.mlp\.fc1|\.mlp\.fc2|\.downsample\.reduction"
    r"|^classifier\.head)\.weight$"
)
_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.")


def _listing(keys, limit: int = 10) -> str:
    keys = list(keys)
    shown = ", ".join(map(str, keys[:limit]))
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def to_numpy(value):
    """A torch tensor as a NumPy array (floating point → float32); anything else unchanged.

    Raises :class:`CheckpointError` for a tensor that holds no plain array of numbers: sparse,
    meta (no data), quantized or nested tensors.

    >>> to_numpy([1, 2])
    [1, 2]
    """
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        kind = (
            "a nested tensor" if getattr(value, "is_nested", False)
            else "a meta tensor, which holds no data" if getattr(value, "is_meta", False)
            else "a quantized tensor" if getattr(value, "is_quantized", False)
            else f"a {value.layout} tensor" if str(value.layout) != "torch.strided"
            else None
        )  # fmt: skip
        if kind:
            raise CheckpointError(f"is {kind}; only dense floating-point tensors are read")
        try:
            tensor = value.detach().cpu()
            return tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
        except Exception as e:  # an unusual tensor torch cannot hand over as an array
            raise CheckpointError(
                f"cannot be read as an array ({type(e).__name__}: {first_line(e)})"
            ) from None
    return value


def _as_array(value) -> np.ndarray | None:
    """``value`` as a NumPy array if it is a floating-point tensor/array, else ``None``."""
    value = to_numpy(value)
    if not (hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "__array__")):
        return None
    if not jnp.issubdtype(value.dtype, jnp.floating):  # also accepts bfloat16 (ml_dtypes)
        return None
    return np.asarray(value)


def normalize_state_dict(state_dict: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Current official key names and shapes for a (possibly old or wrapped) state dict.

    Strips ``module.`` prefixes, renames the old VMamba v0 names (``patch_embed.proj`` →
    ``patch_embed.0``, ``patch_embed.norm`` → ``patch_embed.2``, ``ln_1`` → ``norm``,
    ``self_attention`` → ``op``, top-level ``norm``/``head`` → ``classifier.norm``/
    ``classifier.head``) and views 4-D 1x1
    weights of linear layers as ``(out, in)``. A Vim state dict (:func:`is_vim_state_dict`) only
    loses its ``module.`` prefixes. Values stay as given (NumPy arrays, any float dtype).

    >>> import numpy as np
    >>> sd = normalize_state_dict({"module.head.weight": np.zeros((10, 8, 1, 1))})
    >>> {k: v.shape for k, v in sd.items()}
    {'classifier.head.weight': (10, 8)}
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"a state dict must be a mapping, got {type(state_dict).__name__}")
    bad_keys = [k for k in state_dict if not isinstance(k, str)]
    if bad_keys:
        raise CheckpointError(
            f"state dict keys must be strings, got {_listing(map(repr, bad_keys))}"
        )
    arrays, not_tensors, empty = {}, [], []
    for key, value in state_dict.items():
        try:
            array = _as_array(value)
        except CheckpointError as e:
            raise CheckpointError(f"state dict value {key} {e}") from None
        if array is not None and array.size == 0:
            empty.append(f"{key} {array.shape}")
        elif array is None:
            dtype = getattr(value, "dtype", None)
            not_tensors.append(f"{key} ({type(value).__name__}{f' {dtype}' if dtype else ''})")
        else:
            arrays[key] = array
    if not_tensors:
        raise CheckpointError(
            f"{len(not_tensors)} state dict value(s) are not floating-point tensors: "
            + _listing(not_tensors)
        )
    if empty:
        raise CheckpointError(
            f"{len(empty)} state dict value(s) are zero-size tensors: " + _listing(empty)
        )
    out: dict[str, np.ndarray] = {}
    vim = is_vim_state_dict(_strip(k) for k in arrays)
    for key, value in arrays.items():
        new = _strip(key)
        for pattern, repl in [] if vim else _OLD_NAMES:
            new = pattern.sub(repl, new)
        if _LINEAR_WEIGHT.search(new) and value.ndim == 4 and value.shape[2:] == (1, 1):
            value = value.reshape(value.shape[:2])
        if new in out:
            raise CheckpointError(f"two state dict keys map to {new!r} (one of them is {key!r})")
        out[new] = value
    return out


def _strip(key: str) -> str:
    """``key`` without its ``module.`` prefixes (a DataParallel / DDP wrapper's)."""
    while key.startswith("module."):
        key = key[len("module.") :]
    return key


def is_vim_state_dict(keys) -> bool:
    """Whether state-dict ``keys`` are a Vision Mamba model's (a CLS token and Mamba mixers).

    >>> is_vim_state_dict(["cls_token", "layers.0.mixer.A_b_log"]), is_vim_state_dict(["head.bias"])
    (True, False)
    """
    keys = set(keys)
    return "cls_token" in keys and any(k.startswith("layers.0.mixer.") for k in keys)


def _need(shapes: dict[str, tuple[int, ...]], key: str, ndim: int) -> tuple[int, ...]:
    if key not in shapes:
        raise CheckpointError(f"cannot detect the model config: missing key {key!r}")
    if len(shapes[key]) != ndim:
        raise CheckpointError(
            f"cannot detect the model config: {key} has shape {shapes[key]}, expected {ndim}-D"
        )
    return shapes[key]


def _detect_fields(shapes: dict[str, tuple[int, ...]]) -> dict:
    blocks: dict[int, set[int]] = {}
    for key in shapes:
        m = _BLOCK.match(key)
        if m:
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    if not blocks and is_vim_state_dict(shapes):
        raise CheckpointError(
            "this is a Vision Mamba (Vim) checkpoint: convert it with state_dict_to_model or "
            "load_torch_checkpoint (img_size=... gives its input size)"
        )
    if not blocks:
        raise CheckpointError(
            "cannot detect the model config: no VSS block keys (layers.<i>.blocks.<j>.*); is "
            f"this a VMamba classification checkpoint? Its keys: {_listing(sorted(shapes))}"
        )
    stages = sorted(blocks)
    if stages != list(range(len(stages))):
        raise CheckpointError(f"cannot detect the model config: stages {stages} are not 0..n-1")
    depths = []
    for i in stages:
        js = sorted(blocks[i])
        if js != list(range(len(js))):
            raise CheckpointError(
                f"cannot detect the model config: layers.{i} has blocks {js}, not 0..n-1"
            )
        depths.append(len(js))
    dims = [_need(shapes, f"layers.{i}.blocks.0.norm.weight", 1)[0] for i in stages]

    d_state = _need(shapes, "layers.0.blocks.0.op.A_logs", 2)[1]
    k_routes = _need(shapes, "layers.0.blocks.0.op.x_proj_weight", 3)[0]
    d_inner, ranks = [], []
    for i in stages:
        _, rows, d = _need(shapes, f"layers.{i}.blocks.0.op.x_proj_weight", 3)
        d_inner.append(d)
        ranks.append(rows - 2 * d_state)
    ssm_ratio = d_inner[0] / dims[0]
    if any(int(ssm_ratio * c) != d for c, d in zip(dims, d_inner, strict=True)):
        raise CheckpointError(
            f"cannot detect the model config: d_inner {d_inner} is not one ssm_ratio times the "
            f"stage dims {dims}"
        )
    if all(r == math.ceil(c / 16) for r, c in zip(ranks, dims, strict=True)):
        dt_rank = 0  # the official "auto"
    elif len(set(ranks)) == 1 and ranks[0] > 0:
        dt_rank = ranks[0]
    else:
        raise CheckpointError(
            f"cannot detect the model config: dt_rank per stage {ranks} is neither 'auto' "
            f"(ceil(dim / 16) = {[math.ceil(c / 16) for c in dims]}) nor one fixed value"
        )

    in_rows = _need(shapes, "layers.0.blocks.0.op.in_proj.weight", 2)[0]
    if in_rows == 2 * d_inner[0]:
        forward_type = "v0"
    elif in_rows == d_inner[0]:
        forward_type = "v05_noz"
    else:
        raise CheckpointError(
            f"cannot detect the model config: layers.0.blocks.0.op.in_proj.weight has {in_rows} "
            f"rows, expected d_inner = {d_inner[0]} (no z gate) or 2·d_inner (z gate)"
        )
    conv = _need(shapes, "layers.0.blocks.0.op.conv2d.weight", 4)
    fc1 = "layers.0.blocks.0.mlp.fc1.weight"
    mlp_ratio = _need(shapes, fc1, 2)[0] / dims[0] if fc1 in shapes else 0.0

    if len(stages) == 1:
        downsample = "v1" if forward_type == "v0" else "v3"  # unused: no downsample layer
    elif "layers.0.downsample.reduction.weight" in shapes:
        downsample = "v1"
    else:
        kernel = _need(shapes, "layers.0.downsample.1.weight", 4)[-1]
        if kernel not in (2, 3):
            raise CheckpointError(
                f"cannot detect the model config: layers.0.downsample.1.weight has a {kernel}x"
                f"{kernel} kernel; known downsample convs are 2x2 (v2) and 3x3 (v3)"
            )
        downsample = "v2" if kernel == 2 else "v3"

    embed = _need(shapes, "patch_embed.0.weight", 4)
    if "patch_embed.5.weight" in shapes:
        patch_embed, patch_size = "v2", 2 * (embed[-1] - 1)
    else:
        patch_embed, patch_size = "v1", embed[-1]

    return dict(
        depths=tuple(depths),
        dims=tuple(dims),
        d_state=d_state,
        ssm_ratio=ssm_ratio,
        dt_rank=dt_rank,
        mlp_ratio=mlp_ratio,
        forward_type=forward_type,
        conv_bias="layers.0.blocks.0.op.conv2d.bias" in shapes,
        norm_layer="ln" if forward_type == "v0" else "ln2d",
        downsample=downsample,
        patch_embed=patch_embed,
        num_classes=_need(shapes, "classifier.head.weight", 2)[0],
        patch_size=patch_size,
        in_chans=embed[1],
        k_routes=k_routes,
        d_conv=conv[-1],
    )


def detect_config(state_dict: Mapping[str, object]) -> VMambaConfig:
    """The config of a VMamba state dict, inferred from its keys and shapes.

    A config equal (up to its name) to a registered variant gets that variant's name, any other
    is named ``"custom"``. ``norm_layer`` follows the family (``"ln"`` for v0, ``"ln2d"``
    otherwise) and ``eps`` is the default: a state dict cannot tell them.

    >>> import jax, numpy as np, jaxmamba
    >>> from jaxmamba.storage.checkpoint import param_shapes
    >>> shapes = param_shapes(jaxmamba.get_config("vmamba_tiny_s1l8"))
    >>> detect_config({k: np.zeros(s, np.float32) for k, s in shapes.items()}).name
    'vmamba_tiny_s1l8'
    """
    sd = normalize_state_dict(state_dict)
    fields = _detect_fields({k: tuple(v.shape) for k, v in sd.items()})
    try:
        config = VMambaConfig(name="custom", **fields)
    except ConfigError as e:
        raise CheckpointError(f"the detected model config is invalid: {e}") from None
    for name in list_models():
        registered = get_config(name)
        if isinstance(registered, VMambaConfig) and registered.replace(name="custom") == config:
            return registered
    return config


def _check_variant(detected: VMambaConfig, variant: str | ModelConfig) -> VMambaConfig:
    try:
        given = get_config(variant)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(given, VMambaConfig):
        raise CheckpointError(f"the checkpoint is a VMamba model, {given.name!r} a Vim variant")
    diffs = [
        f"{f.name}: {getattr(given, f.name)!r} given, {getattr(detected, f.name)!r} in checkpoint"
        for f in dataclasses.fields(VMambaConfig)
        if f.name not in UNDETECTABLE and getattr(given, f.name) != getattr(detected, f.name)
    ]
    if diffs:
        raise CheckpointError(
            f"the checkpoint is not {given.name!r} ({detected.describe()}); differing fields: "
            + "; ".join(diffs)
        )
    return given


def state_dict_to_model(
    state_dict: Mapping[str, object],
    variant: str | ModelConfig | None = None,
    *,
    img_size: int | tuple[int, int] | None = None,
    stride: int | None = None,
    interpolate_pos_embed: bool = False,
) -> Model:
    """A :class:`~jaxmamba.Model` from an official VMamba or Vision Mamba state dict of arrays.

    Args:
      state_dict: official key → floating-point array (NumPy, jax, or torch tensors).
      variant: optional name or config the checkpoint must be; a mismatch raises
        :class:`CheckpointError` listing the differing fields. Without it the config is detected.
      img_size, stride, interpolate_pos_embed: a Vim checkpoint's input size ``(H, W)`` (or one
        int) and patch stride, which its shapes cannot tell, and whether to resample its
        position embedding to ``img_size`` (see
        :func:`convert.vim_state_dict.vim_state_dict_to_model`); ignored for VMamba.

    Returns:
      The model, parameters float32 ``jax.Array`` with exactly ``create_model(config)``'s tree.

    >>> import numpy as np, jaxmamba
    >>> from jaxmamba.storage.checkpoint import param_shapes
    >>> shapes = param_shapes(jaxmamba.get_config("vmamba_test"))
    >>> state_dict_to_model({k: np.ones(s) for k, s in shapes.items()}).config.name
    'vmamba_test'
    """
    sd = normalize_state_dict(state_dict)
    if is_vim_state_dict(sd):
        from .vim_state_dict import vim_state_dict_to_model  # it builds on this module

        if variant is not None and not isinstance(variant, str | VimConfig):
            raise CheckpointError("the checkpoint is a Vim model, the variant a VMamba config")
        return vim_state_dict_to_model(
            sd, variant, img_size=img_size, stride=stride,
            interpolate_pos_embed=interpolate_pos_embed,
        )  # fmt: skip
    config = detect_config(sd)
    if variant is not None:
        if isinstance(variant, VimConfig):
            raise CheckpointError("the checkpoint is a VMamba model, the variant a Vim config")
        config = _check_variant(config, variant)
    check_params(config, {k: tuple(v.shape) for k, v in sd.items()}, "the state dict")
    nonfinite = [f"{k} ({int(n)})" for k, v in sd.items() if (n := np.sum(~np.isfinite(v)))]
    if nonfinite:
        raise CheckpointError(
            f"{len(nonfinite)} parameter(s) hold NaN or inf values (count in brackets): "
            + _listing(nonfinite)
        )
    flat = {P.key_to_path(k): jnp.asarray(np.asarray(v, np.float32)) for k, v in sd.items()}
    return Model(config, P.unflatten(flat))
