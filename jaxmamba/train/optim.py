"""Training hyper-parameters and the optimiser they define: AdamW with global-norm clipping,
linear warm-up and cosine decay (as the official VMamba training), and the label-smoothed loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxmamba.errors import TrainError
from jaxmamba.orders import ORDER_NAMES

__all__ = [
    "TrainConfig",
    "cross_entropy",
    "lr_schedule",
    "make_optimizer",
    "weight_decay_mask",
]

# No weight decay on leaves of these names: VMamba's A_logs and Ds (its official training), Vim's
# position embedding and CLS token (the official Vim's no_weight_decay()).
_NO_DECAY = frozenset({"bias", "A_logs", "Ds", "pos_embed", "cls_token"})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`jaxmamba.train.loop.fit` (defaults suit the bundled digits).

    Attributes:
      epochs: passes over the training set.
      batch_size: examples per update (the last partial batch of an epoch is dropped).
      lr: peak learning rate, reached after ``warmup_epochs``.
      end_lr_ratio: final learning rate of the cosine decay over ``lr``.
      warmup_epochs: linear warm-up from 0 (may be fractional).
      weight_decay: AdamW decoupled weight decay (not on biases, norms, ``A_logs``, ``Ds``,
        ``pos_embed``, ``cls_token``).
      b1, b2: Adam moment decays.
      grad_clip: maximum global gradient norm; 0 disables clipping.
      label_smoothing: mass spread uniformly over all classes (``optax.smooth_labels``).
      augment: random translation and contrast jitter (:func:`jaxmamba.train.data.augment`).
      seed: seed of the data order and augmentation (the model's init seed is separate).
      order: patch order name (:data:`jaxmamba.orders.ORDER_NAMES`) used in training and eval;
        a Vim model scans one path forward and backward (``"raster"``: the official one).
      checkpoint_every: also checkpoint every this many updates (0: only at the end of every
        epoch and when ``fit`` stops).
      keep_checkpoints: how many recent checkpoints to keep.
      eval_every: evaluate the test set every this many epochs (0: only after the last).
      eval_batch_size: images per forward pass in evaluation.
    """

    epochs: int = 15
    batch_size: int = 64
    lr: float = 3e-3
    end_lr_ratio: float = 0.01
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    augment: bool = True
    seed: int = 0
    order: str = "cross"
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    eval_every: int = 1
    eval_batch_size: int = 256

    def __post_init__(self):
        problems = []
        for name in ("epochs", "batch_size", "keep_checkpoints", "eval_batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "eval_every", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.end_lr_ratio <= 1:
            problems.append(f"end_lr_ratio must be in [0, 1], got {self.end_lr_ratio}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            problems.append(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1):
            problems.append(f"b1 and b2 must be in [0, 1), got {self.b1}, {self.b2}")
        if self.order not in ORDER_NAMES:
            problems.append(f"order must be one of {ORDER_NAMES}, got {self.order!r}")
        if problems:
            raise TrainError("invalid TrainConfig: " + "; ".join(problems))

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _steps(config: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """``(warmup_steps, total_steps)``; warm-up is capped so that some decay remains."""
    total = config.epochs * steps_per_epoch
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), max(total - 1, 0))
    return warmup, total


def lr_schedule(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate by update count: linear warm-up from 0 to ``lr``, then cosine decay.

    ``optax.warmup_cosine_decay_schedule`` over ``epochs * steps_per_epoch`` updates, ending at
    ``lr * end_lr_ratio``. Update ``s`` (0-based) of :func:`jaxmamba.train.loop.fit` uses
    ``schedule(s + 1)``, so the first update is not wasted at rate 0 and the last one uses the
    end value.

    >>> s = lr_schedule(TrainConfig(epochs=10, lr=1e-3, warmup_epochs=1), steps_per_epoch=10)
    >>> [round(float(s(t)), 6) for t in (0, 5, 10, 100)]
    [0.0, 0.0005, 0.001, 1e-05]
    """
    if steps_per_epoch < 1:
        raise TrainError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    warmup, total = _steps(config, steps_per_epoch)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.lr,
        warmup_steps=warmup,
        decay_steps=max(total, 1),
        end_value=config.lr * config.end_lr_ratio,
    )


def weight_decay_mask(params) -> Any:
    """Pytree of bools: True where AdamW decays the weight.

    As the official trainings: no decay on 1-D parameters (norms, biases), on leaves named
    ``bias``, on VMamba's ``A_logs`` and ``Ds``, and on Vim's ``pos_embed`` and ``cls_token``
    (Vim's 2-D ``A_log`` decays, as in the official Vim training, which uses timm's rule).

    >>> weight_decay_mask({"w": jnp.ones((2, 2)), "bias": jnp.ones((2, 2)), "s": jnp.ones(2)})
    {'bias': False, 's': False, 'w': True}
    """

    def decays(path, leaf) -> bool:
        name = getattr(path[-1], "key", None) if path else None
        return jnp.ndim(leaf) >= 2 and name not in _NO_DECAY

    return jax.tree_util.tree_map_with_path(decays, params)


def _adamw(learning_rate, weight_decay, clip_norm, b1, b2) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay, mask=weight_decay_mask),
    )


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW after global-norm clipping, its hyper-parameters held in its state.

    Built with ``optax.inject_hyperparams``, so the learning rate, weight decay, clip norm and
    moment decays are arrays in the optimiser state: :func:`jaxmamba.train.loop.train_step` sets the
    learning rate of each update (from :func:`lr_schedule`), and one compiled step serves every
    ``TrainConfig``.
    ``grad_clip=0`` clips at infinity (no clipping).

    >>> tx = make_optimizer(TrainConfig(lr=1e-3))
    >>> round(float(tx.init({"w": jnp.ones((2, 2))}).hyperparams["learning_rate"]), 6)
    0.001
    """
    return optax.inject_hyperparams(_adamw)(
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        clip_norm=config.grad_clip if config.grad_clip > 0 else float("inf"),
        b1=config.b1,
        b2=config.b2,
    )


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Mean softmax cross-entropy of ``logits (B, C)`` against integer ``labels (B,)``.

    The targets are ``optax.smooth_labels(one_hot(labels), label_smoothing)``.

    >>> float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])))  # log 4
    1.3862943649291992
    """
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return jnp.mean(optax.softmax_cross_entropy(logits, targets))
