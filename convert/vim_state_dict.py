"""Official Vision Mamba (Vim) state dict → :class:`~jaxmamba.Model`, as pure functions.

A Vim state dict (hustvl/Vim, ``checkpoint["model"]``) is recognised by its keys
(``cls_token``, ``pos_embed``, ``layers.<i>.mixer.A_b_log``); its parameter names are already the
model's (:mod:`jaxmamba.models.params`), so conversion is the mechanical key → path rule after a
strict check. The shapes give every hyper-parameter but the input size and the patch stride: the
position embedding has ``L = M + 1`` entries for an ``M``-patch grid, and :func:`vim_geometry`
finds the ``(img_size, stride)`` that give ``M`` patches, or says why none or several do. A
model for another input size gets its position embedding resampled only on request
(``interpolate_pos_embed=True``, :func:`resample_pos_embed`: bicubic on the patch grid as timm's
``resample_abs_pos_embed``, the CLS entry kept). No torch here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from jaxmamba.models import params as P
from jaxmamba.models.config import ConfigError, get_config, list_models
from jaxmamba.models.model import Model
from jaxmamba.models.vim_config import VimConfig, patch_token_index
from jaxmamba.storage.checkpoint import CheckpointError, check_params

from .state_dict import is_vim_state_dict

__all__ = [
    "is_vim_state_dict",
    "GEOMETRY",
    "detect_vim_fields",
    "resample_pos_embed",
    "vim_geometry",
    "vim_state_dict_to_model",
]

#: VimConfig fields that a state dict does not determine (beyond the name).
GEOMETRY = ("img_size", "stride")
_UNCHECKED = ("name", "eps", *GEOMETRY)


def _need(shapes: Mapping[str, tuple[int, ...]], key: str, ndim: int) -> tuple[int, ...]:
    if key not in shapes:
        raise CheckpointError(f"cannot detect the Vim config: missing key {key!r}")
    if len(shapes[key]) != ndim:
        raise CheckpointError(
            f"cannot detect the Vim config: {key} has shape {shapes[key]}, expected {ndim}-D"
        )
    return shapes[key]


def detect_vim_fields(shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict, int]:
    """``(fields, M)``: the :class:`VimConfig` fields a Vim state dict's shapes determine (all
    but ``img_size``, ``stride`` and ``eps``) and its number of patches ``M`` (``pos_embed``
    holds ``M + 1`` entries).

    >>> import jaxmamba
    >>> from jaxmamba.storage.checkpoint import param_shapes
    >>> fields, m = detect_vim_fields(param_shapes(jaxmamba.get_config("vim_tiny_s8")))
    >>> fields["embed_dim"], fields["depth"], m
    (192, 24, 729)
    """
    layers = {int(k.split(".")[1]) for k in shapes if k.startswith("layers.")}
    if sorted(layers) != list(range(len(layers))) or not layers:
        raise CheckpointError(
            f"cannot detect the Vim config: layers {sorted(layers)} are not 0..n-1"
        )
    e = _need(shapes, "cls_token", 3)[-1]
    _, c, p, q = _need(shapes, "patch_embed.proj.weight", 4)
    if p != q:
        raise CheckpointError(f"cannot detect the Vim config: a {p}x{q} patch is not square")
    d, n = _need(shapes, "layers.0.mixer.A_log", 2)
    in_rows = _need(shapes, "layers.0.mixer.in_proj.weight", 2)[0]
    if in_rows != 2 * d or d % e:
        raise CheckpointError(
            f"cannot detect the Vim config: in_proj has {in_rows} rows for d_inner {d} and "
            f"embed_dim {e}; expected 2·d_inner rows and d_inner a multiple of embed_dim"
        )
    rank = _need(shapes, "layers.0.mixer.dt_proj.weight", 2)[1]
    if rank != math.ceil(e / 16):
        raise CheckpointError(
            f"cannot detect the Vim config: dt_rank {rank} is not the official ceil({e} / 16)"
        )
    fields = dict(
        embed_dim=e,
        depth=len(layers),
        d_state=n,
        patch_size=p,
        in_chans=c,
        num_classes=_need(shapes, "head.weight", 2)[0],
        expand=d // e,
        d_conv=_need(shapes, "layers.0.mixer.conv1d.weight", 3)[-1],
    )
    return fields, _need(shapes, "pos_embed", 3)[1] - 1


def _grid(size: tuple[int, int], patch: int, stride: int) -> tuple[int, int]:
    return (size[0] - patch) // stride + 1, (size[1] - patch) // stride + 1


def _size(img_size) -> tuple[int, int]:
    if isinstance(img_size, int) and not isinstance(img_size, bool):
        return img_size, img_size
    if (
        isinstance(img_size, tuple | list)
        and len(img_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in img_size)
    ):
        return int(img_size[0]), int(img_size[1])
    raise CheckpointError(f"img_size must be an integer or (H, W), got {img_size!r}")


def _registered(fields: dict, m: int | None = None, stride: int | None = None) -> list[VimConfig]:
    """Registered Vim variants with these ``fields`` (and ``m`` patches, ``stride``)."""
    found = []
    for name in list_models():
        c = get_config(name)
        if not isinstance(c, VimConfig):
            continue
        if any(getattr(c, k) != v for k, v in fields.items()):
            continue
        if (m is None or c.num_patches == m) and (stride is None or c.stride == stride):
            found.append(c)
    return found


def vim_geometry(
    fields: dict,
    m: int,
    img_size: int | tuple[int, int] | None = None,
    stride: int | None = None,
    *,
    interpolate: bool = False,
) -> tuple[tuple[int, int], int]:
    """``(img_size, stride)`` of a Vim model whose state dict has ``fields`` and ``m`` patches.

    Without ``img_size``: the geometry of the one registered variant with these shapes (the
    released models at 224 x 224), else an error asking for ``img_size``. With it: the given
    ``stride``, or the stride in ``1..patch_size`` that gives ``m`` patches and reads every pixel
    (``(H - p) % s == 0`` and ``(W - p) % s == 0``, as the released strides 16 and 8 do at 224),
    one that divides the patch size preferred; none is an error (unless ``interpolate``: then
    ``stride`` is the given one, or the registered variant's), and several an ambiguity that
    ``stride=`` resolves.

    >>> fields = dict(embed_dim=192, patch_size=16)
    >>> vim_geometry(fields, 49, (64, 64))  # 7x7 patches: stride 8
    ((64, 64), 8)
    """
    p = fields["patch_size"]
    if stride is not None and not (isinstance(stride, int) and stride >= 1):
        raise CheckpointError(f"stride must be a positive integer, got {stride!r}")
    if img_size is None:
        known = _registered(fields, m, stride)
        if len(known) == 1:
            return known[0].img_size, known[0].stride
        raise CheckpointError(
            f"the checkpoint's position embedding has {m} patches + the CLS token, which no "
            "registered Vim variant of these shapes has at 224x224: pass img_size=(H, W) (the "
            "input size it was trained at) and, if ambiguous, stride="
        )
    size = _size(img_size)
    if min(size) < p:
        raise CheckpointError(f"img_size {size[0]}x{size[1]} is smaller than one {p}x{p} patch")
    if stride is not None:
        strides = [stride]
    else:  # strides that read every pixel; those that divide the patch size first
        strides = [s for s in range(1, p + 1) if all((n - p) % s == 0 for n in size)]
    matches = [s for s in strides if math.prod(_grid(size, p, s)) == m]
    best = next((tier for tier in ([s for s in matches if p % s == 0], matches) if tier), [])
    if len(best) == 1:
        return size, best[0]
    if len(best) > 1:
        raise CheckpointError(
            f"img_size {size[0]}x{size[1]} with {p}x{p} patches gives the checkpoint's {m} "
            f"patches for strides {best}: ambiguous, pass stride="
        )
    if interpolate:
        if stride is not None:
            return size, stride
        known = _registered(fields, m)
        if len(known) == 1:
            return size, known[0].stride
        raise CheckpointError(
            "interpolating the position embedding needs the patch stride: pass stride="
        )
    tried = [f"stride {s}: {'x'.join(map(str, _grid(size, p, s)))}" for s in strides[::-1][:4]]
    grids = ", ".join(tried) or f"no stride reads every pixel of {size[0]}x{size[1]}"
    raise CheckpointError(
        f"the checkpoint's position embedding has {m} patches + the CLS token, but img_size "
        f"{size[0]}x{size[1]} with {p}x{p} patches gives other grids ({grids}, ...); pass the "
        "size it was trained at, or interpolate_pos_embed=True to resample it to this size"
    )


def _aa_bicubic(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of PyTorch's antialiased bicubic resize along one axis
    (``F.interpolate(mode="bicubic", antialias=True, align_corners=False)``: PIL's filter,
    a = -0.5, widened by the scale when shrinking, weights renormalised at the borders)."""
    scale = n_in / n_out
    widen = max(scale, 1.0)
    support = 2.0 * widen

    def cubic(x):
        x = np.abs(x)
        a = -0.5
        inner = ((a + 2) * x - (a + 3)) * x * x + 1
        outer = (((x - 5) * x + 8) * x - 4) * a
        return np.where(x < 1, inner, np.where(x < 2, outer, 0.0))

    out = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        j = np.arange(lo, hi)
        w = cubic((j - center + 0.5) / widen)
        out[i, lo:hi] = w / w.sum()
    return out


def resample_pos_embed(pos_embed: np.ndarray, source: VimConfig, target: VimConfig) -> np.ndarray:
    """A Vim position embedding ``(1, L, E)`` of ``source``'s grid resampled to ``target``'s.

    The patch entries are resized as an image ``(gh, gw, E)`` by PyTorch's antialiased bicubic
    (what timm's ``resample_abs_pos_embed`` does for ViTs); the CLS entry (at ``M // 2``) is kept
    and put at the target's middle position.

    >>> s, t = VimConfig(img_size=(64, 64)), VimConfig(img_size=(96, 96))
    >>> resample_pos_embed(np.ones((1, 17, 4)), s, t).shape
    (1, 37, 4)
    """
    pos = np.asarray(pos_embed, np.float64)[0]
    gh, gw = source.grid
    patches = pos[patch_token_index(source)].reshape(gh, gw, -1)
    th, tw = target.grid
    patches = np.einsum("ih,hwe,jw->ije", _aa_bicubic(gh, th), patches, _aa_bicubic(gw, tw))
    patches = patches.reshape(th * tw, -1)
    t = target.cls_position
    out = np.concatenate([patches[:t], pos[source.cls_position][None], patches[t:]])
    return out[None].astype(np.float32)


def _check_variant(fields: dict, given: VimConfig) -> None:
    diffs = [
        f"{f.name}: {getattr(given, f.name)!r} given, {fields[f.name]!r} in checkpoint"
        for f in dataclasses.fields(VimConfig)
        if f.name not in _UNCHECKED and getattr(given, f.name) != fields[f.name]
    ]
    if diffs:
        raise CheckpointError(f"the checkpoint is not {given.name!r}: " + "; ".join(diffs))


def _named(config: VimConfig) -> VimConfig:
    """``config`` under the name of the registered variant it equals, if any."""
    for known in _registered({}):
        if dataclasses.replace(known, name=config.name) == config:
            return known
    return config


def vim_state_dict_to_model(
    state_dict: Mapping[str, np.ndarray],
    variant: str | VimConfig | None = None,
    *,
    img_size: int | tuple[int, int] | None = None,
    stride: int | None = None,
    interpolate_pos_embed: bool = False,
) -> Model:
    """A Vim :class:`~jaxmamba.Model` from an official state dict of float arrays.

    Args:
      state_dict: official key → array (``module.`` prefixes already stripped).
      variant: a Vim variant name or config the checkpoint must be (its input size and stride
        are the model's); without it they come from ``img_size`` / ``stride``
        (:func:`vim_geometry`).
      img_size, stride: the input size ``(H, W)`` (or one int) and patch stride.
      interpolate_pos_embed: resample the position embedding when the checkpoint's grid is not
        the one of the requested size (never done otherwise: a mismatch is an error).

    >>> import jaxmamba
    >>> from jaxmamba.storage.checkpoint import param_shapes
    >>> shapes = param_shapes(jaxmamba.get_config("vim_test"))
    >>> sd = {k: np.ones(s, np.float32) for k, s in shapes.items()}
    >>> vim_state_dict_to_model(sd, img_size=64).config.name
    'vim_test'
    >>> vim_state_dict_to_model(sd, img_size=96, interpolate_pos_embed=True).config.img_size
    (96, 96)
    """
    shapes = {k: tuple(np.shape(v)) for k, v in state_dict.items()}
    fields, m = detect_vim_fields(shapes)
    if variant is not None:
        try:
            target = get_config(variant)
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
        if not isinstance(target, VimConfig):
            raise CheckpointError(f"{target.name!r} is not a Vim variant; the checkpoint is Vim")
        _check_variant(fields, target)
        for name, value in (("img_size", img_size), ("stride", stride)):
            if value is not None and getattr(target, name) != (
                _size(value) if name == "img_size" else value
            ):
                raise CheckpointError(
                    f"{name}={value!r} contradicts the variant {target.name!r} "
                    f"({name} {getattr(target, name)!r})"
                )
    else:
        size, s = vim_geometry(fields, m, img_size, stride, interpolate=interpolate_pos_embed)
        try:
            target = _named(VimConfig(img_size=size, stride=s, **fields))
        except ConfigError as e:
            raise CheckpointError(f"the detected Vim config is invalid: {e}") from None
    arrays = {k: np.asarray(v, np.float32) for k, v in state_dict.items()}
    if target.num_patches != m:
        if not interpolate_pos_embed:
            raise CheckpointError(
                f"the checkpoint's position embedding has {m} patches, {target.name} at "
                f"{'x'.join(map(str, target.img_size))} has {target.num_patches}; pass "
                "interpolate_pos_embed=True to resample it"
            )
        g = math.isqrt(m)
        if g * g != m:
            raise CheckpointError(
                f"cannot interpolate the position embedding: its {m} patches are no square grid"
            )
        source = VimConfig(img_size=(g, g), patch_size=1, stride=1)
        arrays["pos_embed"] = resample_pos_embed(arrays["pos_embed"], source, target)
    check_params(target, {k: v.shape for k, v in arrays.items()}, "the state dict")
    nonfinite = [k for k, v in arrays.items() if not np.isfinite(v).all()]
    if nonfinite:
        raise CheckpointError(f"parameter(s) hold NaN or inf values: {', '.join(nonfinite[:10])}")
    flat = {P.key_to_path(k): jnp.asarray(v) for k, v in arrays.items()}
    return Model(target, P.unflatten(flat))
