"""Training: AdamW with warm-up and cosine decay, one jitted step, and a resumable ``fit`` loop.

The loop trains any :class:`~jaxmamba.Model` (any variant) in any named patch order and returns a
normal ``Model`` of the same config, which :func:`jaxmamba.storage.checkpoint.save` can store.

Determinism: everything random derives from ``TrainConfig.seed``. With ``root = PRNGKey(seed)``
and ``data_key, step_key = split(root)``, the order of epoch ``e`` is
``permutation(fold_in(data_key, e))`` and update ``s`` augments its batch with
``fold_in(step_key, s)``. A run interrupted and resumed from its checkpoints (``fit`` with the
same ``out_dir``) therefore ends with the same parameters, bit for bit, as one that was not.

Checkpoint layout of ``out_dir``::

    out_dir/checkpoints/<step>/   a :mod:`jaxmamba.storage.store` folder (atomic, checksummed): the
                                  tree "state" = {params, opt_state, key} and meta.json =
                                  {step, epoch, partial epoch sums, history, train and model
                                  config}
    out_dir/history.json          per-epoch history, rewritten after every epoch

Hyper-parameters and the optimiser are in :mod:`jaxmamba.train.optim`, evaluation in
:mod:`jaxmamba.train.evaluate`, the recipe of the shipped models in :mod:`jaxmamba.train.recipe`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmamba.errors import TrainError
from jaxmamba.models.model import Model, apply, check_images, cpu_pieces
from jaxmamba.orders import as_order
from jaxmamba.storage import store
from jaxmamba.train import data as D
from jaxmamba.train.evaluate import check_labelled, evaluate
from jaxmamba.train.optim import TrainConfig, cross_entropy, lr_schedule, make_optimizer

__all__ = ["HISTORY_FILE", "TrainConfig", "TrainError", "fit", "train_step"]

HISTORY_FILE = "history.json"
CHECKPOINT_SUBDIR = "checkpoints"


@functools.partial(jax.jit, static_argnames=("order", "augment"))
def _train_step(model, opt_state, images, labels, key, lr, label_smoothing, *, order, augment):
    if augment:
        images = D.augment(key, images)
    hyperparams = {**opt_state.hyperparams, "learning_rate": jnp.asarray(lr, jnp.float32)}
    opt_state = opt_state._replace(hyperparams=hyperparams)

    pieces = cpu_pieces(model.config, images.shape)  # the batch plan for this device (static)

    def loss_fn(params):
        logits, _ = apply(model.replace(params=params), images, order, None, frozenset(), pieces)
        return cross_entropy(logits, labels, label_smoothing), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(model.params)
    # Every hyper-parameter lives in opt_state (inject_hyperparams), so the update of any
    # make_optimizer(config) is the same function: built here, at trace time, not kept globally.
    updates, opt_state = make_optimizer(TrainConfig()).update(grads, opt_state, model.params)
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
      augment: apply :func:`jaxmamba.train.data.augment` to the batch first.

    Returns:
      ``(model, opt_state, metrics)``; ``metrics = {"loss": batch mean loss before the update,
      "correct": number of correct predictions before the update}``.

    >>> from jaxmamba import create_model
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


# ---- checkpoints --------------------------------------------------------------------------------


def _empty_history() -> dict[str, list]:
    keys = ("epoch", "step", "lr", "loss", "train_acc", "test_acc", "seconds")
    return {k: [] for k in keys}


class _Checkpoints:
    """The numbered training checkpoints of a run in ``out_dir/checkpoints`` (a StepStore)."""

    def __init__(self, out_dir: Path, config: TrainConfig, model: Model, n_train: int):
        self.out_dir = out_dir
        self.identity = {
            "train_config": config.to_dict(),
            "model_config": dataclasses.asdict(model.config),
            "n_train": n_train,
        }
        self.steps = store.StepStore(out_dir / CHECKPOINT_SUBDIR, keep=config.keep_checkpoints)

    def latest_step(self) -> int | None:
        return self.steps.latest_step()

    def save(self, step: int, state: dict, meta: dict) -> None:
        meta = {**meta, **self.identity}
        self.steps.save(step, {"state": state}, {"meta.json": json.dumps(meta)})

    def restore(self, step: int, target: dict) -> tuple[dict, dict]:
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), target)
        trees, files = self.steps.restore(step, {"state": abstract})
        meta = json.loads(files["meta.json"])
        self._check_identity(meta, step)
        # Host round trip: uncommitted arrays, like a fresh run's, so the compiled step is reused.
        state = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), trees["state"])
        return state, meta

    def _check_identity(self, meta: dict, step: int) -> None:
        stored = {k: meta.get(k) for k in self.identity}
        stored["model_config"] = _json_roundtrip(stored["model_config"])
        current = _json_roundtrip(self.identity)
        if stored != current:
            diffs = []
            for k, now in current.items():
                then = stored[k]
                if isinstance(now, dict) and isinstance(then, dict):
                    diffs += [
                        f"{k}.{f}: {then.get(f)!r} in the checkpoint, {v!r} now"
                        for f, v in now.items()
                        if then.get(f) != v
                    ]
                elif then != now:
                    diffs.append(f"{k}: {then!r} in the checkpoint, {now!r} now")
            raise TrainError(
                f"{self.out_dir} holds a different run (checkpoint of step {step}): "
                + "; ".join(diffs)
                + ". Use another out_dir, or delete it to start over."
            )


def _json_roundtrip(x):
    return json.loads(json.dumps(x))


# ---- the loop --------------------------------------------------------------------------------


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)


def fit(
    model: Model,
    train_data,
    test_data=None,
    config: TrainConfig | None = None,
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
      config: a :class:`TrainConfig` (default ``TrainConfig()``).
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

    >>> from jaxmamba import create_model
    >>> m = create_model("vmamba_test", dims=(8,), depths=(1,))
    >>> x, y = D.load_digits_images(32, split="test")
    >>> m, history = fit(m, (x[:16], y[:16]), config=TrainConfig(epochs=1, batch_size=8),
    ...                  progress=False)
    >>> history["step"]
    [2]
    """
    if not isinstance(model, Model):
        raise TrainError(f"fit expects a jaxmamba Model, got {type(model).__name__}")
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TrainError(f"config must be a TrainConfig, got {type(config).__name__}")
    images, labels = check_labelled(train_data, "train_data", model)
    test = None if test_data is None else check_labelled(test_data, "test_data", model)
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
        if latest is None and (out_dir / HISTORY_FILE).exists():
            raise TrainError(
                f"{out_dir / HISTORY_FILE} exists but {out_dir} holds no training checkpoints: "
                "it is not a run fit wrote, so it is not overwritten; use another out_dir"
            )
        if latest is not None:
            target = {"params": model.params, "opt_state": opt_state, "key": root}
            state, meta = ckpt.restore(latest, target)
            model = dataclasses.replace(model, params=state["params"])
            opt_state, root = state["opt_state"], state["key"]
            step, sums, history = int(meta["step"]), list(meta["sums"]), meta["history"]
    data_key, step_key = jax.random.split(root)

    def save_checkpoint():
        if ckpt is None:
            return
        state = {"params": model.params, "opt_state": opt_state, "key": root}
        meta = {"step": step, "epoch": step // steps_per_epoch, "sums": sums, "history": history}
        ckpt.save(step, state, meta)
        payload = {"history": history, "model": model.config.describe(), **ckpt.identity}
        store.write_text_atomic(out_dir / HISTORY_FILE, json.dumps(payload, indent=1) + "\n")

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
                due = last or (config.eval_every and (epoch + 1) % config.eval_every == 0)
                test_acc = (
                    evaluate(model, *test, order=order, batch_size=config.eval_batch_size)
                    if test is not None and due
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
    return model, history
