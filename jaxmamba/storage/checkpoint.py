"""Save and load a :class:`~jaxmamba.Model` as an Orbax checkpoint directory (no torch needed).

Layout of a checkpoint directory (a :mod:`jaxmamba.storage.store` folder)::

    DIR/config.json      {"format": "jaxmamba", "format_version": 2, "config": {...fields}}
                         (and "family": "vim" for a Vision Mamba model; absent: VMamba)
    DIR/params/          Orbax (StandardCheckpointer) checkpoint of ``model.params``, float32
    DIR/checksums.json   sha256 of every file (format_version 1 checkpoints have none)

Saving is atomic: everything is written to a hidden sibling directory that is renamed to ``DIR``
only once complete, so a failed save leaves nothing behind and never half-overwrites a checkpoint;
``overwrite=True`` replaces only a folder that jaxmamba wrote.  Loading verifies the checksums
first, so a damaged file is reported by name instead of loading wrong weights.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import DTypeLike

from jaxmamba.errors import CheckpointError
from jaxmamba.models import params as P
from jaxmamba.models.config import (
    ConfigError,
    ModelConfig,
    VimConfig,
    VMambaConfig,
    get_config,
    list_models,
)
from jaxmamba.models.model import Model, abstract_model
from jaxmamba.storage import store

__all__ = ["CheckpointError", "save", "load", "param_shapes", "check_params"]

FORMAT = "jaxmamba"
FORMAT_VERSION = 2  # 2: with checksums.json; version 1 checkpoints (no checksums) still load
FORMAT_VERSION_READ = (1, 2)
CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


@functools.lru_cache(maxsize=64)
def _shapes(config: ModelConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    abstract = abstract_model(config)  # traces only: nothing is computed
    return tuple((P.path_to_key(p), tuple(v.shape)) for p, v in P.flatten(abstract.params).items())


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Official state-dict key → shape of every parameter of ``config`` (via ``jax.eval_shape``).

    >>> from jaxmamba import get_config
    >>> param_shapes(get_config("vmamba_test"))["layers.0.blocks.0.op.A_logs"]
    (128, 1)
    """
    return dict(_shapes(config))


def _listing(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_params(config: ModelConfig, shapes: Mapping[str, tuple[int, ...]], what: str) -> None:
    """Raise :class:`CheckpointError` unless ``shapes`` (key → shape) is exactly ``config``'s tree.

    Every expected parameter must be present with its shape and nothing else may be there; the
    error lists the first ten offending keys of each kind and their count.

    >>> from jaxmamba import get_config
    >>> config = get_config("vmamba_test")
    >>> check_params(config, param_shapes(config), "a state dict")  # passes: returns None
    """
    expected = param_shapes(config)
    missing = [k for k in expected if k not in shapes]
    unexpected = sorted(k for k in shapes if k not in expected)
    wrong = [
        f"{k} {tuple(shapes[k])} (expected {s})"
        for k, s in expected.items()
        if k in shapes and tuple(shapes[k]) != s
    ]
    problems = [
        f"{len(keys)} {label}{'s' if len(keys) > 1 else ''}: {_listing(keys)}"
        for label, keys in (
            ("missing key", missing),
            ("unexpected key", unexpected),
            ("wrong shape", wrong),
        )
        if keys
    ]
    if problems:
        raise CheckpointError(f"{what} does not match {config.describe()}: " + "; ".join(problems))


def _config_to_json(config: ModelConfig) -> str:
    payload: dict[str, object] = {"format": FORMAT, "format_version": FORMAT_VERSION}
    if isinstance(config, VimConfig):
        payload["family"] = "vim"
    payload["config"] = dataclasses.asdict(config)
    return json.dumps(payload, indent=1) + "\n"


def _config_from_json(text: str, source: Path) -> tuple[ModelConfig, int]:
    """The config in a checkpoint's ``config.json`` text, and the file's format version."""
    payload = store.parse_json(text, source)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{source} is not a jaxmamba checkpoint config (no format {FORMAT!r})"
        )
    if payload.get("format_version") not in FORMAT_VERSION_READ:
        raise CheckpointError(
            f"{source} has format_version {payload.get('format_version')!r}; "
            f"this jaxmamba reads versions {FORMAT_VERSION_READ}"
        )
    fields = payload.get("config")
    if not isinstance(fields, dict):
        raise CheckpointError(f"{source} has no 'config' object")
    family = payload.get("family", "vmamba")
    if family not in ("vmamba", "vim"):
        raise CheckpointError(f"{source} has unknown model family {family!r}")
    kind: type[VMambaConfig] | type[VimConfig] = VimConfig if family == "vim" else VMambaConfig
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise CheckpointError(f"{source} has unknown config fields {unknown}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    config: ModelConfig
    try:
        config = kind(**fields)
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source} holds an invalid config: {e}") from None
    if config.name in list_models() and config != get_config(config.name):
        registered = get_config(config.name)
        diffs = [
            f"{f.name} {getattr(config, f.name)!r} (variant: {getattr(registered, f.name)!r})"
            for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(registered, f.name, None)
        ]
        raise CheckpointError(
            f"{source} names the variant {config.name!r} but differs from it: {'; '.join(diffs)}"
            " (a changed variant is named 'custom')"
        )
    return config, int(payload["format_version"])


def _float32_params(model: Model) -> dict:
    flat = {}
    for path, leaf in P.flatten(model.params).items():
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise CheckpointError(
                f"parameter {P.path_to_key(path)} is {type(leaf).__name__} "
                f"(dtype {dtype}), not a floating-point array"
            )
        flat[path] = np.asarray(leaf).astype(np.float32)  # host copy; no device op per shape
    return P.unflatten(flat)


def save(model: Model, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``directory`` as an Orbax checkpoint plus ``config.json``, atomically.

    Args:
      model: a :class:`~jaxmamba.Model`; its parameters must be exactly its config's tree.
      directory: the checkpoint directory to create.
      overwrite: replace an existing non-empty ``directory`` that is a jaxmamba checkpoint
        (anything else is refused and left untouched).

    Returns:
      The absolute path of the checkpoint directory.

    >>> import tempfile, jaxmamba
    >>> model = jaxmamba.create_model("vmamba_test")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save(model, f"{tmp}/ckpt")
    ...     load(path).config.name
    'vmamba_test'
    """
    if not isinstance(model, Model):
        raise CheckpointError(f"save expects a jaxmamba Model, got {type(model).__name__}")
    shapes = {P.path_to_key(p): tuple(np.shape(v)) for p, v in P.flatten(model.params).items()}
    check_params(model.config, shapes, "the model's parameter tree")
    params = _float32_params(model)
    return store.write(
        directory, {PARAMS_DIR: params}, {CONFIG_FILE: _config_to_json(model.config)},
        overwrite=overwrite,
    )  # fmt: skip


def load(directory: str | os.PathLike) -> Model:
    """Read a checkpoint written by :func:`save`.

    Returns:
      A :class:`~jaxmamba.Model` whose parameters are float32 arrays with exactly the tree of
      ``create_model(config).params``.

    >>> import tempfile, jaxmamba
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     model = load(save(jaxmamba.create_model("vmamba_test"), f"{tmp}/ckpt"))
    >>> model.params["layers_0"]["blocks_0"]["op"]["Ds"].dtype
    dtype('float32')
    """
    directory = Path(directory).expanduser().absolute()
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise CheckpointError(f"checkpoint directory {directory} {what}")
    config_file = directory / CONFIG_FILE
    if not config_file.is_file():
        raise CheckpointError(f"{directory} is not a jaxmamba checkpoint: no {CONFIG_FILE}")
    try:
        text = config_file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {config_file}: {e}") from None
    config, format_version = _config_from_json(text, config_file)
    params_dir = directory / PARAMS_DIR
    if not params_dir.is_dir():
        raise CheckpointError(f"{directory} is not a jaxmamba checkpoint: no {PARAMS_DIR}/")
    # NumPy targets: restored arrays come back on the host, and become uncommitted jax Arrays (as
    # create_model's are), so a loaded model reuses the forward compiled for a fresh one.
    target = P.unflatten(
        {P.key_to_path(k): np.empty(s, np.float32) for k, s in param_shapes(config).items()}
    )
    import orbax.checkpoint as ocp

    try:
        with store.quiet_orbax():
            checkpointer = ocp.StandardCheckpointer()
            try:
                stored = _stored_shapes(checkpointer, params_dir)
                if stored is not None:
                    shapes, dtypes = stored
                    check_params(config, shapes, f"the checkpoint in {params_dir}")
                    _check_dtypes(dtypes, params_dir)
                if format_version >= 2:  # version 1 has no checksums
                    try:
                        store.verify(directory)  # before reading a single number
                    except CheckpointError as e:
                        raise CheckpointError(
                            f"cannot restore the parameters of {config.describe()}: {e}"
                        ) from None
                restored = checkpointer.restore(params_dir, target)
            finally:
                checkpointer.close()
    except CheckpointError:
        raise
    except Exception as e:  # orbax / tensorstore raise many types for a damaged directory
        raise CheckpointError(
            f"cannot restore the parameters of {config.describe()} from {params_dir}: "
            f"{type(e).__name__}: {store.first_line(e)}"
        ) from e
    # jaxlib ships no type stubs for PyTreeDef (mypy cannot compare two): held as Any
    restored_tree: Any = jax.tree.structure(restored)
    if restored_tree != jax.tree.structure(target):
        raise CheckpointError(f"{params_dir} does not hold the parameter tree of the config")
    params = jax.tree.map(lambda x: jnp.asarray(np.asarray(x, np.float32)), restored)
    return Model(config, params)


def _check_dtypes(dtypes: Mapping[str, DTypeLike | None], params_dir: Path) -> None:
    """Refuse stored parameters that are not floating point (restoring would cast them)."""
    bad = []
    for key, dtype in dtypes.items():
        try:
            floating = dtype is not None and jnp.issubdtype(np.dtype(dtype), jnp.floating)
        except TypeError:
            floating = False
        if not floating:
            bad.append(f"{key} ({dtype})")
    if bad:
        raise CheckpointError(
            f"{params_dir} holds {len(bad)} parameter(s) that are not floating point: "
            + _listing(bad)
        )


def _stored_shapes(
    checkpointer, path: Path
) -> tuple[dict[str, tuple[int, ...]], dict[str, DTypeLike | None]] | None:
    """``(key → shape, key → dtype)`` of the arrays in an Orbax checkpoint, or ``None`` if its
    metadata is unusual."""
    try:
        meta = checkpointer.metadata(path)
    except (AttributeError, NotImplementedError):  # an Orbax without this API: restore decides
        return None
    tree = getattr(meta, "item_metadata", meta)  # a StepMetadata (orbax >= 0.11) or the tree
    tree = getattr(tree, "tree", tree)
    if not isinstance(tree, Mapping) or not tree:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, DTypeLike | None] = {}
    for p, leaf in P.flatten(tree).items():
        shape = getattr(leaf, "shape", None)
        if shape is None:
            return None
        shapes[P.path_to_key(p)] = tuple(shape)
        dtypes[P.path_to_key(p)] = getattr(leaf, "dtype", None)
    return shapes, dtypes
