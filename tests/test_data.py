"""Tests of jaxmamba.train.data: the bundled digits, augmentation and batching."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmamba.train import data as D


@pytest.fixture(scope="module")
def digits32():
    return {split: D.load_digits_images(32, split=split) for split in D.SPLITS}


def test_shapes_dtypes_and_channels(digits32):
    sizes = {"train": 1438, "test": 359, "all": 1797}
    for split, (images, labels) in digits32.items():
        assert images.shape == (sizes[split], 32, 32, 3) and images.dtype == np.float32
        assert labels.shape == (sizes[split],) and labels.dtype == np.int32
        assert set(np.unique(labels).tolist()) == set(range(10))
        np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey as RGB
    images, labels = D.load_digits_images(64, split="test")
    assert images.shape == (359, 64, 64, 3)
    np.testing.assert_array_equal(labels, digits32["test"][1])


def test_normalisation(digits32):
    images, _ = digits32["all"]
    assert abs(float(images.mean())) < 0.01
    assert abs(float(images.std()) - 1.0) < 0.01
    assert float(images.min()) == pytest.approx(D.DIGITS_BACKGROUND, abs=1e-5)
    assert float(images.max()) == pytest.approx((1 - D.DIGITS_MEAN) / D.DIGITS_STD, abs=1e-5)
    big, _ = D.load_digits_images(64, split="all")
    assert abs(float(big.mean())) < 0.01 and abs(float(big.std()) - 1.0) < 0.002


def test_upsampling_matches_sklearn():
    from sklearn.datasets import load_digits

    raw = load_digits()
    images, labels = D.load_digits_images(32, split="all")
    np.testing.assert_array_equal(labels, raw.target)
    # bilinear 4x upsampling with half-pixel centres: each 4x4 block's centre 2x2 averages to
    # within interpolation of the original pixel; the block means reproduce the 8x8 image
    pixels = images[..., 0] * D.DIGITS_STD + D.DIGITS_MEAN
    blocks = pixels.reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4))
    corr = np.corrcoef(blocks.ravel(), raw.images.ravel() / 16)[0, 1]
    assert corr > 0.97


def test_split_disjoint_stratified_deterministic(digits32):
    labels = digits32["all"][1]
    train, test = D.split_indices(labels, seed=0)
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(len(labels)))
    counts = np.bincount(labels)
    np.testing.assert_array_equal(np.bincount(labels[test]), np.round(0.2 * counts).astype(int))
    again = D.split_indices(labels, seed=0)
    np.testing.assert_array_equal(again[1], test)
    other = D.split_indices(labels, seed=1)[1]
    assert not np.array_equal(other, test)
    # the loader uses the same split
    all_images = digits32["all"][0]
    np.testing.assert_array_equal(digits32["test"][0], all_images[test])
    np.testing.assert_array_equal(digits32["train"][1], labels[train])
    seeded = D.load_digits_images(32, split="test", seed=1)[1]
    np.testing.assert_array_equal(seeded, labels[other])


def test_augment_keeps_shape_and_is_deterministic_per_key(digits32):
    x = jnp.asarray(digits32["test"][0][:8])
    a = D.augment(jax.random.PRNGKey(0), x)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, D.augment(jax.random.PRNGKey(0), x))
    b = D.augment(jax.random.PRNGKey(1), x)
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(x))
    same = D.augment(jax.random.PRNGKey(3), x, max_shift=0, contrast=0)
    np.testing.assert_allclose(same, x, atol=1e-6)  # bg + (x - bg): rounding only


def test_augment_translates_within_max_shift():
    x = np.full((64, 32, 32, 1), -1.0, np.float32)
    x[:, 14:18, 12:16] = 2.0  # a bright square well inside the image
    out = np.asarray(D.augment(jax.random.PRNGKey(0), jnp.asarray(x), max_shift=3, contrast=0.0))
    shifts = set()
    for img in out:
        rows, cols = np.nonzero(img[..., 0] > 0)
        assert len(rows) == 16 and np.all(img[img < 0] == -1.0)  # moved whole, background kept
        dr, dc = rows.min() - 14, cols.min() - 12
        assert abs(dr) <= 3 and abs(dc) <= 3
        shifts.add((int(dr), int(dc)))
    assert len(shifts) > 10  # one draw per image


def test_augment_contrast_about_background():
    x = np.zeros((16, 32, 32, 3), np.float32) - 1.0
    x[:, 10:20, 10:20] = 1.0
    out = np.asarray(D.augment(jax.random.PRNGKey(0), jnp.asarray(x), max_shift=0, contrast=0.2))
    np.testing.assert_allclose(out[:, 0, 0], -1.0)  # background unchanged
    fg = out[:, 15, 15, 0] + 1.0  # foreground contrast 2 scaled by [0.8, 1.2]
    assert np.all((fg >= 1.6 - 1e-5) & (fg <= 2.4 + 1e-5)) and np.ptp(fg) > 0.05


def test_batches():
    x = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 3), np.float32)
    y = np.arange(10)
    plain = list(D.batches(x, y, 4, shuffle=False))
    assert [b[1].tolist() for b in plain] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [len(b[1]) for b in D.batches(x, y, 4, shuffle=False, drop_last=False)] == [4, 4, 2]
    k = jax.random.PRNGKey(0)
    first = [b[1].tolist() for b in D.batches(x, y, 3, key=k)]
    assert first == [b[1].tolist() for b in D.batches(x, y, 3, key=k)]
    assert first != [b[1].tolist() for b in D.batches(x, y, 3, key=jax.random.PRNGKey(1))]
    seen = np.concatenate(first)
    assert len(seen) == 9 and len(set(seen.tolist())) == 9
    for bx, by in D.batches(x, y, 3, key=k):
        np.testing.assert_array_equal(bx[:, 0, 0, 0], by)  # images stay with their labels


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: D.load_digits_images(48), "multiple of 32"),
        (lambda: D.load_digits_images(0), "multiple of 32"),
        (lambda: D.load_digits_images("32"), "multiple of 32"),
        (lambda: D.load_digits_images(32, split="val"), "split must be one of"),
        (lambda: D.split_indices([0, 1], test_fraction=1.5), "test_fraction"),
        (lambda: list(D.batches(np.zeros((4, 2)), np.zeros(3), 2, shuffle=False)), "length"),
        (lambda: list(D.batches(np.zeros((4, 2)), np.zeros(4), 0, shuffle=False)), ">= 1"),
        (lambda: list(D.batches(np.zeros((4, 2)), np.zeros(4), 2)), "PRNG key"),
        (lambda: D.augment(jax.random.PRNGKey(0), jnp.zeros((4, 4, 3))), r"\(B, H, W, C\)"),
    ],
)
def test_errors(call, match):
    with pytest.raises(D.DataError, match=match):
        call()
    assert issubclass(D.DataError, ValueError)
