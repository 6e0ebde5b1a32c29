"""Read official VMamba and Vision Mamba checkpoint files (``.pth``/``.pt``/``.bin``,
``.safetensors``) safely.

PyTorch files are read with ``torch.load(weights_only=True)``: a pickle that would run code is
refused, never executed.  The CRC-32 of every member of a zip-format file (``torch.save``'s
default) is checked first, so a damaged file is refused by name; the legacy pickle format and
safetensors carry no checksum.  A file that is none of these formats is refused before torch is
needed.  The training config that release checkpoints carry (a yacs ``CfgNode``) is read as a
plain ``OrderedDict`` stand-in, so those files load without yacs and without unpickling anything
but data. torch and safetensors are imported lazily (the ``[torch]`` extra).
"""

from __future__ import annotations

import collections
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxmamba.errors import CheckpointError, require
from jaxmamba.models.config import ModelConfig
from jaxmamba.models.model import Model
from jaxmamba.storage.store import first_line

from .state_dict import state_dict_to_model, to_numpy

__all__ = ["read_state_dict", "select_state_dict", "load_torch_checkpoint"]

# Globals that official training checkpoints pickle beside the weights: harmless config containers,
# read as plain OrderedDicts (the class itself is never imported or called).
_CONFIG_CLASSES = ("yacs.config.CfgNode",)


class _ConfigStandIn:
    """Stand-in for a pickled config class: unpickles as an ``OrderedDict`` of its items."""

    def __new__(cls, *args, **kwargs):
        return collections.OrderedDict()


def _import_torch():
    torch = require("torch", "torch", "reading PyTorch checkpoints")
    return torch


def _read_torch(path: Path, zip_file: bool = False):
    torch = _import_torch()
    if zip_file:
        _check_zip(path)
    stand_ins = [(_ConfigStandIn, name) for name in _CONFIG_CLASSES]
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (bad zip), EOFError, ValueError, ...
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint: {type(e).__name__}: {_torch_detail(e)}"
        ) from None


def _torch_detail(e: Exception) -> str:
    """The useful line of a ``torch.load`` error (its weights-only messages are paragraphs)."""
    text = str(e)
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsafe:
        return (
            f"unpickling it would load {unsafe[1]}, which could run code; refused "
            "(only tensors and plain data are read)"
        )
    if "Weights only load failed" in text:
        after = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        return f"not a valid checkpoint ({after[0].strip() if after else 'unpickling failed'})"
    return first_line(e)


def _read_safetensors(path: Path) -> dict:
    load_file = require("safetensors.numpy", "torch", "reading .safetensors files").load_file
    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError, or a dtype NumPy lacks (bfloat16): retry with torch
        first = e
    try:
        import torch  # noqa: F401
        from safetensors.torch import load_file as load_torch_file
    except ImportError:
        raise CheckpointError(
            f"cannot read {path} as safetensors: {type(first).__name__}: {first_line(first)}"
        ) from None
    try:
        return load_torch_file(str(path))
    except Exception as e:
        raise CheckpointError(
            f"cannot read {path} as safetensors: {type(e).__name__}: {first_line(e)}"
        ) from None


def select_state_dict(obj, *, ema: bool = False, source: str = "the checkpoint") -> dict:
    """The state dict inside a loaded checkpoint object, values as NumPy (float32) arrays.

    Accepts ``{"model": sd, ...}`` (training checkpoints: ``optimizer``, ``lr_scheduler``,
    ``epoch``, ``config``, ... are ignored), ``{"state_dict": sd}`` and a bare ``sd``. With
    ``ema=True`` the ``"model_ema"`` weights are taken and their absence is an error.

    >>> import numpy as np
    >>> list(select_state_dict({"model": {"head.bias": np.zeros(2)}, "epoch": 3}))
    ['head.bias']
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(obj).__name__}, not a state dict or a dict with 'model'"
        )
    if ema:
        if "model_ema" not in obj:
            raise CheckpointError(
                f"{source} has no 'model_ema' weights (top-level keys: {sorted(map(str, obj))})"
            )
        sd = obj["model_ema"]
    elif "model" in obj:
        sd = obj["model"]
    elif "state_dict" in obj:
        sd = obj["state_dict"]
    else:
        sd = obj
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"the state dict in {source} is a {type(sd).__name__}, not a dict")
    out = {}
    for k, v in sd.items():
        try:
            out[k] = to_numpy(v)
        except CheckpointError as e:
            raise CheckpointError(f"{source}: state dict value {k} {e}") from None
    return out


_ZIP = b"PK\x03\x04"
_PICKLE = b"\x80"  # torch.save's legacy format: a pickle of protocol >= 2


def _kind(path: Path) -> str:
    """``"safetensors"``, ``"zip"`` (torch.save's default), ``"pickle"`` (its legacy format), or
    raise :class:`CheckpointError`: the file is none of them (checked before torch is needed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if path.suffix == ".safetensors" or (len(head) > 8 and head[8:9] == b"{"):
        return "safetensors"
    if head.startswith(_ZIP):
        return "zip"
    if head.startswith(_PICKLE):
        return "pickle"
    raise CheckpointError(
        f"cannot read {path} as a PyTorch checkpoint or safetensors file: it is neither a "
        f"torch.save file (zip or pickle) nor safetensors (it starts with {head[:8]!r})"
    )


def _check_zip(path: Path) -> None:
    """Verify the CRC-32 of every member of a torch.save zip file (a flipped byte is an error)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint: a damaged zip file ({first_line(e)})"
        ) from None
    if bad is not None:
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint: it is damaged, the CRC-32 of its "
            f"member {bad} does not match its contents (a changed byte); nothing was loaded"
        )


def read_state_dict(path: str | os.PathLike, *, ema: bool = False) -> dict[str, np.ndarray]:
    """The state dict of a checkpoint file: ``.safetensors``, else any ``torch.save`` file.

    >>> import tempfile, numpy as np
    >>> from safetensors.numpy import save_file
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save_file({"head.bias": np.zeros(2, np.float32)}, f"{tmp}/w.safetensors")
    ...     read_state_dict(f"{tmp}/w.safetensors")["head.bias"].dtype
    dtype('float32')
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {path} is empty")
    kind = _kind(path)
    if kind == "safetensors":
        obj = _read_safetensors(path)
    else:
        obj = _read_torch(path, zip_file=kind == "zip")
    return select_state_dict(obj, ema=ema, source=str(path))


def load_torch_checkpoint(
    path: str | os.PathLike,
    variant: str | ModelConfig | None = None,
    *,
    ema: bool = False,
    img_size: int | tuple[int, int] | None = None,
    stride: int | None = None,
    interpolate_pos_embed: bool = False,
) -> Model:
    """A :class:`~jaxmamba.Model` from an official VMamba or Vision Mamba (Vim) checkpoint file.

    Args:
      path: a ``torch.save`` file (``.pth``, ``.pt``, ``.bin``; zip or legacy format) or a
        ``.safetensors`` file holding the state dict (or ``{"model": state_dict, ...}``).
      variant: optional variant name or config the checkpoint must match; detected otherwise.
      ema: use the ``"model_ema"`` weights of a training checkpoint.
      img_size: a Vim checkpoint's input size ``(H, W)`` (or one int): its shapes tell the number
        of patches, not the size; without it a checkpoint of a registered variant's shapes
        (the released models, 224 x 224) is that variant, any other is an error.
      stride: a Vim checkpoint's patch stride, where ``img_size`` leaves it ambiguous.
      interpolate_pos_embed: resample a Vim position embedding to ``img_size`` (bicubic, CLS
        entry kept) when the checkpoint was trained at another size; never done otherwise.

    Raises:
      CheckpointError: the file is missing, unreadable, unsafe, or not a VMamba checkpoint that
        matches ``variant``; the message names the file and the offending keys and shapes.
      ImportError: torch (or safetensors) is needed and not installed.

    >>> import tempfile, torch, jaxmamba
    >>> from jaxmamba.storage.checkpoint import param_shapes
    >>> shapes = param_shapes(jaxmamba.get_config("vmamba_test"))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     torch.save({"model": {k: torch.zeros(s) for k, s in shapes.items()}}, f"{tmp}/m.pth")
    ...     load_torch_checkpoint(f"{tmp}/m.pth").config.name
    'vmamba_test'
    """
    state_dict = read_state_dict(path, ema=ema)
    try:
        return state_dict_to_model(
            state_dict, variant, img_size=img_size, stride=stride,
            interpolate_pos_embed=interpolate_pos_embed,
        )  # fmt: skip
    except CheckpointError as e:
        raise CheckpointError(f"{Path(path)}: {e}") from None
