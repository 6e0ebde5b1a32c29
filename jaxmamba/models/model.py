"""Public model API: ``Model``, ``create_model``, ``forward``, ``run_with_cache``.

Both families go through the same functions: a :class:`Model` whose config is a
:class:`~jaxmamba.models.config.VMambaConfig` runs the VMamba classifier, one whose config is a
:class:`~jaxmamba.models.vim_config.VimConfig` the Vision Mamba classifier.

A model is a config plus a parameter pytree; every function here is pure and jit-compiled once per
(config, order, blocks, implementation, pieces), which are static. The device decision (how many
slices of the batch each stage runs as, :func:`cpu_pieces`) is taken by the callers
(:func:`forward`, :func:`run_with_cache`, the attention extraction and means) and passed to
:func:`apply`: the model itself never asks which backend it runs on.
"""

from __future__ import annotations

import functools
import itertools
import numbers
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Float

from jaxmamba.errors import InputError
from jaxmamba.models import params as P
from jaxmamba.models.cache import BlockScan, LayerScan, ScanCache
from jaxmamba.models.config import ModelConfig, VimConfig, VMambaConfig, get_config
from jaxmamba.models.init_rules import draw_params, trace_params
from jaxmamba.models.vim import Vim, default_routes, vim_routes
from jaxmamba.models.vmamba import VSSM
from jaxmamba.orders import Order, OrderError, SoftOrder, as_order

__all__ = [
    "BlockScan",
    "Model",
    "InputError",
    "abstract_model",
    "apply",
    "check_images",
    "cpu_pieces",
    "create_model",
    "forward",
    "model_order",
    "routes_for",
    "run_with_cache",
    "ScanCache",
    "select_blocks",
]


@struct.dataclass
class Model:
    """A classifier: a static, hashable ``config`` (VMamba or Vim) and a ``params`` pytree.

    ``params`` paths mirror the official state dict (see :mod:`jaxmamba.models.params`).
    """

    config: ModelConfig = struct.field(pytree_node=False)
    params: Any

    @property
    def num_params(self) -> int:
        return P.count(self.params)


def create_model(
    variant: str | ModelConfig = "vmamba_tiny_s1l8", *, seed: int = 0, **overrides
) -> Model:
    """A randomly initialised model of ``variant`` (official initialisation).

    Args:
      variant: a name from :func:`jaxmamba.list_models`, a :class:`VMambaConfig` or a
        :class:`VimConfig`.
      seed: PRNG seed of the initialisation.
      **overrides: config fields to change (e.g. ``num_classes=10``), giving a custom config.

    >>> m = create_model("vmamba_test", seed=0)
    >>> m.config.name, m.params["layers_0"]["blocks_0"]["op"]["A_logs"].shape
    ('vmamba_test', (128, 1))
    >>> create_model("vim_test").params["layers_1"]["mixer"]["A_b_log"].shape
    (64, 16)
    """
    config = get_config(variant, **overrides)
    return _init(config, seed)


def abstract_model(variant: str | ModelConfig = "vmamba_tiny_s1l8", **overrides) -> Model:
    """The :class:`Model` of ``variant`` with ``jax.ShapeDtypeStruct`` leaves: shapes, no values.

    What ``jax.eval_shape(lambda: create_model(variant))`` gives, without drawing anything (a
    restore target, a shape check).

    >>> abstract_model("vmamba_test").params["layers_0"]["blocks_0"]["op"]["Ds"].shape
    (128,)
    """
    config = get_config(variant, **overrides)
    return Model(config, trace_params(_module(config), *_init_args(config))[0])


def _module(config: ModelConfig, implementation: str | None = None) -> VSSM | Vim:
    """The Flax classifier of ``config``'s family."""
    if isinstance(config, VimConfig):
        return Vim(config, implementation)
    return VSSM(config, implementation)


def _init(config: ModelConfig, seed: int) -> Model:
    """Shapes by tracing (``jax.eval_shape``), values drawn on the host by each layer's official
    rule (:mod:`jaxmamba.models.init_rules`): nothing is compiled, so a session starts quick."""
    return Model(config, draw_params(_module(config), seed, *_init_args(config)))


def _init_args(config: ModelConfig) -> tuple:
    """The smallest images and K row-major routes (shapes only): what ``init`` traces."""
    if isinstance(config, VimConfig):
        images = np.zeros((1, *config.img_size, config.in_chans), np.float32)
        return images, default_routes(config)
    size = config.reduction
    images = np.zeros((1, size, size, config.in_chans), np.float32)
    init_order = as_order(functools.partial(_row_major_routes, config.k_routes))  # any K
    return images, routes_for(config, init_order)


def _row_major_routes(k: int, h: int, w: int) -> np.ndarray:
    """K copies of the row-major route: shapes only, used to initialise a model of any K."""
    return np.tile(np.arange(h * w), (k, 1))


def model_order(config: ModelConfig, order=None):
    """``order`` resolved (:func:`~jaxmamba.orders.as_order`), ``None`` as the family's own:
    VMamba's cross-scan, Vim's raster path (row-major patches, scanned both ways).

    >>> from jaxmamba.models.config import get_config
    >>> model_order(get_config("vim_test")).name, model_order(get_config("vmamba_test")).name
    ('raster', 'cross')
    """
    if order is None and isinstance(config, VimConfig):
        order = "raster"
    return as_order(order)


def routes_for(config: VMambaConfig, order: Order | SoftOrder) -> Callable:
    """``(h, w) -> routes`` of ``order`` on a grid, checked against the model's route count K."""

    def routes(h: int, w: int):
        r = order.routes(h, w)
        if r.shape[0] != config.k_routes:
            raise OrderError(
                f"order {order.name!r} has K={r.shape[0]} routes on a {h}x{w} grid, but the "
                f"model has {config.k_routes} per-route parameter sets"
            )
        return r

    return routes


def check_images(config: ModelConfig, images, *, allow_empty: bool = False) -> None:
    """Raise :class:`InputError` unless ``images`` is ``(B, H, W, in_chans)`` with H, W ÷ stride
    (VMamba) or ``(H, W)`` the config's ``img_size`` (Vim), and B ≥ 1 (B = 0 only with
    ``allow_empty``, for a stream that may hold empty batches).

    >>> import numpy as np
    >>> from jaxmamba.models.config import get_config
    >>> check_images(get_config("vmamba_test"), np.zeros((0, 64, 64, 3), np.float32))
    Traceback (most recent call last):
    ...
    jaxmamba.errors.InputError: images (0, 64, 64, 3) are an empty batch: give at least one image
    """
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4:
        raise InputError(f"images must be a (B, H, W, {config.in_chans}) array, got shape {shape}")
    b, h, w, c = shape
    if c != config.in_chans:
        raise InputError(
            f"images must be channel-last (B, H, W, {config.in_chans}); got {c} channels in {shape}"
        )
    if isinstance(config, VimConfig):
        if (h, w) != config.img_size:
            size = "x".join(map(str, config.img_size))
            raise InputError(
                f"{config.name} takes {size} images only (its position embedding has one entry "
                f"per patch), got {h}x{w}; convert the checkpoint for another size with "
                "img_size=... and interpolate_pos_embed=True"
            )
    else:
        r = config.reduction
        if h < r or w < r or h % r or w % r:
            raise InputError(
                f"image height and width must be positive multiples of {r}, got {h}x{w}"
            )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise InputError(f"images must be floating point, got dtype {images.dtype}")
    if b == 0 and not allow_empty:
        raise InputError(f"images {tuple(shape)} are an empty batch: give at least one image")


def select_blocks(config: ModelConfig, blocks=None) -> tuple[str, ...]:
    """Official names of the selected SS2D blocks (VMamba) or layers (Vim), in forward order.

    Args:
      blocks: ``None`` (all), a stage index, a name ``"layers.i.blocks.j"``, an iterable of names
        or stage indices, or a predicate ``name -> bool``. For Vim, names are ``"layers.i"`` and
        an integer is a layer index.

    >>> from jaxmamba.models.config import get_config
    >>> select_blocks(get_config("vmamba_test"), 2)
    ('layers.2.blocks.0', 'layers.2.blocks.1')
    >>> select_blocks(get_config("vim_tiny"), [0, "layers.23"])
    ('layers.0', 'layers.23')
    """
    names = config.block_names()
    if blocks is None:
        return names
    if callable(blocks):
        chosen = {n for n in names if blocks(n)}
    else:
        chosen = set()
        for item in _block_items(blocks):
            if isinstance(item, numbers.Integral) and isinstance(config, VimConfig):
                item = int(item)
                if not 0 <= item < config.depth:
                    raise InputError(f"layer {item} out of range 0..{config.depth - 1}")
                chosen.add(f"layers.{item}")
            elif isinstance(item, numbers.Integral):
                item = int(item)  # a NumPy integer too
                if not 0 <= item < config.num_stages:
                    raise InputError(f"stage {item} out of range 0..{config.num_stages - 1}")
                chosen |= {n for n in names if n.startswith(f"layers.{item}.")}
            elif item in names:
                chosen.add(item)
            else:
                raise InputError(f"unknown block {item!r}; blocks are {names[0]} … {names[-1]}")
    if not chosen:
        raise InputError("the block selection is empty")
    return tuple(n for n in names if n in chosen)


_WHAT_BLOCKS = "blocks must be None, a stage index, block names, stage indices or a predicate"
_MAX_BLOCK_ITEMS = 10_000  # more items than any model has blocks, however often repeated


def _block_items(blocks) -> list:
    """The stage indices (ints) and names (strs) of a block selection that is not a predicate;
    :class:`InputError` names any other type (bytes, bool, float, None ...)."""
    if _is_item(blocks):
        return [blocks]
    if isinstance(blocks, bytes | bytearray | memoryview | numbers.Number):
        raise InputError(f"{_WHAT_BLOCKS}; got {_described(blocks)}")
    try:
        items = list(itertools.islice(iter(blocks), _MAX_BLOCK_ITEMS + 1))
    except TypeError:
        raise InputError(f"{_WHAT_BLOCKS}; got {_described(blocks)}") from None
    if len(items) > _MAX_BLOCK_ITEMS:
        raise InputError(f"{_WHAT_BLOCKS}; got more than {_MAX_BLOCK_ITEMS} items")
    for i, item in enumerate(items):
        if not _is_item(item):
            raise InputError(
                f"blocks[{i}] must be a stage index (int) or a block name (str), got "
                f"{_described(item)}"
            )
    return items


def _is_item(item) -> bool:
    """Whether ``item`` is a stage index (an int, not a bool) or a block name (a str)."""
    if isinstance(item, bool | np.bool_):
        return False
    return isinstance(item, numbers.Integral | str)


def _described(value) -> str:
    """``value`` for a message: its type and a repr cut to 60 characters."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return "None" if value is None else f"{type(value).__name__} {text}"


def forward(
    model: Model, images: Float[Array, "b H W 3"], *, order=None, implementation: str | None = None
) -> Float[Array, "b classes"]:
    """Class logits of ``images`` scanned in ``order``.

    Args:
      model: a :class:`Model`.
      images: ``(B, H, W, 3)`` float, channel-last, H and W multiples of 32 (any aspect ratio);
        for Vim, exactly the config's ``img_size``.
      order: a name from :data:`jaxmamba.orders.ORDER_NAMES`, an :class:`~jaxmamba.orders.Order`,
        or routes (see :func:`jaxmamba.orders.as_order`); default ``"cross"`` (VMamba's); or soft
        routes ``{(h, w): (K, L, L)}`` for every stage grid (:mod:`jaxmamba.orders.soft`), which
        are traced, so gradients flow to them. For Vim: default the official row-major path; a
        hard order's path is scanned forward and backward with the CLS token kept in the middle
        (:func:`jaxmamba.models.vim.vim_routes`); a soft one is that path as one soft matrix of
        the model's grid, ``{(gh, gw): (1, M, M)}`` (:func:`jaxmamba.models.vim.soft_vim_routes`),
        traced as well.
      implementation: selective-scan path, ``"xla"``, ``"pallas"`` or ``None`` (best available).

    Returns:
      ``(B, num_classes)`` float32 logits.

    >>> import jax.numpy as jnp
    >>> m = create_model("vmamba_test")
    >>> forward(m, jnp.zeros((2, 64, 96, 3))).shape
    (2, 10)
    """
    check_images(model.config, images)
    pieces = cpu_pieces(model.config, images.shape)
    logits, _ = apply(
        model, images, _order(model.config, order), implementation, frozenset(), pieces
    )
    return logits


def run_with_cache(
    model: Model,
    images: Float[Array, "b H W 3"],
    *,
    order=None,
    blocks=None,
    implementation: str | None = None,
) -> tuple[Float[Array, "b classes"], ScanCache]:
    """Logits and, for each selected block, its SS2D scan input and cross-merged scan output.

    Args:
      model, images, order, implementation: as in :func:`forward`.
      blocks: as in :func:`select_blocks` (default: every block).

    Returns:
      ``(logits, cache)``: ``cache`` is a :class:`~jaxmamba.models.cache.ScanCache`,
      ``cache[name]`` a :class:`~jaxmamba.models.cache.BlockScan` whose ``x`` ``(B, D, L)`` is the
      feature map after in_proj, depthwise conv and SiLU and ``y`` ``(B, D, L)`` the cross-merged
      scan output (the input of ``out_norm``), both in row-major spatial order; a Vim layer's
      is a :class:`~jaxmamba.models.cache.LayerScan` (per direction, in token order; under a
      soft order also ``u``, each direction's scan input in its own scan order).

    >>> import jax.numpy as jnp
    >>> m = create_model("vmamba_test")
    >>> _, cache = run_with_cache(m, jnp.zeros((1, 64, 64, 3)), blocks=0)
    >>> cache.scan_input("layers.0.blocks.0").shape
    (1, 32, 256)
    >>> cache
    ScanCache(1 block, x and y (B, D, L): layers.0.blocks.0 (1, 32, 256))
    """
    check_images(model.config, images)
    names = frozenset(select_blocks(model.config, blocks))
    pieces = cpu_pieces(model.config, images.shape)
    return apply(model, images, _order(model.config, order), implementation, names, pieces)


def _order(config: ModelConfig, order) -> Order | SoftOrder | None:
    """``order`` resolved for ``config``'s family: an :class:`Order` / :class:`SoftOrder` for
    VMamba; for Vim ``None`` (the official row-major path), a hard :class:`Order` whose path
    both directions scan, or a :class:`SoftOrder` holding one soft path ``(1, M, M)`` of the
    model's grid (:func:`~jaxmamba.models.vim.vim_routes`, checked here)."""
    if not isinstance(config, VimConfig):
        return as_order(order)
    if order is None:
        return None
    resolved = as_order(order)
    if not isinstance(resolved, Order | SoftOrder):
        raise OrderError(
            f"{config.name} (Vim) scans along an Order or a SoftOrder, got "
            f"{type(resolved).__name__}"
        )
    vim_routes(config, resolved)  # the error names an order that is no single path
    return resolved


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def apply(
    model: Model,
    images,
    order: Order | SoftOrder | None,
    implementation: str | None,
    capture: frozenset,
    pieces: tuple[int, ...] = (),
) -> tuple[Float[Array, "b classes"], ScanCache]:
    """The jitted forward with resolved arguments: ``(logits, cache)`` as :func:`run_with_cache`.

    ``order`` must already be an :class:`Order` or :class:`SoftOrder` (:func:`as_order`) for
    VMamba, and ``None``, an :class:`Order` or a :class:`SoftOrder` for Vim; a hard order is
    static (a pytree without leaves), soft routes are traced. ``capture`` is the frozenset of
    block names whose scan input and output are returned. ``pieces`` is the number of slices of
    the batch each stage runs as (:func:`cpu_pieces` gives the default plan for the device;
    ``()`` runs every stage whole; a Vim model runs whole). For library code that calls the
    model inside its own ``jit``; users call :func:`forward` or :func:`run_with_cache`.
    """
    config = model.config
    if isinstance(config, VimConfig):
        return _apply_vim(model, images, order, implementation, capture)
    module = VSSM(config, implementation)
    if order is None:
        raise OrderError("a VMamba model needs an order (jaxmamba.orders.as_order(None))")
    routes = routes_for(config, order)
    images = images.astype(jnp.float32)
    variables = {"params": model.params}
    if not capture:
        return cast(Array, module.apply(variables, images, routes, capture, pieces)), ScanCache()
    logits, state = module.apply(
        variables, images, routes, capture, pieces, mutable=["intermediates"]
    )
    found: dict[str, dict[str, Array]] = {}
    for path, value in P.flatten(state["intermediates"]).items():
        name = P.path_to_key(path[:-2])  # (..., "op", "x") -> layers.i.blocks.j
        sown = cast(tuple[Array, ...], value)  # one per slice of the batch
        found.setdefault(name, {})[path[-1]] = jnp.concatenate(sown)
    names = [n for n in model.config.block_names() if n in found]  # forward order
    return logits, ScanCache({n: BlockScan(found[n]["x"], found[n]["y"]) for n in names})


def _apply_vim(
    model: Model,
    images,
    order: Order | SoftOrder | None,
    implementation: str | None,
    capture: frozenset,
) -> tuple[Float[Array, "b classes"], ScanCache]:
    """:func:`apply` of a Vim model (traced inside its ``jit``)."""
    config = cast(VimConfig, model.config)
    module = Vim(config, implementation)
    routes = vim_routes(config, order)
    images = images.astype(jnp.float32)
    variables = {"params": model.params}
    if not capture:
        return cast(Array, module.apply(variables, images, routes, capture)), ScanCache()
    logits, state = module.apply(variables, images, routes, capture, mutable=["intermediates"])
    found: dict[str, dict[str, Array]] = {}
    for path, value in P.flatten(state["intermediates"]).items():
        name = P.path_to_key(path[:-2])  # ("layers_3", "mixer", "u") -> layers.3
        found.setdefault(name, {})[path[-1]] = cast(tuple[Array, ...], value)[0]
    names = [n for n in config.block_names() if n in found]
    scans = {
        n: LayerScan(found[n]["u"], found[n]["y"], found[n]["z"], found[n].get("u_scan"))
        for n in names
    }
    return logits, ScanCache(scans)


# A stage whose widest activation of one image (the MLP's hidden layer or the K routed copies)
# takes at least this many bytes runs as slices of the batch on XLA:CPU: whole-batch tensors
# leave the L2 cache, and the sliced batch runs faster per image (see
# benchmarks/results/forward_cpu.txt, the "--whole" rows). At most _MAX_PIECES slices: each is
# another copy of the stage for XLA to compile, so above 8 images a slice holds several.
# Training steps are cut alike (the gradient of a sum of slices is exact).
_SPLIT_BYTES = 2 * 2**20
_MAX_PIECES = 8


def cpu_pieces(config: ModelConfig, shape: tuple[int, ...]) -> tuple[int, ...]:
    """How many slices of the batch each stage runs as, for images of ``shape`` ``(B, H, W, C)``.

    All ones except on a single CPU device, where a stage whose per-image activations reach
    2 MB is cut into ``min(B, 8)`` slices: separate subgraphs with the same parameters, equal
    results up to float rounding. With several devices the batch is sharded over them, and
    slices would cut across devices.

    >>> from jaxmamba.models.config import get_config
    >>> cpu_pieces(get_config("vmamba_tiny_s1l8"), (1, 224, 224, 3))  # one image: never cut
    (1, 1, 1, 1)
    >>> cpu_pieces(get_config("vmamba_tiny_s1l8"), (8, 224, 224, 3))  # doctest: +SKIP
    (8, 8, 1, 1)
    """
    if isinstance(config, VimConfig):
        return ()  # a Vim model runs whole
    b, h, w = shape[:3]
    if b == 1 or jax.default_backend() != "cpu" or jax.device_count() > 1:
        return (1,) * config.num_stages
    pieces = []
    for i in range(config.num_stages):
        gh, gw = config.stage_grid(i, h, w)
        width = max(int(config.dims[i] * config.mlp_ratio), config.k_routes * config.d_inner(i))
        large = gh * gw * width * 4 >= _SPLIT_BYTES
        pieces.append(min(b, _MAX_PIECES) if large else 1)
    return tuple(pieces)
