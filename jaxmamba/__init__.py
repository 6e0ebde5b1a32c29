"""jaxmamba: exact hidden attention of vision Mamba (VMamba) models, in JAX.

Shape letters used throughout: b batch, h w patch grid, l = h·w sequence length, k scan route,
d channel (d_inner), n SSM state, c model width.

>>> import jaxmamba, jax.numpy as jnp
>>> model = jaxmamba.create_model("vmamba_test")
>>> jaxmamba.forward(model, jnp.zeros((1, 64, 64, 3)), order="spiral").shape
(1, 10)
>>> maps = jaxmamba.extract_attention(model, jnp.zeros((1, 64, 64, 3)), blocks=3)
>>> maps["layers.3.blocks.0"].shape, maps.grid("layers.3.blocks.0")
((1, 4, 4), (2, 2))
"""

from jaxmamba.attention.extract import extract_attention
from jaxmamba.attention.maps import AttentionMaps
from jaxmamba.attention.mean import attention_mean
from jaxmamba.attention.options import AttentionOptions
from jaxmamba.attention.rollout import rollout
from jaxmamba.attention.verify import verify
from jaxmamba.errors import (
    AggregateError,
    AttentionError,
    CheckpointError,
    ConfigError,
    InputError,
    JaxmambaError,
    OrderError,
)
from jaxmamba.models.config import Block, VMambaConfig, get_config, list_models
from jaxmamba.models.model import Model, create_model, forward, run_with_cache, select_blocks
from jaxmamba.orders import ORDER_NAMES, Order, SoftOrder, as_order, make_routes
from jaxmamba.pretrained import load_default
from jaxmamba.storage.checkpoint import load, save
from jaxmamba.study import Study, write_study
from jaxmamba.views.widget import show

__version__ = "0.2.0"

__all__ = [
    "AggregateError", "AttentionError", "CheckpointError", "ConfigError", "InputError",
    "JaxmambaError", "OrderError",
    "AttentionMaps", "AttentionOptions", "attention_mean", "extract_attention", "rollout", "verify",
    "load", "save", "load_default", "Study", "write_study", "show",
    "Block", "VMambaConfig", "get_config", "list_models",
    "Model", "create_model", "forward", "run_with_cache", "select_blocks",
    "ORDER_NAMES", "Order", "SoftOrder", "as_order", "make_routes",
    "convert",
]  # fmt: skip


def __getattr__(name: str):
    # jaxmamba.convert (the PyTorch checkpoint converter) is imported on first use, so that
    # ``import jaxmamba`` stays light; the converter itself imports torch only when reading.
    if name == "convert":
        import importlib

        return importlib.import_module("jaxmamba.convert")
    raise AttributeError(f"module 'jaxmamba' has no attribute {name!r}")
