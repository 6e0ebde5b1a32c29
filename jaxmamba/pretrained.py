"""The models shipped with the package (no network, no torch): the default model.

The default model is a small cross-scan VMamba trained on the bundled digits by
``examples/train_default.py`` (see ``jaxmamba/default_model/TRAINING.md``).  Loading it needs
neither the training loop nor scikit-learn.
"""

from __future__ import annotations

from pathlib import Path

from jaxmamba.config import VMambaConfig, get_config
from jaxmamba.errors import CheckpointError
from jaxmamba.model import Model

__all__ = ["DEFAULT_IMAGE_SIZE", "DEFAULT_MODEL_DIR", "default_model_config", "load_default"]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
DEFAULT_IMAGE_SIZE = 64


def default_model_config() -> VMambaConfig:
    """Config of the default model: a v05_noz (vmamba_tiny_s1l8 family) VMamba, dims 16-128,
    depths 1-1-2-1, 10 classes.

    >>> default_model_config().describe()
    'custom v05_noz, dims 16, depths 1-1-2-1, d_state 1, ssm_ratio 1, 10 classes'
    """
    return get_config("vmamba_tiny_s1l8", dims=16, depths=(1, 1, 2, 1), num_classes=10)


def load_default() -> Model:
    """The default model shipped in ``jaxmamba/default_model`` (no network, no torch).

    A small cross-scan VMamba trained on the bundled digits (:func:`default_model_config`);
    ``jaxmamba/default_model/TRAINING.json`` records how, its image size and test accuracy.

    >>> load_default().config.num_classes
    10
    """
    from jaxmamba import checkpoint

    if not (DEFAULT_MODEL_DIR / checkpoint.CONFIG_FILE).is_file():
        raise CheckpointError(
            f"the default model is missing from {DEFAULT_MODEL_DIR}; "
            "create it with: python examples/train_default.py"
        )
    return checkpoint.load(DEFAULT_MODEL_DIR)
