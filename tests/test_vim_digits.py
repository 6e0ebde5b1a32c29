"""The shipped digit Vim (jaxmamba/vim_digits_model) and the recipe that made it.

The shipped model loads as the registered ``vim_digits`` config, recomputes a held-out accuracy
well above chance, refuses a tampered copy, and its command's recipe is deterministic; the
family-neutral parts of the training recipe (the weight-decay mask, the record) are checked too.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmamba
from jaxmamba.errors import CheckpointError, TrainError
from jaxmamba.models.params import digest
from jaxmamba.models.vim_config import VIM_DIGITS, VimConfig
from jaxmamba.pretrained import VIM_DIGITS_DIR, load_vim_digits
from jaxmamba.storage import checkpoint
from jaxmamba.train import data as D
from jaxmamba.train.evaluate import evaluate
from jaxmamba.train.optim import TrainConfig, weight_decay_mask
from jaxmamba.train.recipe import DEFAULT_ORDERS, TRAINING_JSON, train_digits, training_markdown

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python examples/train_default.py --family vim --out jaxmamba/vim_digits_model"


def _record() -> dict:
    return json.loads((VIM_DIGITS_DIR / TRAINING_JSON).read_text())


def _example():
    spec = importlib.util.spec_from_file_location(
        "train_default", ROOT / "examples/train_default.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


# ---- the shipped model ------------------------------------------------------------------------


def test_shipped_vim_loads_as_the_registered_config():
    model = load_vim_digits()
    assert isinstance(model.config, VimConfig)
    assert model.config == VIM_DIGITS == jaxmamba.get_config("vim_digits")
    assert model.config.grid == (8, 8) and model.config.seq_len == 65
    assert load_vim_digits() is model  # cached: loaded once per process
    size = sum(f.stat().st_size for f in VIM_DIGITS_DIR.rglob("*") if f.is_file())
    assert size < 1.5e6  # small, like the order models
    fresh = jaxmamba.create_model("vim_digits", seed=_record()["model_seed"])
    assert digest(fresh.params) != digest(model.params)  # trained, not the initialisation


def test_shipped_vim_record():
    record = _record()
    assert record["family"] == "vim" and record["order"] == DEFAULT_ORDERS["vim"]
    assert record["command"].startswith(COMMAND)
    assert record["model"] == VIM_DIGITS.describe()
    assert record["data"]["image_size"] == VIM_DIGITS.img_size[0]
    assert record["test_accuracy"] >= 0.9  # chance is 0.1
    markdown = (VIM_DIGITS_DIR / "TRAINING.md").read_text()
    assert markdown == training_markdown(record)
    assert "load_vim_digits()" in markdown and record["command"] in markdown


def test_shipped_vim_held_out_accuracy():
    """A held-out slice (every 3rd test digit), recomputed: well above chance and close to the
    recorded accuracy."""
    record = _record()
    data = record["data"]
    x, y = D.load_digits_images(data["image_size"], split="test", seed=data["split_seed"])
    x, y = x[::3], y[::3]
    accuracy = evaluate(load_vim_digits(), x, y, order=record["order"], batch_size=len(y))
    assert accuracy >= 0.85
    assert accuracy >= record["test_accuracy"] - 0.1


def test_shipped_vim_default_order_is_its_training_order():
    """``forward`` without an order (Vim's official path) equals the recorded order's logits."""
    model = load_vim_digits()
    x, _ = D.load_digits_images(64, split="test")
    a = jaxmamba.forward(model, jnp.asarray(x[:4]))
    b = jaxmamba.forward(model, jnp.asarray(x[:4]), order=_record()["order"])
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_tampered_copy_is_refused(tmp_path):
    copy = tmp_path / "vim"
    shutil.copytree(VIM_DIGITS_DIR, copy)
    assert checkpoint.load(copy).config == VIM_DIGITS  # the untouched copy loads
    shards = sorted(p for p in (copy / "params").rglob("*") if p.is_file() and p.stat().st_size)
    victim = max(shards, key=lambda p: p.stat().st_size)  # the largest: parameter bytes
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    victim.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="damaged: its checksum does not match"):
        checkpoint.load(copy)


# ---- the recipe for a Vim ---------------------------------------------------------------------


def test_reproduce_command_is_deterministic(tmp_path):
    """The shipped command's recipe on a tiny run (1 epoch, 4 updates): same parameters twice."""
    example = _example()
    argv = ["--family", "vim", "--epochs", "1", "--limit", "32", "--batch-size", "8"]
    argv += ["--dims", "16", "--depths", "1", "--no-progress"]
    first = example.main([*argv, "--out", str(tmp_path / "a")])
    second = example.main([*argv, "--out", str(tmp_path / "b")])
    assert first["family"] == "vim" and first["order"] == "raster"
    assert first["history"]["step"] == [4]
    assert first["model_config"]["embed_dim"] == 16 and first["model_config"]["depth"] == 1
    a, b = checkpoint.load(tmp_path / "a"), checkpoint.load(tmp_path / "b")
    assert isinstance(a.config, VimConfig) and a.config == b.config
    assert digest(a.params) == digest(b.params)
    init = jaxmamba.create_model(a.config, seed=0)
    assert digest(init.params) != digest(a.params)  # the run did update the parameters
    assert first["history"]["loss"] == second["history"]["loss"]


def test_vim_recipe_refuses_a_size_it_cannot_take(tmp_path):
    with pytest.raises(TrainError, match="64x64 images only"):
        train_digits(
            "vim_test", TrainConfig(epochs=1, batch_size=8, order="raster"),
            size=32, limit=16, out=tmp_path / "m", progress=False,
        )  # fmt: skip


def test_weight_decay_mask_of_a_vim():
    """Vim: no decay on the position embedding, CLS token, norms and biases (the official
    no_weight_decay and timm's 1-D rule); the projections and A_log decay."""
    params = jaxmamba.create_model("vim_test").params
    mask = weight_decay_mask(params)
    assert mask["pos_embed"] is False and mask["cls_token"] is False
    assert mask["layers_0"]["norm"]["weight"] is False
    assert mask["layers_0"]["mixer"]["D"] is False and mask["head"]["bias"] is False
    assert mask["layers_0"]["mixer"]["in_proj"]["weight"] is True
    assert mask["layers_0"]["mixer"]["A_log"] is True and mask["head"]["weight"] is True


@pytest.mark.parametrize("variant", ["vmamba_test", "vanilla_vmamba_test", "default"])
def test_weight_decay_mask_of_a_vmamba_is_unchanged(variant):
    """The names added for Vim occur in no VMamba: its mask is the official VMamba rule's, so
    the shipped VMamba models train as before, bit for bit."""
    import jax

    from jaxmamba.pretrained import default_model_config

    config = default_model_config() if variant == "default" else variant
    params = jaxmamba.create_model(config).params

    def vmamba_rule(path, leaf) -> bool:  # the rule before the Vim names were added
        return jnp.ndim(leaf) >= 2 and path[-1].key not in {"bias", "A_logs", "Ds"}

    expected = jax.tree_util.tree_map_with_path(vmamba_rule, params)
    assert weight_decay_mask(params) == expected
    op = expected["layers_0"]["blocks_0"]["op"]
    assert op["A_logs"] is False and op["Ds"] is False and op["in_proj"]["weight"] is True


def test_vmamba_records_keep_their_markdown():
    """Records written before the family field render as before (the shipped VMamba ones)."""
    from jaxmamba.pretrained import DEFAULT_MODEL_DIR, order_model_dir

    for folder in (DEFAULT_MODEL_DIR, order_model_dir("spiral")):
        record = json.loads((folder / TRAINING_JSON).read_text())
        assert training_markdown(record) == (folder / "TRAINING.md").read_text()
