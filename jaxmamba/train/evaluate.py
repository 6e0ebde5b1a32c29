"""Evaluation of a classifier: top-1 accuracy and mean cross-entropy on labelled images."""

from __future__ import annotations

import numpy as np

from jaxmamba.errors import TrainError
from jaxmamba.models.model import Model, check_images, forward

__all__ = ["check_labelled", "evaluate", "evaluate_metrics"]


def check_labelled(data, what: str, model: Model) -> tuple[np.ndarray, np.ndarray]:
    """``(images, int32 labels)`` of ``data = (images (N, H, W, 3), labels (N,))``, checked for
    ``model`` (raises :class:`~jaxmamba.errors.TrainError` naming ``what``)."""
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

    >>> from jaxmamba import create_model
    >>> m = create_model("vmamba_test", dims=(8,), depths=(1,))
    >>> r = evaluate_metrics(m, np.zeros((8, 32, 32, 3)), np.arange(8))
    >>> sorted(r), 0.0 <= r["accuracy"] <= 1.0, r["loss"] > 0
    (['accuracy', 'loss'], True, True)
    """
    images, labels = check_labelled((images, labels), "evaluate", model)
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

    >>> from jaxmamba import create_model
    >>> m = create_model("vmamba_test", dims=(8,), depths=(1,))
    >>> 0.0 <= evaluate(m, np.zeros((8, 32, 32, 3)), np.arange(8)) <= 1.0
    True
    """
    return evaluate_metrics(model, images, labels, order=order, batch_size=batch_size)["accuracy"]
