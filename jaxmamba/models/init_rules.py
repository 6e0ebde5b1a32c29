"""The official initialisation rules, drawn on the host from the parameter shapes.

Each layer declares its parameters with :func:`declare` and a :class:`Rule` (timm's truncated
normal, PyTorch's default uniform, Mamba's Δ-bias and ``A`` rules, constants). A rule has two
forms: ``rule(key, shape, dtype)``, a JAX initialiser as Flax expects, and ``rule.draw(rng,
shape)``, the same distribution drawn with NumPy. :func:`draw_params` takes the shapes from
``jax.eval_shape`` of a module's ``init`` (tracing only, nothing compiled), records which rule
each parameter declared, and draws every parameter with NumPy from a generator seeded by
``(seed, the parameter's path)``: much faster than compiling Flax's monolithic ``init`` (one
threefry program per parameter; see ``benchmarks/results/model_init_cpu.md``). With a given
NumPy (whose ``Generator`` streams may change between releases, NEP 19) a parameter's value
depends only on the seed, its path and its shape, not on which other parameters exist; the
values fill the array in C order, so a parameter with fewer routes (K rows) gets the first K
rows of the K = 4 draw.

>>> import numpy as np
>>> Uniform(0.5).draw(np.random.default_rng(0), (2, 3)).shape
(2, 3)
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ALog",
    "Constant",
    "DtBias",
    "Rule",
    "TruncNormal",
    "Uniform",
    "declare",
    "draw_params",
    "param_rng",
    "trace_params",
]


class Rule:
    """An initialisation rule: a JAX initialiser (``__call__``) and its NumPy twin (``draw``)."""

    def __call__(self, key, shape, dtype=jnp.float32):
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, shape) -> np.ndarray:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class TruncNormal(Rule):
    """timm's ``trunc_normal_(std=std)``: N(0, std²) truncated to [-2, 2] (absolute bounds)."""

    std: float = 0.02

    def __call__(self, key, shape, dtype=jnp.float32):
        lo, hi = -2.0 / self.std, 2.0 / self.std
        return (self.std * jax.random.truncated_normal(key, lo, hi, shape, jnp.float32)).astype(
            dtype
        )

    def draw(self, rng, shape):
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(self.std)
        outside = np.abs(x) > 2.0
        while outside.any():  # rejection: exact truncation (never taken for std = 0.02)
            x[outside] = self.std * rng.standard_normal(int(outside.sum()), dtype=np.float32)
            outside = np.abs(x) > 2.0
        return x


@dataclasses.dataclass(frozen=True)
class Uniform(Rule):
    """U(-bound, bound); PyTorch's default Linear/Conv init is ``Uniform.torch(fan_in)``."""

    bound: float

    @classmethod
    def torch(cls, fan_in: int) -> Uniform:
        """PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        return cls(1.0 / math.sqrt(max(fan_in, 1)))

    def __call__(self, key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -self.bound, self.bound)

    def draw(self, rng, shape):
        x = rng.random(shape, dtype=np.float32)
        return (2 * self.bound) * x - np.float32(self.bound)


@dataclasses.dataclass(frozen=True)
class Constant(Rule):
    """Every entry ``value`` (LayerNorm's ones and zeros, a zero bias, Mamba's ``D = 1``)."""

    value: float

    def __call__(self, key, shape, dtype=jnp.float32):
        return jnp.full(shape, self.value, dtype)

    def draw(self, rng, shape):
        return np.full(shape, self.value, np.float32)


@dataclasses.dataclass(frozen=True)
class DtBias(Rule):
    """Mamba's Δ-bias: softplus⁻¹ of Δ log-uniform in [dt_min, dt_max], Δ floored at ``floor``."""

    dt_min: float = 0.001
    dt_max: float = 0.1
    floor: float = 1e-4

    def _bias(self, u, xp):
        lo, hi = math.log(self.dt_min), math.log(self.dt_max)
        dt = xp.maximum(xp.exp(u * (hi - lo) + lo), self.floor)
        return dt + xp.log(-xp.expm1(-dt))

    def __call__(self, key, shape, dtype=jnp.float32):
        return self._bias(jax.random.uniform(key, shape, dtype), jnp)

    def draw(self, rng, shape):
        return self._bias(rng.random(shape, dtype=np.float32), np)


@dataclasses.dataclass(frozen=True)
class ALog(Rule):
    """Mamba's S4D-real ``A_log``: ``log(1..N)`` along the last (state) axis, every row alike."""

    def __call__(self, key, shape, dtype=jnp.float32):
        return jnp.broadcast_to(jnp.log(jnp.arange(1, shape[-1] + 1, dtype=dtype)), shape)

    def draw(self, rng, shape):
        row = np.log(np.arange(1, shape[-1] + 1, dtype=np.float32))
        return np.ascontiguousarray(np.broadcast_to(row, shape))


_RECORD: contextvars.ContextVar[dict | None] = contextvars.ContextVar("jaxmamba_init_record")


def declare(module, name: str, rule: Rule, shape: tuple[int, ...]):
    """``module.param(name, rule, shape)``, noting ``rule`` under the parameter's path while
    :func:`draw_params` traces the module (the one place a layer states its init rule)."""
    record = _RECORD.get(None)
    if record is not None and module.is_initializing():
        record[tuple(module.path) + (name,)] = rule
    return module.param(name, rule, shape)


def param_rng(seed: int, path: tuple[str, ...]) -> np.random.Generator:
    """The NumPy generator of one parameter: seeded by ``seed`` and a hash of its ``path``.

    >>> a = param_rng(0, ("head", "weight")).random(2)
    >>> bool((a == param_rng(0, ("head", "weight")).random(2)).all())
    True
    """
    digest = hashlib.sha256("/".join(path).encode()).digest()
    words = np.frombuffer(digest[:16], dtype="<u4").tolist()
    entropy = [int(seed) % 2**64, *words]  # any int seed, negative too, as before
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def trace_params(module, *args, **kwargs) -> tuple[dict, dict]:
    """``(shapes, rules)`` of ``module.init(key, *args, **kwargs)``'s ``"params"``, by tracing.

    ``shapes`` is the nested dict of ``jax.ShapeDtypeStruct``; ``rules`` maps each parameter's
    path to the :class:`Rule` its layer declared (:func:`declare`). Nothing is compiled or drawn.
    """
    record: dict = {}
    token = _RECORD.set(record)
    try:
        # A fresh callable each time: JAX must trace again so that the layers declare their rules.
        shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
    finally:
        _RECORD.reset(token)
    return shapes["params"], record


def draw_params(module, seed: int, *args, **kwargs) -> dict:
    """The ``"params"`` of ``module.init(key, *args, **kwargs)``, drawn on the host.

    Shapes come from :func:`trace_params` (tracing, no compilation); each parameter is drawn by
    the rule its layer declared (:func:`declare`) from :func:`param_rng` ``(seed, path)``.

    Returns:
      the nested parameter dict, as device arrays of the traced shapes and dtypes.

    Raises:
      RuntimeError: a parameter was created with ``module.param`` instead of :func:`declare`.
    """
    shapes, rules = trace_params(module, *args, **kwargs)

    def draw(path, spec):
        path = tuple(k.key for k in path)
        if path not in rules:
            raise RuntimeError(f"parameter {'/'.join(path)} declares no init rule")
        value = rules[path].draw(param_rng(seed, path), spec.shape)
        return jnp.asarray(value, dtype=spec.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)
