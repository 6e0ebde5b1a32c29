"""Flax Vision Mamba (Vim) classifier, parameterised by a :class:`VimConfig`.

Submodule names follow the official state dict (hustvl/Vim ``vim/models_mamba.py``) with numeric
path segments joined by ``_``: ``layers.0.mixer.A_b_log`` ↔
``params["layers_0"]["mixer"]["A_b_log"]``, ``patch_embed.proj.weight`` ↔
``params["patch_embed"]["proj"]["weight"]``. Images are channel-last ``(B, H, W, C)``.

The forward pass (eval mode):

1. patch embedding, a ``p x p`` conv of stride ``s`` → M row-major patch tokens;
2. the CLS token inserted at ``M // 2``, then ``pos_embed`` (L = M + 1 entries) added;
3. the fused add-norm residual stream: ``h = tokens``, ``r = None``; per layer
   ``r = h if r is None else r + h``, ``h = mixer(RMSNorm(r))``; at the end
   ``out = RMSNorm_f(r + h)``;
4. the head on the CLS token of ``out``.

The mixer (:class:`BiMamba`, Mamba's ``bimamba_type="v2"``): ``x, z = in_proj(x)``; each of the
K = 2 directions reads the tokens along its route (forward: token order; backward: reversed, CLS
token and gate included), applies its own causal depthwise conv + SiLU, x/dt projections, A and
D, and runs the selective scan; the gated outputs, put back in token order, are averaged and
projected by ``out_proj``. Both directions run as one grouped selective scan over K·D channels
(B and C grouped per direction), the layout of :func:`jaxmamba.models.ss2d.scan_inputs`.

Another patch order changes the routes only (:func:`vim_routes`): a hard order's path is scanned
forward and backward with the CLS token kept at scan position ``M // 2``; a soft one
(``{grid: (1, M, M)}``, Sinkhorn routes of :mod:`jaxmamba.orders.soft`) gives soft ``(2, L, L)``
routes, each direction reading weighted sums of the tokens (the gate then applies in token order,
as for a hard order).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxmamba.kernels import selective_scan
from jaxmamba.models.init_rules import ALog, Constant, DtBias, Rule, TruncNormal, Uniform, declare
from jaxmamba.models.layers import HIGHEST
from jaxmamba.models.ss2d import ScanInputs, cross_merge, cross_scan, inverse_of, is_hard
from jaxmamba.models.ss2d import scan_inputs as _grouped_scan_inputs
from jaxmamba.models.vim_config import VimConfig, patch_token_index
from jaxmamba.orders import Order, OrderError, SoftOrder

__all__ = [
    "Vim",
    "BiMamba",
    "RMSNorm",
    "default_routes",
    "vim_routes",
    "class_last_routes",
    "class_token_at",
    "scan_params",
    "soft_vim_routes",
    "scan_inputs",
    "to_scan_order",
    "to_token_order",
    "LECUN_GAIN",
    "MERGE_WEIGHT",
]

#: timm's ``lecun_normal_`` draws N(0, 1/fan_in) / 0.8796 (the std of a normal truncated to ±2σ),
#: truncated at ±2 in absolute value: in effect not truncated for any real fan-in.
LECUN_GAIN = 0.87962566103423978

# Parameter names of each direction: (x_proj, dt_proj, A_log, D, conv1d).
_DIRECTIONS = (
    ("x_proj", "dt_proj", "A_log", "D", "conv1d"),
    ("x_proj_b", "dt_proj_b", "A_b_log", "D_b", "conv1d_b"),
)


#: The weight of each direction in a layer's merge: every released variant averages the two
#: gated scan outputs (``if_divide_out=True``).
MERGE_WEIGHT = 0.5


def default_routes(config: VimConfig) -> np.ndarray:
    """The two scan routes of every layer, ``(2, L)``: token order and its reverse.

    Route k maps scan position t to the token read there (CLS token included).

    >>> default_routes(VimConfig(img_size=(32, 32))).tolist()
    [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]
    """
    forward = np.arange(config.seq_len)
    return np.stack([forward, forward[::-1]])


def vim_routes(config: VimConfig, order: Order | SoftOrder | None = None):
    """The token routes of both directions when the patches are scanned in ``order``.

    The forward direction reads the patches along the order's path (its route 0; for the named
    K = 4 orders the base path, whose reverse is their route 2) with the CLS token inserted at
    scan position ``M // 2``, the backward direction reads the same tokens in reverse, as the
    official model does with its row-major path. ``None`` (and ``"raster"``) give
    :func:`default_routes`.

    A :class:`~jaxmamba.orders.SoftOrder` gives the path as one soft ``(1, M, M)`` matrix on the
    model's grid (``{config.grid: (1, M, M)}``, row t = patch scan position): the routes are
    then soft ``(2, L, L)`` matrices (:func:`soft_vim_routes`), traced, so gradients flow to them.

    Returns:
      ``(2, L)`` integer routes (a hard order), or soft ``(2, L, L)`` (a soft one).

    >>> from jaxmamba.orders import as_order
    >>> vim_routes(VimConfig(img_size=(32, 32)), as_order("spiral")).tolist()  # 2x2 patches
    [[0, 1, 2, 4, 3], [3, 4, 2, 1, 0]]
    """
    if order is None:
        return default_routes(config)
    if isinstance(order, SoftOrder):
        return soft_vim_routes(config, order)
    if not isinstance(order, Order):
        raise OrderError(
            f"a Vim model scans along an Order or a SoftOrder, got {type(order).__name__}"
        )
    return class_token_at(config)[class_last_routes(order, config.grid)]


def class_token_at(config: VimConfig) -> np.ndarray:
    """``(L,)`` the token index of each position of the class-last layout (row-major patches,
    then the class token): :func:`~jaxmamba.models.vim_config.patch_token_index`, then
    ``M // 2``.  ``maps[..., t][..., t, :]`` with ``t`` this puts a token-order map class-last.

    >>> class_token_at(VimConfig(img_size=(48, 80))).tolist()  # 3x5 patches, CLS at token 7
    [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 7]
    """
    return np.append(patch_token_index(config), config.cls_position)


def class_last_routes(order: Order, grid: tuple[int, int]) -> np.ndarray:
    """The routes ``(2, M + 1)`` of both directions in the class-last layout (patch p is
    position p, the class token position M): the order's patch path with the class token at
    scan position ``M // 2``, forward and reversed.  :func:`vim_routes` is these in token order.

    >>> from jaxmamba.orders import as_order
    >>> class_last_routes(as_order("spiral"), (2, 2)).tolist()
    [[0, 1, 4, 3, 2], [2, 3, 4, 1, 0]]
    """
    routes = order.routes(*grid)
    path = routes[0]
    k = len(routes)
    reversed_at = {1: None, 2: 1, 4: 2}.get(k, -1)
    if reversed_at == -1 or (reversed_at and not np.array_equal(routes[reversed_at], path[::-1])):
        raise OrderError(
            f"a Vim model scans one patch path forward and backward; order {order.name!r} has "
            f"K={k} routes on the {grid[0]}x{grid[1]} grid that are not one path "
            "(K=1), a path and its reverse (K=2), or a cross-scan family (K=4, route 2 = route 0 "
            "reversed)"
        )
    m = grid[0] * grid[1]
    forward = np.concatenate([path[: m // 2], [m], path[m // 2 :]])
    return np.stack([forward, forward[::-1]])


def soft_vim_routes(config: VimConfig, order: SoftOrder) -> Float[Array, "2 l l"]:
    """Soft token routes ``(2, L, L)`` of a soft patch path ``(1, M, M)``.

    ``P = order.routes(*config.grid)[0]`` (``P[t, p]``: weight of patch p at patch scan position
    t) is embedded in ``(L, L)`` as :func:`vim_routes` embeds a hard path: patch scan positions
    ``t ≥ M // 2`` move one on, patches ``p ≥ M // 2`` become tokens ``p + 1``, and the CLS
    token sits at scan position ``M // 2`` (a 1 there, zeros in its row and column elsewhere).
    The backward route is the forward one with its rows reversed (it reads the forward scan
    sequence backwards). A permutation ``P`` gives the permutation matrices of the hard routes.

    Raises:
      OrderError: the soft order has no routes of the model's grid, or not one path ``(1, M,
        M)`` (a Vim model scans one path, forward and backward).

    >>> import jax.numpy as jnp
    >>> from jaxmamba.orders import as_order
    >>> c = VimConfig(img_size=(32, 32))  # 2x2 patches, the CLS token at 2
    >>> spiral = as_order({(2, 2): jnp.eye(4)[jnp.array([[0, 1, 3, 2]])]})
    >>> r = soft_vim_routes(c, spiral)
    >>> r.argmax(-1).tolist() == vim_routes(c, as_order("spiral")).tolist()
    True
    """
    m, l, c = config.num_patches, config.seq_len, config.cls_position
    path = order.routes(*config.grid)
    if tuple(path.shape) != (1, m, m):
        gh, gw = config.grid
        raise OrderError(
            f"soft orders for {config.name} (Vim) give its one patch path as (1, M, M) = "
            f"(1, {m}, {m}) routes on the {gh}x{gw} grid (the backward direction reads that "
            f"path reversed, as for a hard order's path), got {tuple(path.shape)}"
        )
    at = np.concatenate([np.arange(c), np.arange(c + 1, l)])  # patch position/index -> token
    forward = jnp.zeros((l, l), path.dtype).at[np.ix_(at, at)].set(path[0]).at[c, c].set(1)
    return jnp.stack([forward, forward[::-1]])


def to_scan_order(
    x: Float[Array, "b k d l"], routes: Int[np.ndarray, "k l"] | Float[Array, "k l l"]
) -> Float[Array, "b k d l"]:
    """Each direction's tokens read along its own route: ``out[:, k, :, t] = x[:, k, :, routes[k,
    t]]`` (the per-direction :func:`~jaxmamba.models.ss2d.cross_scan`); soft routes ``(K, L, L)``
    give ``out[:, k, :, t] = Σ_s routes[k, t, s] x[:, k, :, s]``.

    >>> import jax.numpy as jnp
    >>> x = jnp.arange(6.0).reshape(1, 2, 1, 3)
    >>> to_scan_order(x, np.array([[0, 1, 2], [2, 1, 0]]))[0, :, 0].tolist()
    [[0.0, 1.0, 2.0], [5.0, 4.0, 3.0]]
    """
    if not is_hard(routes):
        return jnp.einsum("kts,bkds->bkdt", routes, x, precision=HIGHEST)
    idx = jnp.asarray(routes)
    return jnp.stack([jnp.take(x[:, k], idx[k], axis=-1) for k in range(len(routes))], axis=1)


def to_token_order(
    y: Float[Array, "b k d l"], routes: Int[np.ndarray, "k l"] | Float[Array, "k l l"]
) -> Float[Array, "b k d l"]:
    """Inverse of :func:`to_scan_order`: each direction's scan outputs put back in token order.

    Soft routes ``(K, L, L)`` give the transpose, ``out[:, k, :, s] = Σ_t routes[k, t, s]
    y[:, k, :, t]`` (the per-direction :func:`~jaxmamba.models.ss2d.cross_merge`), which is no
    inverse: ``R Rᵀ ≠ I`` for a soft ``R``.

    >>> import jax.numpy as jnp
    >>> routes = np.array([[0, 1, 2], [2, 1, 0]])
    >>> x = jnp.arange(6.0).reshape(1, 2, 1, 3)
    >>> bool((to_token_order(to_scan_order(x, routes), routes) == x).all())
    True
    """
    if not is_hard(routes):
        return jnp.einsum("kts,bkdt->bkds", routes, y, precision=HIGHEST)
    inverse = jnp.asarray(inverse_of(np.asarray(routes)))
    return jnp.stack([jnp.take(y[:, k], inverse[k], axis=-1) for k in range(len(routes))], axis=1)


def scan_params(mixer) -> dict:
    """A Vim mixer's per-direction scan parameters stacked in the layout of an SS2D block's
    (:func:`jaxmamba.models.ss2d.scan_inputs`, K = 2, forward first): ``x_proj_weight``
    ``(2, R+2N, D)``, ``dt_projs_weight`` ``(2, D, R)``, ``dt_projs_bias`` ``(2, D)``,
    ``A_logs`` ``(2·D, N)``, ``Ds`` ``(2·D,)``.

    >>> import jaxmamba
    >>> op = scan_params(jaxmamba.create_model("vim_test").params["layers_0"]["mixer"])
    >>> op["x_proj_weight"].shape, op["A_logs"].shape
    ((2, 34, 64), (128, 16))
    """
    return dict(
        x_proj_weight=jnp.stack([mixer[xp]["weight"] for xp, *_ in _DIRECTIONS]),
        dt_projs_weight=jnp.stack([mixer[dt]["weight"] for _, dt, *_ in _DIRECTIONS]),
        dt_projs_bias=jnp.stack([mixer[dt]["bias"] for _, dt, *_ in _DIRECTIONS]),
        A_logs=jnp.concatenate([mixer[a] for _, _, a, _, _ in _DIRECTIONS]),
        Ds=jnp.concatenate([mixer[d] for _, _, _, d, _ in _DIRECTIONS]),
    )


def scan_inputs(mixer, us: Float[Array, "b k d l"]) -> ScanInputs:
    """The selective-scan arguments of both directions of one Vim layer.

    Args:
      mixer: the layer's mixer parameters (``params["layers_i"]["mixer"]``).
      us: ``(B, 2, D, L)`` each direction's scan input (its causal conv + SiLU output) in its
        own scan order (:func:`to_scan_order` of the cached token-order input).

    Returns:
      :class:`~jaxmamba.models.ss2d.ScanInputs` with K = 2: ``u``, ``delta`` (Δ before its bias
      and softplus) ``(B, 2·D, L)``, forward channels first; ``A`` = ``-exp(A_log)`` stacked
      over ``-exp(A_b_log)``, ``(2·D, N)``; ``B``, ``C`` ``(B, 2, N, L)``; ``D``, ``delta_bias``
      ``(2·D,)``. ``selective_scan(*inputs, delta_softplus=True)`` runs both directions.

    >>> import jax.numpy as jnp, jaxmamba
    >>> mixer = jaxmamba.create_model("vim_test").params["layers_0"]["mixer"]
    >>> s = scan_inputs(mixer, jnp.ones((1, 2, 64, 17)))
    >>> s.u.shape, s.A.shape, s.B.shape, s.final_delta().shape
    ((1, 128, 17), (128, 16), (1, 2, 16, 17), (1, 2, 64, 17))
    """
    return _grouped_scan_inputs(scan_params(mixer), us)


class Params(nn.Module):
    """A parameter-only submodule: declares ``specs`` (name, rule, shape) and returns them.

    Gives the official nested names (``x_proj.weight``) to parameters used by hand.
    """

    specs: tuple[tuple[str, Rule, tuple[int, ...]], ...]

    @nn.compact
    def __call__(self) -> dict[str, Array]:
        return {name: declare(self, name, rule, shape) for name, rule, shape in self.specs}


def _linear(x, w):
    """``x Wᵀ`` over the last axis, ``w`` (out, in) as ``torch.nn.Linear``'s weight."""
    return jnp.einsum("...i,oi->...o", x, w, precision=HIGHEST)


def causal_conv1d(x: Float[Array, "b d l"], weight, bias) -> Float[Array, "b d l"]:
    """Depthwise causal conv along L: ``out[t] = bias + Σ_j weight[:, 0, j] x[t - k + 1 + j]``.

    ``weight`` ``(D, 1, k)`` as ``torch.nn.Conv1d`` (groups = D, padding k - 1, the last k - 1
    outputs dropped), zeros before the sequence.

    >>> import jax.numpy as jnp
    >>> w = jnp.array([[[1.0, 10.0, 100.0]]])  # out[t] = x[t-2] + 10 x[t-1] + 100 x[t]
    >>> causal_conv1d(jnp.array([[[1.0, 2.0, 3.0]]]), w, jnp.zeros(1)).tolist()
    [[[100.0, 210.0, 321.0]]]
    """
    k, l = weight.shape[-1], x.shape[-1]
    xp = jnp.pad(x, ((0, 0), (0, 0), (k - 1, 0)))
    out = bias[:, None] + xp[..., 0:l] * weight[:, 0, 0, None]
    for j in range(1, k):
        out = out + xp[..., j : j + l] * weight[:, 0, j, None]
    return out


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x²) + eps) · weight`` over the last axis (no mean, no bias)."""

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        w = declare(self, "weight", Constant(1.0), (x.shape[-1],))
        return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps) * w


class BiMamba(nn.Module):
    """Mamba's bidirectional ``v2`` mixer on ``(B, L, E)`` tokens, routes ``(2, L)`` (or soft
    ``(2, L, L)``) as data.

    With ``capture`` it sows into ``"intermediates"``: ``u`` ``(B, 2, D, L)`` each direction's
    scan input and ``y`` ``(B, 2, D, L)`` its scan output (``D·u`` included, before the gate),
    both put back in token order (:func:`to_token_order`), and ``z`` ``(B, D, L)`` the gate
    before its SiLU, in token order; under soft routes ``(2, L, L)`` also ``u_scan`` ``(B, 2, D,
    L)``, each direction's scan input in its own scan order (the causal conv runs after the
    routing, so a soft route's token-order ``u`` does not determine it).
    """

    config: VimConfig
    implementation: str | None = None

    @nn.compact
    def __call__(self, x, routes, capture: bool = False):
        c = self.config
        e, d, n, r, k = c.embed_dim, c.d_inner(), c.d_state, c.dt_rank, c.d_conv
        b, l, _ = x.shape
        in_w = Params((("weight", Uniform.torch(e), (2 * d, e)),), name="in_proj")()["weight"]
        xz = jnp.moveaxis(_linear(x, in_w), 1, 2)  # (b, 2d, l), token order
        xs, z = cross_scan(xz[:, :d], routes), xz[:, d:]  # (b, 2, d, l) in scan order
        mixer: dict = {}
        us = []
        for i, (xp, dt, a_log, skip, conv) in enumerate(_DIRECTIONS):
            conv_p = Params(
                (("weight", Uniform.torch(k), (d, 1, k)), ("bias", Uniform.torch(k), (d,))),
                name=conv,
            )()
            us.append(jax.nn.silu(causal_conv1d(xs[:, i], conv_p["weight"], conv_p["bias"])))
            mixer[xp] = Params((("weight", Uniform.torch(d), (r + 2 * n, d)),), name=xp)()
            # The forward Δ-bias is Mamba's special init; the backward one is a plain Linear
            # bias, zeroed by Vim's _init_weights (only dt_proj.bias is marked _no_reinit).
            bias_rule: Rule = DtBias() if i == 0 else Constant(0.0)
            mixer[dt] = Params(
                (("weight", Uniform(r**-0.5), (d, r)), ("bias", bias_rule, (d,))), name=dt
            )()
            mixer[a_log] = declare(self, a_log, ALog(), (d, n))
            mixer[skip] = declare(self, skip, Constant(1.0), (d,))
        u = jnp.stack(us, axis=1)  # (b, 2, d, l) scan order
        s = scan_inputs(mixer, u)
        y = selective_scan(*s, delta_softplus=True, implementation=self.implementation)
        y = y.reshape(b, 2, d, l)
        if capture:
            self.sow("intermediates", "u", to_token_order(u, routes))
            self.sow("intermediates", "y", to_token_order(y, routes))
            self.sow("intermediates", "z", z)
            if not is_hard(routes):  # token-order u cannot give the scan inputs back
                self.sow("intermediates", "u_scan", u)
        merged = MERGE_WEIGHT * jax.nn.silu(z) * cross_merge(y, routes)  # (b, d, l) token order
        # Vim's _init_weights: PyTorch's default Linear init scaled by 1/sqrt(depth).
        out_rule = Uniform(1.0 / math.sqrt(d) / math.sqrt(c.depth))
        out_w = Params((("weight", out_rule, (e, d)),), name="out_proj")()["weight"]
        return _linear(jnp.moveaxis(merged, 1, 2), out_w)


class VimLayer(nn.Module):
    """``layers.{i}``: the fused add-norm step ``r = r + h`` (``r = h`` first), then
    ``h = mixer(norm(r))``. Returns ``(h, r)``."""

    config: VimConfig
    implementation: str | None = None

    @nn.compact
    def __call__(self, h, r, routes, capture: bool = False):
        r = h if r is None else r + h
        normed = RMSNorm(self.config.eps, name="norm")(r)
        return BiMamba(self.config, self.implementation, name="mixer")(normed, routes, capture), r


class PatchEmbed(nn.Module):
    """``patch_embed.proj``: a ``p x p`` conv of stride ``s`` with bias, ``(B, H, W, C)`` →
    ``(B, gh, gw, E)``; initialised as Vim does (``lecun_normal_`` weight, zero bias)."""

    config: VimConfig

    @nn.compact
    def __call__(self, images):
        c = self.config
        e, p = c.embed_dim, c.patch_size
        std = 1 / math.sqrt(c.in_chans * p * p) / LECUN_GAIN
        proj = Params(
            (("weight", TruncNormal(std), (e, c.in_chans, p, p)), ("bias", Constant(0.0), (e,))),
            name="proj",
        )()
        x = jax.lax.conv_general_dilated(
            images.astype(jnp.float32), proj["weight"], window_strides=(c.stride, c.stride),
            padding="VALID", dimension_numbers=("NHWC", "OIHW", "NHWC"), precision=HIGHEST,
        )  # fmt: skip
        return x + proj["bias"]


class Vim(nn.Module):
    """Vision Mamba classifier: ``__call__(images (B, H, W, C), routes, capture)`` → logits.

    ``routes`` ``(2, L)`` are the token routes of the two scan directions
    (:func:`default_routes`: token order and its reverse), or soft ``(2, L, L)`` ones
    (:func:`soft_vim_routes`); ``capture`` is a set of layer names
    ``layers.{i}`` whose mixer sows its scan inputs and outputs (:class:`BiMamba`).
    """

    config: VimConfig
    implementation: str | None = None

    @nn.compact
    def __call__(self, images, routes, capture: frozenset = frozenset()):
        c = self.config
        e, m = c.embed_dim, c.num_patches
        x = PatchEmbed(c, name="patch_embed")(images)  # (b, gh, gw, e)
        b = x.shape[0]
        x = x.reshape(b, m, e)  # row-major patches
        cls = declare(self, "cls_token", TruncNormal(0.02), (1, 1, e))
        pos = declare(self, "pos_embed", TruncNormal(0.02), (1, c.seq_len, e))
        t = c.cls_position
        x = jnp.concatenate([x[:, :t], jnp.broadcast_to(cls, (b, 1, e)), x[:, t:]], axis=1) + pos
        h, r = x, None
        for i in range(c.depth):
            layer = VimLayer(c, self.implementation, name=f"layers_{i}")
            h, r = layer(h, r, routes, f"layers.{i}" in capture)
        out = RMSNorm(c.eps, name="norm_f")(h if r is None else r + h)
        classes = c.num_classes
        head = Params(
            (("weight", TruncNormal(0.02), (classes, e)), ("bias", Constant(0.0), (classes,))),
            name="head",
        )()
        return _linear(out[:, t], head["weight"]) + head["bias"]
