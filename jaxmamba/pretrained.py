"""The models shipped with the package (no network, no torch).

* The default model: a small VMamba trained on the bundled digits in VMamba's cross-scan order
  by ``examples/train_default.py`` (see ``jaxmamba/default_model/TRAINING.md``).
* One model per scan order (:func:`load_order_models`): the same recipe trained in the cross
  (the default model), diagonal, Morton and spiral orders, the reference study's comparison of
  models *trained* in each order; each folder's ``TRAINING.md`` gives the command that made it.
* A small Vision Mamba (:func:`load_vim_digits`): the registered ``vim_digits`` config trained
  by the same recipe in its official path (``jaxmamba/vim_digits_model/TRAINING.md``), so that
  the two families can be shown side by side on the same digits.

Loading them needs neither the training loop nor scikit-learn; every load verifies the folder's
``checksums.json``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import cast

from jaxmamba.errors import CheckpointError
from jaxmamba.models.config import VMambaConfig, get_config
from jaxmamba.models.model import Model

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_MODEL_DIR",
    "ORDER_MODELS",
    "ORDER_MODELS_DIR",
    "VIM_DIGITS_DIR",
    "default_model_config",
    "load_default",
    "load_order_models",
    "load_vim_digits",
]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
ORDER_MODELS_DIR = Path(__file__).resolve().parent / "order_models"
ORDER_MODELS = ("cross", "diagonal", "morton", "spiral")
VIM_DIGITS_DIR = Path(__file__).resolve().parent / "vim_digits_model"
DEFAULT_IMAGE_SIZE = 64


def default_model_config() -> VMambaConfig:
    """Config of the default model: a v05_noz (vmamba_tiny_s1l8 family) VMamba, dims 16-128,
    depths 1-1-2-1, 10 classes.

    >>> default_model_config().describe()
    'custom v05_noz, dims 16, depths 1-1-2-1, d_state 1, ssm_ratio 1, 10 classes'
    """
    config = get_config("vmamba_tiny_s1l8", dims=16, depths=(1, 1, 2, 1), num_classes=10)
    return cast(VMambaConfig, config)  # a VMamba variant's overrides: a VMamba config


def load_default() -> Model:
    """The default model shipped in ``jaxmamba/default_model`` (no network, no torch).

    A small cross-scan VMamba trained on the bundled digits (:func:`default_model_config`);
    ``jaxmamba/default_model/TRAINING.json`` records how, its image size and test accuracy.

    >>> load_default().config.num_classes
    10
    """
    from jaxmamba.storage import checkpoint

    if not (DEFAULT_MODEL_DIR / checkpoint.CONFIG_FILE).is_file():
        raise CheckpointError(
            f"the default model is missing from {DEFAULT_MODEL_DIR}; "
            "create it with: python examples/train_default.py"
        )
    return checkpoint.load(DEFAULT_MODEL_DIR)


def order_model_dir(order: str) -> Path:
    """The folder of the shipped model trained in ``order`` (the default model for cross)."""
    if order not in ORDER_MODELS:
        raise CheckpointError(
            f"no shipped model was trained in order {order!r}; the shipped ones are "
            f"{', '.join(ORDER_MODELS)} (train another with examples/train_default.py --order)"
        )
    return DEFAULT_MODEL_DIR if order == "cross" else ORDER_MODELS_DIR / order


def load_order_models(orders=ORDER_MODELS) -> dict[str, Model]:
    """``{order: model}``: the shipped models trained on the digits in each of ``orders``.

    >>> models = load_order_models(["cross", "spiral"])
    >>> sorted(models), models["spiral"].config == models["cross"].config
    (['cross', 'spiral'], True)
    """
    from jaxmamba.storage import checkpoint

    return {o: checkpoint.load(order_model_dir(o)) for o in orders}


@functools.cache
def load_vim_digits() -> Model:
    """The digit Vision Mamba shipped in ``jaxmamba/vim_digits_model`` (no network, no torch).

    The registered ``vim_digits`` config (8x8 patches of 64x64 digits: 64 patches and the CLS
    token; 4 layers, embed_dim 64) trained by the default model's recipe in Vim's official path
    (order ``"raster"``); ``TRAINING.json`` beside it records the command, the image size and
    the held-out accuracy. Loaded once per process (checksums verified) and cached: the same
    :class:`Model` every call, whose arrays are immutable.

    >>> model = load_vim_digits()
    >>> model.config.name, model.config.grid, model.config.seq_len
    ('vim_digits', (8, 8), 65)
    """
    from jaxmamba.storage import checkpoint

    if not (VIM_DIGITS_DIR / checkpoint.CONFIG_FILE).is_file():
        raise CheckpointError(
            f"the digit Vim is missing from {VIM_DIGITS_DIR}; create it with: "
            "python examples/train_default.py --family vim --out jaxmamba/vim_digits_model"
        )
    return checkpoint.load(VIM_DIGITS_DIR)
