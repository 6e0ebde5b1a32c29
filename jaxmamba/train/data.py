"""Small image data that ships with a package (nothing is downloaded), augmentation and batching.

The data set is scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: 1797 grey
8x8 images of the digits 0-9, pixel values 0-16, about 180 per class), upsampled so that a VMamba
can take them. Images come back as host NumPy arrays ``(N, S, S, 3)`` (S the image size);
:func:`augment` is a jitted JAX function and :func:`batches` a plain iterator, so that a training
loop can feed batches to a jitted step.

Normalisation: ``x = (pixel / 16 - DIGITS_MEAN) / DIGITS_STD`` with the pixel mean and standard
deviation of all 1797 digits upsampled to 64x64 (at 32x32 the standard deviation is 0.3236, so
the normalised images have mean 0 and a standard deviation of 0.997 there). The background (pixel
0) becomes ``DIGITS_BACKGROUND`` = -0.9407.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxmamba.errors import DataError, require

__all__ = [
    "DIGITS_BACKGROUND",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "DataError",
    "SPLITS",
    "TEST_FRACTION",
    "augment",
    "batches",
    "load_digits_images",
    "split_indices",
]

DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3245
DIGITS_BACKGROUND = (0.0 - DIGITS_MEAN) / DIGITS_STD
SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.2  # of every class, held out for the "test" split


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 8, 8) float64 in 0..16, labels (1797,) int)`` from scikit-learn."""
    load_digits = require("sklearn.datasets", "plot", "the bundled digits").load_digits
    digits = load_digits()
    return np.asarray(digits.images), np.asarray(digits.target)


@functools.lru_cache(maxsize=4)
def _digits(size: int) -> tuple[np.ndarray, np.ndarray]:
    """All digits upsampled to ``size`` and normalised, grey: ``(1797, size, size)`` float32."""
    images, labels = _sklearn_digits()
    grey = jnp.asarray(images / 16.0, jnp.float32)
    up = jax.image.resize(grey, (grey.shape[0], size, size), method="bilinear")
    up = (np.asarray(up, np.float32) - np.float32(DIGITS_MEAN)) / np.float32(DIGITS_STD)
    up.setflags(write=False)
    labels = labels.astype(np.int32)
    labels.setflags(write=False)
    return up, labels


def split_indices(
    labels, *, test_fraction: float = TEST_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, stratified train/test split of ``labels``: sorted ``(train_idx, test_idx)``.

    Of each class, ``round(test_fraction * count)`` members (chosen by NumPy's legacy
    ``RandomState(seed)``, whose stream is frozen across NumPy versions) go to the test split.

    >>> train, test = split_indices(np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]), test_fraction=0.2)
    >>> len(train), len(test), sorted(np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])[test].tolist())
    (8, 2, [0, 1])
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    chosen = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        chosen.append(members[: int(round(test_fraction * len(members)))])
    test = np.sort(np.concatenate(chosen))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def load_digits_images(
    size: int = 32, *, split: str = "train", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, upsampled (bilinear) to ``size``, grey to RGB, normalised.

    Args:
      size: output height and width, a positive multiple of 32 (VMamba's total stride), e.g. 32
        or 64.
      split: ``"train"`` (80% of every class: 1438), ``"test"`` (the other 20%: 359) or
        ``"all"`` (1797).
      seed: seed of the stratified split (:func:`split_indices`); the same seed gives the same
        split on every machine.

    Returns:
      ``(images, labels)``: ``(N, size, size, 3)`` float32 normalised as in the module docstring
      (the three channels are equal), and ``(N,)`` int32 classes 0-9.

    >>> images, labels = load_digits_images(32, split="test")
    >>> images.shape, images.dtype, labels.shape
    ((359, 32, 32, 3), dtype('float32'), (359,))
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32 or size % 32:
        raise DataError(f"size must be a positive multiple of 32 (e.g. 32 or 64), got {size!r}")
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    grey, labels = _digits(int(size))
    if split != "all":
        train, test = split_indices(labels, seed=seed)
        idx = train if split == "train" else test
        grey, labels = grey[idx], labels[idx]
    images = np.repeat(grey[..., None], 3, axis=-1)
    return images, np.array(labels)


@functools.partial(jax.jit, static_argnames=("max_shift",))
def augment(key, images, *, max_shift: int | None = None, contrast: float = 0.1):
    """Random translation and contrast jitter of a batch, one draw per image (no flips).

    Each image is padded by ``max_shift`` pixels with its own minimum (the background of a digit)
    and cropped back at a random offset, i.e. translated by up to ``max_shift`` pixels each way;
    then its contrast about that background is scaled by a factor drawn from
    ``[1 - contrast, 1 + contrast]``. Digits are not flip-invariant, so there are no flips.

    Args:
      key: a PRNG key; the same key gives the same result.
      images: ``(B, H, W, C)`` float.
      max_shift: largest shift in pixels (static); default ``H // 8``, one pixel of the 8x8
        originals.
      contrast: largest relative change of contrast.

    Returns:
      ``(B, H, W, C)`` images of the same dtype.

    >>> x = jnp.zeros((2, 32, 32, 3))
    >>> augment(jax.random.PRNGKey(0), x).shape
    (2, 32, 32, 3)
    """
    if images.ndim != 4:
        raise DataError(f"images must be (B, H, W, C), got shape {images.shape}")
    b, h, w, c = images.shape
    s = h // 8 if max_shift is None else max_shift
    if s < 0:
        raise DataError(f"max_shift must be >= 0, got {s}")
    k_shift, k_contrast = jax.random.split(key)
    background = jnp.min(images, axis=(1, 2, 3))  # (B,)
    shifts = jax.random.randint(k_shift, (b, 2), 0, 2 * s + 1)  # crop offsets in the padded image

    def translate(image, bg, offset):
        padded = jnp.pad(image - bg, ((s, s), (s, s), (0, 0)))  # background 0 after the shift
        return jax.lax.dynamic_slice(padded, (offset[0], offset[1], 0), (h, w, c))

    moved = jax.vmap(translate)(images, background, shifts)  # (B, H, W, C), background 0
    scale = 1.0 + contrast * jax.random.uniform(k_contrast, (b,), minval=-1.0, maxval=1.0)
    out = background[:, None, None, None] + scale[:, None, None, None] * moved
    return out.astype(images.dtype)


def batches(
    images, labels, batch_size: int, *, key=None, shuffle: bool = True, drop_last: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate over ``(images (batch_size, ...), labels (batch_size,))`` batches of a data set.

    Args:
      images, labels: arrays with the same first dimension N.
      batch_size: examples per batch.
      key: PRNG key of the order (``jax.random.permutation``); required when ``shuffle``.
      shuffle: visit the examples in a random order (else in order).
      drop_last: skip the final batch when it is smaller than ``batch_size``.

    >>> x, y = np.zeros((10, 32, 32, 3), np.float32), np.arange(10)
    >>> [b[1].tolist() for b in batches(x, y, 4, shuffle=False)]
    [[0, 1, 2, 3], [4, 5, 6, 7]]
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels):
        raise DataError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise DataError(f"batch_size must be an int, got {batch_size!r}")
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    n = len(images)
    if shuffle:
        if key is None:
            raise DataError("shuffle=True needs a PRNG key (key=jax.random.PRNGKey(...))")
        order = np.asarray(jax.random.permutation(key, n))
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield images[idx], labels[idx]
