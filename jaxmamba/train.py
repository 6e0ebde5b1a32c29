"""Training: AdamW with warm-up and cosine decay, one jitted step, and a resumable ``fit`` loop.

The loop trains any :class:`~jaxmamba.Model` (any variant) in any named patch order and returns a
normal ``Model`` of the same config, which :func:`jaxmamba.checkpoint.save` can store.

Determinism: everything random derives from ``TrainConfig.seed``. With ``root = PRNGKey(seed)``
and ``data_key, step_key = split(root)``, the order of epoch ``e`` is
``permutation(fold_in(data_key, e))`` and update ``s`` augments its batch with
``fold_in(step_key, s)``. A run interrupted and resumed from its checkpoints (``fit`` with the
same ``out_dir``) therefore ends with the same parameters, bit for bit, as one that was not.

Checkpoint layout of ``out_dir``::

    out_dir/checkpoints/<step>/   Orbax CheckpointManager step (written atomically): "state" =
                                  {params, opt_state, key}, "meta" = JSON {step, epoch, partial
                                  epoch sums, history, train and model config}
    out_dir/history.json          per-epoch history, rewritten after every epoch

The default model (:func:`load_default`) is a small cross-scan VMamba trained on the bundled
digits by ``examples/train_default.py`` (see ``jaxmamba/default_model/TRAINING.md``).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import itertools
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmamba import data as D
from jaxmamba.checkpoint import quiet_orbax
from jaxmamba.config import VMambaConfig, get_config
from jaxmamba.model import Model, _apply, check_images, create_model, forward
from jaxmamba.orders import ORDER_NAMES, as_order

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_MODEL_DIR",
    "DEFAULT_TRAIN_CONFIG",
    "TrainConfig",
    "TrainError",
    "cross_entropy",
    "default_model_config",
    "evaluate",
    "evaluate_metrics",
    "fit",
    "load_default",
    "lr_schedule",
    "make_optimizer",
    "train_digits",
    "train_step",
    "weight_decay_mask",
]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
DEFAULT_IMAGE_SIZE = 64
TRAINING_JSON = "TRAINING.json"
HISTORY_FILE = "history.json"
CHECKPOINT_SUBDIR = "checkpoints"
_NO_DECAY = frozenset({"bias", "A_logs", "Ds"})  # official VMamba: no weight decay on these


class TrainError(ValueError):
    """A training configuration, data set or training directory is invalid."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`fit` (defaults suit the bundled digits).

    Attributes:
      epochs: passes over the training set.
      batch_size: examples per update (the last partial batch of an epoch is dropped).
      lr: peak learning rate, reached after ``warmup_epochs``.
      end_lr_ratio: final learning rate of the cosine decay over ``lr``.
      warmup_epochs: linear warm-up from 0 (may be fractional).
      weight_decay: AdamW decoupled weight decay (not on biases, norms, ``A_logs``, ``Ds``).
      b1, b2: Adam moment decays.
      grad_clip: maximum global gradient norm; 0 disables clipping.
      label_smoothing: mass spread uniformly over all classes (``optax.smooth_labels``).
      augment: random translation and contrast jitter (:func:`jaxmamba.data.augment`).
      seed: seed of the data order and augmentation (the model's init seed is separate).
      order: patch order name (:data:`jaxmamba.orders.ORDER_NAMES`) used in training and eval.
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


# ---- optimiser ---------------------------------------------------------------------------------


def _steps(config: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """``(warmup_steps, total_steps)``; warm-up is capped so that some decay remains."""
    total = config.epochs * steps_per_epoch
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), max(total - 1, 0))
    return warmup, total


def lr_schedule(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate by update count: linear warm-up from 0 to ``lr``, then cosine decay.

    ``optax.warmup_cosine_decay_schedule`` over ``epochs * steps_per_epoch`` updates, ending at
    ``lr * end_lr_ratio``. Update ``s`` (0-based) of :func:`fit` uses ``schedule(s + 1)``, so the
    first update is not wasted at rate 0 and the last one uses the end value.

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

    As the official VMamba training: no decay on 1-D parameters (norms, biases), on leaves named
    ``bias``, and on ``A_logs`` and ``Ds``.

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
    moment decays are arrays in the optimiser state: :func:`train_step` sets the learning rate of
    each update (from :func:`lr_schedule`), and one compiled step serves every ``TrainConfig``.
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


# Its update depends only on the optimiser state (all hyper-parameters are injected), so this one
# instance updates the state of any make_optimizer(config).
_TX = make_optimizer(TrainConfig())


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Mean softmax cross-entropy of ``logits (B, C)`` against integer ``labels (B,)``.

    The targets are ``optax.smooth_labels(one_hot(labels), label_smoothing)``.

    >>> float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])))  # log 4
    1.3862943649291992
    """
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return jnp.mean(optax.softmax_cross_entropy(logits, targets))


# ---- one step ----------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("order", "augment"))
def _train_step(model, opt_state, images, labels, key, lr, label_smoothing, *, order, augment):
    if augment:
        images = D.augment(key, images)
    hyperparams = {**opt_state.hyperparams, "learning_rate": jnp.asarray(lr, jnp.float32)}
    opt_state = opt_state._replace(hyperparams=hyperparams)

    def loss_fn(params):
        logits, _ = _apply(model.replace(params=params), images, order, None, frozenset())
        return cross_entropy(logits, labels, label_smoothing), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(model.params)
    updates, opt_state = _TX.update(grads, opt_state, model.params)
    params = optax.apply_updates(model.params, updates)
    correct = jnp.sum(jnp.argmax(logits, axis=-1) == labels)
    return model.replace(params=params), opt_state, {"loss": loss, "correct": correct}


def train_step(
    model: Model,
    opt_state,
    images,
    labels,
    key,
    lr: float,
    *,
    label_smoothing: float = 0.0,
    order: str = "cross",
    augment: bool = False,
):
    """One AdamW update of ``model`` on a batch (jitted; ``order`` and ``augment`` static).

    Args:
      model: the model to update.
      opt_state: state of :func:`make_optimizer` ``(config).init(model.params)``.
      images: ``(B, H, W, 3)`` float; labels: ``(B,)`` int.
      key: PRNG key of the augmentation (unused without ``augment``).
      lr: learning rate of this update.
      label_smoothing: see :func:`cross_entropy`.
      order: patch order name or :class:`~jaxmamba.orders.Order`.
      augment: apply :func:`jaxmamba.data.augment` to the batch first.

    Returns:
      ``(model, opt_state, metrics)``; ``metrics = {"loss": batch mean loss before the update,
      "correct": number of correct predictions before the update}``.

    >>> m = create_model("vmamba_test", dims=(8,), depths=(1,))
    >>> state = make_optimizer(TrainConfig()).init(m.params)
    >>> x, y = jnp.zeros((8, 32, 32, 3)), jnp.arange(8)
    >>> m, state, metrics = train_step(m, state, x, y, jax.random.PRNGKey(0), 1e-3, augment=True)
    >>> sorted(metrics)
    ['correct', 'loss']
    """
    check_images(model.config, images)
    if jnp.shape(labels) != jnp.shape(images)[:1]:
        raise TrainError(f"labels must be ({jnp.shape(images)[0]},), got {jnp.shape(labels)}")
    return _train_step(
        model, opt_state, images, labels, key, np.float32(lr), np.float32(label_smoothing),
        order=as_order(order), augment=bool(augment),
    )  # fmt: skip


# ---- evaluation --------------------------------------------------------------------------------


def _check_data(data, what: str, model: Model) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TrainError(f"{what} must be a pair (images, labels)")
    images, labels = np.asarray(data[0]), np.asarray(data[1])
    try:
        check_images(model.config, images)
    except ValueError as e:
        raise TrainError(f"{what}: {e}") from None
    if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise TrainError(
            f"{what}: labels must be ({images.shape[0]},) integers, got {labels.shape} "
            f"{labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= model.config.num_classes):
        raise TrainError(
            f"{what}: labels must be in 0..{model.config.num_classes - 1}, "
            f"got {labels.min()}..{labels.max()}"
        )
    return images, labels.astype(np.int32)


def evaluate_metrics(
    model: Model, images, labels, *, order="cross", batch_size: int = 256
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy (no label smoothing) on ``images (N, H, W, 3)``.

    Batches of ``batch_size`` (the last one zero-padded, so there is one compiled forward).
    Returns ``{"accuracy": float, "loss": float}``; the loss separates models whose
    predictions agree.

    >>> m = create_model("vmamba_test", dims=(8,), depths=(1,))
    >>> r = evaluate_metrics(m, jnp.zeros((8, 32, 32, 3)), jnp.arange(8))
    >>> sorted(r), 0.0 <= r["accuracy"] <= 1.0, r["loss"] > 0
    (['accuracy', 'loss'], True, True)
    """
    images, labels = _check_data((images, labels), "evaluate", model)
    n = len(images)
    if n == 0:
        raise TrainError("evaluate needs at least one image")
    if batch_size < 1:
        raise TrainError(f"batch_size must be >= 1, got {batch_size}")
    b = min(batch_size, n)
    correct, nll = 0, 0.0
    for start in range(0, n, b):
        chunk = images[start : start + b]
        pad = b - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
        logits = np.asarray(forward(model, chunk, order=order), np.float64)[: b - pad]
        truth = labels[start : start + b]
        correct += int(np.sum(np.argmax(logits, axis=-1) == truth))
        log_z = np.logaddexp.reduce(logits, axis=-1)
        nll += float(np.sum(log_z - logits[np.arange(len(truth)), truth]))
    return {"accuracy": correct / n, "loss": nll / n}


def evaluate(model: Model, images, labels, *, order="cross", batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``images (N, H, W, 3)`` with integer ``labels (N,)``.

    :func:`evaluate_metrics` without the loss.

    >>> m = create_model("vmamba_test", dims=(8,), depths=(1,))
    >>> 0.0 <= evaluate(m, jnp.zeros((8, 32, 32, 3)), jnp.arange(8)) <= 1.0
    True
    """
    return evaluate_metrics(model, images, labels, order=order, batch_size=batch_size)["accuracy"]


# ---- checkpoints -------------------------------------------------------------------------------


def _write_json(path: Path, payload) -> None:
    """Write ``payload`` as JSON atomically (temporary file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, path)


def _empty_history() -> dict[str, list]:
    keys = ("epoch", "step", "lr", "loss", "train_acc", "test_acc", "seconds")
    return {k: [] for k in keys}


class _Checkpoints:
    """Orbax CheckpointManager of a training run in ``out_dir/checkpoints``."""

    def __init__(self, out_dir: Path, config: TrainConfig, model: Model, n_train: int):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.out_dir = out_dir
        self.identity = {
            "train_config": config.to_dict(),
            "model_config": dataclasses.asdict(model.config),
            "n_train": n_train,
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_checkpoints, create=True, enable_async_checkpointing=False
        )
        with quiet_orbax():
            self.manager = ocp.CheckpointManager(
                (out_dir / CHECKPOINT_SUBDIR).absolute(), options=options
            )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: dict, meta: dict) -> None:
        ocp = self._ocp
        meta = {**meta, **self.identity}
        with quiet_orbax():
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
            self.manager.wait_until_finished()

    def restore(self, step: int, target: dict) -> tuple[dict, dict]:
        ocp = self._ocp
        with quiet_orbax():
            meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = meta["meta"]
            self._check_identity(meta, step)
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        # Host round trip: uncommitted arrays, like a fresh run's, so the compiled step is reused.
        state = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), restored["state"])
        return state, meta

    def _check_identity(self, meta: dict, step: int) -> None:
        stored = {k: meta.get(k) for k in self.identity}
        stored["model_config"] = _json_roundtrip(stored["model_config"])
        current = _json_roundtrip(self.identity)
        if stored != current:
            diffs = []
            for k in current:
                if isinstance(current[k], dict) and isinstance(stored[k], dict):
                    diffs += [
                        f"{k}.{f}: {stored[k].get(f)!r} in the checkpoint, {v!r} now"
                        for f, v in current[k].items()
                        if stored[k].get(f) != v
                    ]
                elif stored[k] != current[k]:
                    diffs.append(f"{k}: {stored[k]!r} in the checkpoint, {current[k]!r} now")
            raise TrainError(
                f"{self.out_dir} holds a different run (checkpoint of step {step}): "
                + "; ".join(diffs)
                + ". Use another out_dir, or delete it to start over."
            )

    def close(self) -> None:
        with quiet_orbax():
            self.manager.close()


def _json_roundtrip(x):
    return json.loads(json.dumps(x))


# ---- the loop ----------------------------------------------------------------------------------


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)


def fit(
    model: Model,
    train_data,
    test_data=None,
    config: TrainConfig = TrainConfig(),
    *,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> tuple[Model, dict[str, list]]:
    """Train ``model`` on ``train_data`` with ``config``; resumable from ``out_dir``.

    Args:
      model: the initial model (ignored, except for its config, when resuming).
      train_data: ``(images (N, H, W, 3), labels (N,))``.
      test_data: the same for evaluation, or ``None``.
      config: a :class:`TrainConfig`.
      out_dir: directory for checkpoints and ``history.json``; if it holds checkpoints of the
        same run (same configs and training-set size), training continues from the latest one.
        ``None``: no checkpoints.
      progress: show a tqdm progress bar.
      stop_after: stop once this many updates are done in total (checkpointing first), as if
        interrupted; the schedule is unchanged and a later call with the same ``out_dir``
        resumes.

    Returns:
      ``(model, history)``: the trained model (same config) and a dict of per-epoch lists
      ``epoch, step, lr, loss, train_acc, test_acc, seconds``; ``loss`` and ``train_acc`` are
      running means over the epoch's (augmented) batches, ``test_acc`` is ``None`` in epochs
      without evaluation.

    >>> m = create_model("vmamba_test", dims=(8,), depths=(1,))
    >>> x, y = D.load_digits_images(32, split="test")
    >>> m, history = fit(m, (x[:16], y[:16]), config=TrainConfig(epochs=1, batch_size=8),
    ...                  progress=False)
    >>> history["step"]
    [2]
    """
    if not isinstance(model, Model):
        raise TrainError(f"fit expects a jaxmamba Model, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TrainError(f"config must be a TrainConfig, got {type(config).__name__}")
    images, labels = _check_data(train_data, "train_data", model)
    test = None if test_data is None else _check_data(test_data, "test_data", model)
    steps_per_epoch = len(images) // config.batch_size
    if steps_per_epoch < 1:
        raise TrainError(
            f"the training set ({len(images)} images) is smaller than one batch "
            f"({config.batch_size})"
        )
    total = steps_per_epoch * config.epochs
    stop = total if stop_after is None else min(int(stop_after), total)
    schedule = lr_schedule(config, steps_per_epoch)
    lrs = np.asarray(schedule(np.arange(1, total + 1)), np.float32)  # lr of update s: lrs[s]
    order = as_order(config.order)
    smoothing = np.float32(config.label_smoothing)

    root = jax.random.PRNGKey(config.seed)
    opt_state = make_optimizer(config).init(model.params)
    step, sums, history = 0, [0.0, 0, 0, 0.0], _empty_history()  # loss·n, correct, n, seconds

    ckpt = None
    if out_dir is not None:
        out_dir = Path(out_dir).expanduser()
        ckpt = _Checkpoints(out_dir, config, model, len(images))
        latest = ckpt.latest_step()
        if latest is not None:
            target = {"params": model.params, "opt_state": opt_state, "key": root}
            state, meta = ckpt.restore(latest, target)
            model = model.replace(params=state["params"])
            opt_state, root = state["opt_state"], state["key"]
            step, sums, history = int(meta["step"]), list(meta["sums"]), meta["history"]
    data_key, step_key = jax.random.split(root)

    def save_checkpoint():
        if ckpt is None:
            return
        state = {"params": model.params, "opt_state": opt_state, "key": root}
        meta = {"step": step, "epoch": step // steps_per_epoch, "sums": sums, "history": history}
        ckpt.save(step, state, meta)
        _write_json(
            out_dir / HISTORY_FILE,
            {"history": history, "model": model.config.describe(), **ckpt.identity},
        )

    try:
        with _progress(total, step, progress) as bar:
            while step < stop:
                epoch, offset = divmod(step, steps_per_epoch)
                batch_iter = D.batches(
                    images, labels, config.batch_size, key=jax.random.fold_in(data_key, epoch)
                )
                tic = time.perf_counter()
                for x, y in itertools.islice(batch_iter, offset, steps_per_epoch):
                    key = jax.random.fold_in(step_key, step)
                    model, opt_state, metrics = _train_step(
                        model, opt_state, x, y, key, lrs[step], smoothing,
                        order=order, augment=config.augment,
                    )  # fmt: skip
                    loss, correct = float(metrics["loss"]), int(metrics["correct"])
                    sums = [sums[0] + loss * len(y), sums[1] + correct, sums[2] + len(y), sums[3]]
                    step += 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{sums[0] / sums[2]:.3f}")
                    if step % steps_per_epoch == 0 or step >= stop:
                        break
                    if config.checkpoint_every and step % config.checkpoint_every == 0:
                        sums[3] += time.perf_counter() - tic
                        tic = time.perf_counter()
                        save_checkpoint()
                sums[3] += time.perf_counter() - tic
                if step % steps_per_epoch == 0:  # the epoch is complete
                    last = step == total
                    evaluate_now = test is not None and (
                        last or (config.eval_every and (epoch + 1) % config.eval_every == 0)
                    )
                    test_acc = (
                        evaluate(model, *test, order=order, batch_size=config.eval_batch_size)
                        if evaluate_now
                        else None
                    )
                    row = {
                        "epoch": epoch + 1,
                        "step": step,
                        "lr": float(lrs[step - 1]),
                        "loss": sums[0] / sums[2],
                        "train_acc": sums[1] / sums[2],
                        "test_acc": test_acc,
                        "seconds": sums[3],
                    }
                    for k, v in row.items():
                        history[k].append(v)
                    sums = [0.0, 0, 0, 0.0]
                    bar.set_postfix(
                        epoch=epoch + 1,
                        loss=f"{row['loss']:.3f}",
                        train=f"{row['train_acc']:.3f}",
                        test="-" if test_acc is None else f"{test_acc:.3f}",
                    )
                save_checkpoint()  # at the end of every epoch and when stopping early
    finally:
        if ckpt is not None:
            ckpt.close()
    return model, history


# ---- the default model -------------------------------------------------------------------------


def default_model_config() -> VMambaConfig:
    """Config of the default model: a v05_noz (vmamba_tiny_s1l8 family) VMamba, dims 16-128,
    depths 1-1-2-1, 10 classes.

    >>> default_model_config().describe()
    'custom v05_noz, dims 16, depths 1-1-2-1, d_state 1, ssm_ratio 1, 10 classes'
    """
    return get_config("vmamba_tiny_s1l8", dims=16, depths=(1, 1, 2, 1), num_classes=10)


DEFAULT_TRAIN_CONFIG = TrainConfig(epochs=15, batch_size=64, lr=3e-3, seed=0)


def train_digits(
    model_config: VMambaConfig | str,
    config: TrainConfig = DEFAULT_TRAIN_CONFIG,
    *,
    size: int = DEFAULT_IMAGE_SIZE,
    out: str | os.PathLike = DEFAULT_MODEL_DIR,
    work_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    model_seed: int = 0,
    split_seed: int = 0,
    command: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train a fresh model on the bundled digits and save it, with ``TRAINING.json``/``.md``.

    Args:
      model_config: a variant name or config (its ``num_classes`` must be >= 10).
      config: training hyper-parameters.
      size: image size (a multiple of 32).
      out: checkpoint directory written with :func:`jaxmamba.checkpoint.save`.
      work_dir: directory of the resumable training checkpoints (``None``: not resumable).
      limit: use only the first ``limit`` training images (for smoke tests).
      model_seed: seed of the model's initialisation; split_seed: seed of the train/test split.
      command: the command line to record.
      progress: show a progress bar.
      overwrite: replace an existing checkpoint at ``out``.

    Returns:
      The record written to ``out/TRAINING.json`` (configs, seeds, accuracy, time, history).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     record = train_digits(get_config("vmamba_test", dims=(8,), depths=(1,)),
    ...                           TrainConfig(epochs=1, batch_size=8, eval_batch_size=8),
    ...                           size=32, limit=16, out=f"{tmp}/model", progress=False)
    >>> record["data"]["n_train"], record["model"]
    (16, 'custom v05_noz, dims 8, depths 1, d_state 1, ssm_ratio 2, 10 classes')
    """
    from jaxmamba import checkpoint

    out = Path(out).expanduser()
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise TrainError(
            f"{out} already exists and is not empty; pass overwrite=True to replace it"
        )
    model = create_model(model_config, seed=model_seed)
    train = D.load_digits_images(size, split="train", seed=split_seed)
    test = D.load_digits_images(size, split="test", seed=split_seed)
    if limit is not None:
        train = (train[0][:limit], train[1][:limit])
    tic = time.perf_counter()
    model, history = fit(model, train, test, config, out_dir=work_dir, progress=progress)
    seconds = time.perf_counter() - tic
    test_acc = evaluate(model, *test, order=config.order, batch_size=config.eval_batch_size)
    checkpoint.save(model, out, overwrite=overwrite)
    record = {
        "command": command,
        "model": model.config.describe(),
        "model_config": dataclasses.asdict(model.config),
        "num_params": model.num_params,
        "model_seed": model_seed,
        "train_config": config.to_dict(),
        "data": {
            "name": "sklearn.datasets.load_digits, upsampled bilinear, grey to RGB",
            "image_size": size,
            "split_seed": split_seed,
            "test_fraction": D.TEST_FRACTION,
            "n_train": len(train[1]),
            "n_test": len(test[1]),
            "normalisation": f"(pixel / 16 - {D.DIGITS_MEAN}) / {D.DIGITS_STD}",
        },
        "order": config.order,
        "test_accuracy": test_acc,
        "train_seconds": round(seconds, 1),
        "history": history,
        "environment": {
            "jax": jax.__version__,
            "optax": optax.__version__,
            "backend": jax.default_backend(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "date": datetime.date.today().isoformat(),
    }
    _write_json(out / TRAINING_JSON, record)
    (out / "TRAINING.md").write_text(_training_markdown(record))
    return record


def _training_markdown(r: dict[str, Any]) -> str:
    tc = r["train_config"]
    rows = "\n".join(
        f"| {e} | {loss:.4f} | {tr:.4f} | {'-' if te is None else f'{te:.4f}'} |"
        for e, loss, tr, te in zip(
            r["history"]["epoch"],
            r["history"]["loss"],
            r["history"]["train_acc"],
            r["history"]["test_acc"],
            strict=True,
        )
    )
    return f"""# Default model: training record

Produced by `{r["command"]}` on {r["date"]} ({r["environment"]["backend"]}, \
{r["environment"]["cpu_count"]} CPUs, jax {r["environment"]["jax"]}), in \
{r["train_seconds"]:.0f} s of training.

- Model: {r["model"]}, {r["num_params"]:,} parameters, init seed {r["model_seed"]}.
- Data: {r["data"]["name"]}, {r["data"]["image_size"]}x{r["data"]["image_size"]}; stratified split \
(seed {r["data"]["split_seed"]}, {r["data"]["test_fraction"]:.0%} held out): \
{r["data"]["n_train"]} train / {r["data"]["n_test"]} test; normalised \
{r["data"]["normalisation"]}.
- Order: `{r["order"]}`.
- Training: {tc["epochs"]} epochs, batch {tc["batch_size"]}, AdamW peak lr {tc["lr"]} \
(linear warm-up {tc["warmup_epochs"]} epoch, cosine decay to {tc["end_lr_ratio"]} x), \
weight decay {tc["weight_decay"]}, clip {tc["grad_clip"]}, label smoothing \
{tc["label_smoothing"]}, augmentation {tc["augment"]}, seed {tc["seed"]}.
- **Test accuracy: {r["test_accuracy"]:.4f}** ({r["data"]["n_test"]} held-out digits).

Load it with `jaxmamba.train.load_default()`; the images it expects come from
`jaxmamba.data.load_digits_images({r["data"]["image_size"]}, split="test")`.
Full configs and history: `TRAINING.json`.

| epoch | loss | train acc | test acc |
|---|---|---|---|
{rows}
"""


def load_default() -> Model:
    """The default model shipped in ``jaxmamba/default_model`` (no network, no torch).

    A small cross-scan VMamba trained on the bundled digits (:func:`default_model_config`);
    ``jaxmamba/default_model/TRAINING.json`` records how, its image size and test accuracy.

    >>> load_default().config.num_classes
    10
    """
    from jaxmamba import checkpoint

    if not (DEFAULT_MODEL_DIR / checkpoint.CONFIG_FILE).is_file():
        raise TrainError(
            f"the default model is missing from {DEFAULT_MODEL_DIR}; "
            "create it with: python examples/train_default.py"
        )
    return checkpoint.load(DEFAULT_MODEL_DIR)
