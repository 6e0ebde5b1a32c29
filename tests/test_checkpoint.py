"""Orbax checkpoints of a Model: round trip, overwrite refusal, atomicity, damaged directories."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmamba
from jaxmamba.models import params as P
from jaxmamba.storage import store
from jaxmamba.storage.checkpoint import CheckpointError, load, param_shapes, save

# The same config as the converter tests' s1 family, so a forward compiled there is reused here.
CONFIG = jaxmamba.get_config("vmamba_tiny_s1l8", dims=32, depths=(1, 1, 2, 1), num_classes=10)


def random_model(config=CONFIG, seed: int = 0) -> jaxmamba.Model:
    """A model with random float32 parameters (no init computation)."""
    rng = np.random.default_rng(seed)
    flat = {
        P.key_to_path(k): jnp.asarray(rng.standard_normal(s, np.float32) * 0.1)
        for k, s in param_shapes(config).items()
    }
    return jaxmamba.Model(config, P.unflatten(flat))


def assert_same_params(a, b):
    fa, fb = P.flatten(a), P.flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=str(k))


def siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_round_trip_restores_config_params_and_forward(tmp_path):
    model = random_model()
    out = save(model, tmp_path / "ckpt")
    assert out == (tmp_path / "ckpt").absolute()
    assert siblings(out) == ["ckpt"]  # no temporary directory left beside it
    payload = json.loads((out / "config.json").read_text())
    assert payload["format"] == "jaxmamba" and payload["config"]["depths"] == [1, 1, 2, 1]

    loaded = load(out)
    assert loaded.config == model.config and isinstance(loaded.config.depths, tuple)
    expected = jax.eval_shape(lambda: jaxmamba.create_model(CONFIG)).params
    assert jax.tree.structure(loaded.params) == jax.tree.structure(expected)
    for leaf in jax.tree.leaves(loaded.params):
        assert isinstance(leaf, jax.Array) and leaf.dtype == jnp.float32
    assert_same_params(loaded.params, model.params)

    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 64, 64, 3)), jnp.float32)
    np.testing.assert_array_equal(
        np.asarray(jaxmamba.forward(loaded, x)), np.asarray(jaxmamba.forward(model, x))
    )


def test_registered_name_and_non_float32_leaves_round_trip(tmp_path):
    config = jaxmamba.get_config("vanilla_vmamba_test")
    model = random_model(config, seed=3)
    half = jax.tree.map(lambda x: np.asarray(x).astype(jnp.bfloat16), model.params)
    loaded = load(save(jaxmamba.Model(config, half), tmp_path / "c"))
    assert loaded.config.name == "vanilla_vmamba_test"
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(loaded.params))
    assert_same_params(loaded.params, jax.tree.map(lambda x: x.astype(np.float32), half))


def test_refuses_to_overwrite_unless_asked(tmp_path):
    first, second = random_model(seed=0), random_model(seed=1)
    save(first, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="already exists.*overwrite=True"):
        save(second, tmp_path / "ckpt")
    assert_same_params(load(tmp_path / "ckpt").params, first.params)

    save(second, tmp_path / "ckpt", overwrite=True)
    assert_same_params(load(tmp_path / "ckpt").params, second.params)
    assert siblings(tmp_path / "ckpt") == ["ckpt"]


def test_saves_into_an_existing_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    model = random_model()
    assert_same_params(load(save(model, tmp_path / "empty")).params, model.params)


def test_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        save(random_model(), tmp_path / "file", overwrite=True)
    assert (tmp_path / "file").read_text() == "x"


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(*args):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(store, "_sha256", fail)  # fails after Orbax wrote the parameters
    with pytest.raises(CheckpointError, match="disk full"):
        save(random_model(), tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CheckpointError, match="disk full"):  # new parent folders go too
        save(random_model(), tmp_path / "new" / "sub" / "ckpt")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="disk full"):  # an empty target folder stays
        save(random_model(), tmp_path / "empty")
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]
    assert list((tmp_path / "empty").iterdir()) == []


def test_failed_overwrite_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    first = random_model(seed=0)
    save(first, tmp_path / "ckpt")

    def fail(*args):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(store, "_sha256", fail)
    with pytest.raises(CheckpointError, match="simulated failure"):
        save(random_model(seed=1), tmp_path / "ckpt", overwrite=True)
    monkeypatch.undo()
    assert siblings(tmp_path / "ckpt") == ["ckpt"]
    assert_same_params(load(tmp_path / "ckpt").params, first.params)


@pytest.mark.parametrize("bad", ["string leaf", "integer leaf", "wrong shape", "missing"])
def test_unsaveable_models_are_refused_before_writing(tmp_path, bad):
    model = random_model()
    flat = P.flatten(model.params)
    key = ("layers_0", "blocks_0", "op", "Ds")
    if bad == "string leaf":
        flat[key] = "not an array"
    elif bad == "integer leaf":
        flat[key] = jnp.zeros(flat[key].shape, jnp.int32)
    elif bad == "wrong shape":
        flat[key] = jnp.zeros((3,))
    else:
        del flat[key]
    with pytest.raises(CheckpointError, match=r"layers\.0\.blocks\.0\.op\.Ds"):
        save(jaxmamba.Model(CONFIG, P.unflatten(flat)), tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


def test_save_needs_a_model(tmp_path):
    with pytest.raises(CheckpointError, match="Model"):
        save({"params": {}}, tmp_path / "ckpt")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save(random_model(), tmp_path_factory.mktemp("saved") / "ckpt")


def copy_of(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "copy")


def test_load_missing_or_not_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nope")
    (tmp_path / "f").write_text("")
    with pytest.raises(CheckpointError, match="not a directory"):
        load(tmp_path / "f")
    with pytest.raises(CheckpointError, match="no config.json"):
        load(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"config": {}}', "not a jaxmamba checkpoint config"),
        ('{"format": "jaxmamba", "format_version": 99, "config": {}}', "format_version 99"),
        ('{"format": "jaxmamba", "format_version": 1, "config": {"depth": [1]}}', "unknown"),
        (
            '{"format": "jaxmamba", "format_version": 1, "config": {"depths": [1], "dims": [0]}}',
            "invalid config",
        ),
    ],
)
def test_load_rejects_a_bad_config(saved, tmp_path, text, message):
    path = copy_of(saved, tmp_path)
    (path / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=message):
        load(path)


def test_load_rejects_a_config_that_does_not_match_the_params(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    payload = json.loads((path / "config.json").read_text())
    payload["config"]["d_state"] = 2
    (path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(
        CheckpointError, match=r"does not match .*wrong shapes?: layers\.0\.blocks\.0\.op\.A_logs"
    ):
        load(path)


def test_load_rejects_missing_or_damaged_params(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    for f in (path / "params").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage" * 3)
    with pytest.raises(CheckpointError, match="cannot restore"):
        load(path)
    shutil.rmtree(path / "params")
    with pytest.raises(CheckpointError, match="no params/"):
        load(path)
