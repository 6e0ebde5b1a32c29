"""jaxmamba: exact hidden attention of vision Mamba (VMamba) models, in JAX.

Shape letters used throughout: b batch, h w patch grid, l = h·w sequence length, k scan route,
d channel (d_inner), n SSM state, c model width.

>>> import jaxmamba, jax.numpy as jnp
>>> model = jaxmamba.create_model("vmamba_test")
>>> jaxmamba.forward(model, jnp.zeros((1, 64, 64, 3)), order="spiral").shape
(1, 10)
"""

from jaxmamba.checkpoint import CheckpointError, load, save
from jaxmamba.config import ConfigError, VMambaConfig, get_config, list_models
from jaxmamba.model import InputError, Model, create_model, forward, run_with_cache, select_blocks
from jaxmamba.orders import ORDER_NAMES, Order, OrderError, as_order, make_routes


def load_default():
    """The embedded default model (a small cross-scan VMamba trained on 64x64 digits), offline.

    See ``jaxmamba/default_model/TRAINING.md`` for the command that reproduces it.
    """
    from jaxmamba.train import load_default as _load

    return _load()


__all__ = [
    "CheckpointError", "load", "save",
    "ConfigError", "VMambaConfig", "get_config", "list_models",
    "InputError", "Model", "create_model", "forward", "run_with_cache", "select_blocks",
    "ORDER_NAMES", "Order", "OrderError", "as_order", "make_routes", "load_default",
]  # fmt: skip
__version__ = "0.1.0"
