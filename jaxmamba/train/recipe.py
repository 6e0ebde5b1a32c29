"""The recipe of the shipped models: train a fresh model on the bundled digits, save it, and
write its training record (``TRAINING.json`` and ``TRAINING.md``) beside it.

The recipe is the same for both families (a VMamba or a Vim config); only the default scan order
differs (:data:`DEFAULT_ORDERS`: VMamba's cross scan, Vim's official row-major path).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import jax
import optax

from jaxmamba.errors import TrainError
from jaxmamba.models.config import ModelConfig, VimConfig
from jaxmamba.models.model import create_model
from jaxmamba.pretrained import DEFAULT_IMAGE_SIZE, DEFAULT_MODEL_DIR
from jaxmamba.storage import store
from jaxmamba.train import data as D
from jaxmamba.train.evaluate import evaluate
from jaxmamba.train.loop import fit
from jaxmamba.train.optim import TrainConfig

__all__ = [
    "DEFAULT_ORDERS",
    "DEFAULT_TRAIN_CONFIG",
    "TRAINING_JSON",
    "family_of",
    "train_digits",
    "training_markdown",
]

TRAINING_JSON = "TRAINING.json"


DEFAULT_TRAIN_CONFIG = TrainConfig(epochs=15, batch_size=64, lr=3e-3, seed=0)

#: The order each family is trained in by default: VMamba's cross scan; for Vim the official
#: path (row-major, scanned forward and backward with the CLS token in the middle).
DEFAULT_ORDERS = {"vmamba": "cross", "vim": "raster"}


def family_of(config: ModelConfig) -> str:
    """``"vim"`` or ``"vmamba"``: the family of a model config.

    >>> from jaxmamba import get_config
    >>> family_of(get_config("vim_digits")), family_of(get_config("vmamba_test"))
    ('vim', 'vmamba')
    """
    return "vim" if isinstance(config, VimConfig) else "vmamba"


def train_digits(
    model_config: ModelConfig | str,
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
      model_config: a variant name or config of either family (its ``num_classes`` must be
        >= 10).
      config: training hyper-parameters (its ``order`` must suit the family: a Vim model scans
        one path forward and backward, see :data:`DEFAULT_ORDERS`).
      size: image size (a multiple of 32; for Vim, the config's ``img_size``).
      out: checkpoint directory written with :func:`jaxmamba.storage.checkpoint.save`.
      work_dir: directory of the resumable training checkpoints (``None``: not resumable).
      limit: use only the first ``limit`` training images (for smoke tests).
      model_seed: seed of the model's initialisation; split_seed: seed of the train/test split.
      command: the command line to record.
      progress: show a progress bar.
      overwrite: replace an existing checkpoint at ``out``.

    Returns:
      The record written to ``out/TRAINING.json`` (configs, seeds, accuracy, time, history).

    >>> import tempfile
    >>> from jaxmamba import get_config
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     record = train_digits(get_config("vmamba_test", dims=(8,), depths=(1,)),
    ...                           TrainConfig(epochs=1, batch_size=8, eval_batch_size=8),
    ...                           size=32, limit=16, out=f"{tmp}/model", progress=False)
    >>> record["data"]["n_train"], record["model"]
    (16, 'custom v05_noz, dims 8, depths 1, d_state 1, ssm_ratio 2, 10 classes')
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     record = train_digits(get_config("vim_test", img_size=32, depth=1),
    ...                           TrainConfig(epochs=1, batch_size=8, order="raster"),
    ...                           size=32, limit=16, out=f"{tmp}/model", progress=False)
    >>> record["family"], record["history"]["step"]
    ('vim', [2])
    """
    from jaxmamba.storage import checkpoint

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
        "family": family_of(model.config),
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
    store.write_text_atomic(out / TRAINING_JSON, json.dumps(record, indent=1) + "\n")
    (out / "TRAINING.md").write_text(training_markdown(record))
    return record


def training_markdown(r: dict[str, Any]) -> str:
    """The human-readable ``TRAINING.md`` of a training record (``TRAINING.json``)."""
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
    order = f"`{r['order']}`"
    if r.get("family", "vmamba") == "vim":  # records before the Vim family have no "family"
        what, load = "Digit Vision Mamba (Vim)", "jaxmamba.pretrained.load_vim_digits()"
        order += " (both directions scan its path; the CLS token at scan position M // 2)"
    elif r["order"] == "cross":
        what, load = "Default model", "jaxmamba.load_default()"
    else:
        what = f"Digit model trained in the {r['order']} order"
        load = f'jaxmamba.pretrained.load_order_models(["{r["order"]}"])'
    return f"""# {what}: training record

Produced by `{r["command"]}` on {r["date"]} ({r["environment"]["backend"]}, \
{r["environment"]["cpu_count"]} CPUs, jax {r["environment"]["jax"]}), in \
{r["train_seconds"]:.0f} s of training.

- Model: {r["model"]}, {r["num_params"]:,} parameters, init seed {r["model_seed"]}.
- Data: {r["data"]["name"]}, {r["data"]["image_size"]}x{r["data"]["image_size"]}; stratified split \
(seed {r["data"]["split_seed"]}, {r["data"]["test_fraction"]:.0%} held out): \
{r["data"]["n_train"]} train / {r["data"]["n_test"]} test; normalised \
{r["data"]["normalisation"]}.
- Order: {order}.
- Training: {tc["epochs"]} epochs, batch {tc["batch_size"]}, AdamW peak lr {tc["lr"]} \
(linear warm-up {tc["warmup_epochs"]} epoch, cosine decay to {tc["end_lr_ratio"]} x), \
weight decay {tc["weight_decay"]}, clip {tc["grad_clip"]}, label smoothing \
{tc["label_smoothing"]}, augmentation {tc["augment"]}, seed {tc["seed"]}.
- **Test accuracy: {r["test_accuracy"]:.4f}** ({r["data"]["n_test"]} held-out digits).

Load it with `{load}`; the images it expects come from
`jaxmamba.train.data.load_digits_images({r["data"]["image_size"]}, split="test")`.
Full configs and history: `TRAINING.json`.

| epoch | loss | train acc | test acc |
|---|---|---|---|
{rows}
"""
