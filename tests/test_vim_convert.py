"""Converting official Vision Mamba (Vim) checkpoints: geometry from the position embedding,
named errors, opt-in position-embedding resampling, Orbax round trip and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmamba
from jaxmamba.convert import state_dict_to_model
from jaxmamba.convert.vim_state_dict import (
    detect_vim_fields,
    resample_pos_embed,
    vim_geometry,
    vim_state_dict_to_model,
)
from jaxmamba.errors import CheckpointError
from jaxmamba.models.vim_config import VimConfig
from jaxmamba.storage.checkpoint import load, param_shapes, save

VIM_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official-vim"


def fixture(name: str) -> Path:
    path = VIM_FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"official Vim fixtures not found at {VIM_FIXTURES}")
    return path


def random_state_dict(config: VimConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        k: rng.standard_normal(s).astype(np.float32) * 0.1 for k, s in param_shapes(config).items()
    }


@pytest.mark.torch
@pytest.mark.parametrize(
    "name, img_size, stride",
    [("tiny_p16", 64, 16), ("tiny_s8", 64, 8), ("small_p16_48x80", (48, 80), 16)],
)
def test_fixture_checkpoints_convert_with_their_geometry(name, img_size, stride):
    pytest.importorskip("torch")
    from jaxmamba.convert import load_torch_checkpoint, read_state_dict

    path = fixture(name)
    meta = json.loads((path / "config.json").read_text())
    model = load_torch_checkpoint(path / "ckpt.pth", img_size=img_size)
    c = model.config
    assert c.stride == stride and list(c.grid) == meta["derived"]["grid"]
    assert c.seq_len == meta["derived"]["seq_len"] and c.name == "custom"
    assert model.num_params == meta["derived"]["params"]
    sd = read_state_dict(path / "ckpt.pth")
    assert set(param_shapes(c)) == set(sd)  # the same names: conversion is a renaming
    np.testing.assert_array_equal(
        model.params["layers_0"]["mixer"]["A_b_log"], sd["layers.0.mixer.A_b_log"]
    )
    with pytest.raises(CheckpointError, match="interpolate_pos_embed=True"):
        load_torch_checkpoint(path / "ckpt.pth", img_size=96)
    with pytest.raises(CheckpointError, match="pass img_size"):
        load_torch_checkpoint(path / "ckpt.pth")  # no registered variant of these shapes


def test_geometry_rules():
    fields = dict(embed_dim=192, patch_size=16)
    assert vim_geometry(fields, 196, 224) == ((224, 224), 16)
    assert vim_geometry(fields, 729, 224) == ((224, 224), 8)
    assert vim_geometry(fields, 15, (48, 80)) == ((48, 80), 16)
    # without img_size: the registered variant of these shapes (the released models at 224)
    full = detect_vim_fields(param_shapes(jaxmamba.get_config("vim_small_s8")))[0]
    assert vim_geometry(full, 729) == ((224, 224), 8)
    # one patch of a 16x16 image: every stride that divides 16 reads every pixel
    with pytest.raises(
        CheckpointError, match=r"strides \[1, 2, 4, 8, 16\]: ambiguous, pass stride="
    ):
        vim_geometry(fields, 1, 16)
    assert vim_geometry(fields, 1, 16, stride=16) == ((16, 16), 16)
    with pytest.raises(CheckpointError, match="stride 16: 14x14"):
        vim_geometry(fields, 100, 224)  # 10x10 patches: no stride gives them at 224
    with pytest.raises(CheckpointError, match="img_size must be"):
        vim_geometry(fields, 196, "224")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="smaller than one 16x16 patch"):
        vim_geometry(fields, 1, 8)


def test_variant_and_family_mismatches():
    sd = random_state_dict(jaxmamba.get_config("vim_test"))
    assert state_dict_to_model(sd).config.name == "vim_test"  # registered shapes: no img_size
    assert state_dict_to_model(sd, "vim_test").config.name == "vim_test"
    with pytest.raises(CheckpointError, match="is not 'vim_tiny': embed_dim: 192 given, 32"):
        state_dict_to_model(sd, "vim_tiny")
    with pytest.raises(CheckpointError, match="a Vim model, the variant a VMamba config"):
        state_dict_to_model(sd, jaxmamba.get_config("vmamba_test"))
    with pytest.raises(CheckpointError, match="contradicts the variant"):
        state_dict_to_model(sd, "vim_test", img_size=96)
    vmamba = {
        k: np.zeros(s, np.float32)
        for k, s in param_shapes(jaxmamba.get_config("vmamba_test")).items()
    }
    with pytest.raises(CheckpointError, match="a VMamba model, 'vim_test' a Vim variant"):
        state_dict_to_model(vmamba, "vim_test")
    with pytest.raises(CheckpointError, match="no VSS block keys"):
        state_dict_to_model({"head.weight": np.zeros((2, 3), np.float32)})
    broken = dict(sd)
    del broken["layers.1.mixer.D_b"]
    with pytest.raises(CheckpointError, match=r"missing key: layers\.1\.mixer\.D_b"):
        state_dict_to_model(broken)
    wrapped = {f"module.{k}": v for k, v in sd.items()}  # a DataParallel wrapper's names
    assert state_dict_to_model(wrapped).config.name == "vim_test"
    nan = dict(sd, pos_embed=np.full_like(sd["pos_embed"], np.nan))
    with pytest.raises(CheckpointError, match="NaN or inf"):
        state_dict_to_model(nan)


@pytest.mark.parametrize("source, target", [((4, 4), (7, 7)), ((6, 6), (3, 5)), ((5, 5), (5, 5))])
def test_pos_embed_resampling_is_torch_antialiased_bicubic(source, target):
    torch = pytest.importorskip("torch")
    e = 3
    s = VimConfig(img_size=source, patch_size=1, stride=1)
    t = VimConfig(img_size=target, patch_size=1, stride=1)
    pos = np.random.default_rng(1).standard_normal((1, s.seq_len, e)).astype(np.float32)
    ours = resample_pos_embed(pos, s, t)
    assert ours.shape == (1, t.seq_len, e)
    np.testing.assert_array_equal(ours[0, t.cls_position], pos[0, s.cls_position])  # CLS kept
    grid = torch.from_numpy(np.delete(pos[0], s.cls_position, axis=0).reshape(*source, e))
    ref = torch.nn.functional.interpolate(
        grid.permute(2, 0, 1)[None], size=target, mode="bicubic", antialias=True,
        align_corners=False,
    )[0].permute(1, 2, 0).reshape(-1, e).numpy()  # fmt: skip
    np.testing.assert_allclose(np.delete(ours[0], t.cls_position, axis=0), ref, atol=1e-5)


def test_interpolation_only_on_request():
    config = jaxmamba.get_config("vim_test")
    sd = random_state_dict(config)
    with pytest.raises(CheckpointError, match="interpolate_pos_embed=True"):
        vim_state_dict_to_model(sd, img_size=96)
    model = vim_state_dict_to_model(sd, img_size=96, interpolate_pos_embed=True)
    assert model.config.img_size == (96, 96) and model.config.stride == 16
    assert model.params["pos_embed"].shape == (1, 37, 32)
    assert jaxmamba.forward(model, jnp.zeros((1, 96, 96, 3))).shape == (1, 10)
    same = vim_state_dict_to_model(sd, img_size=64, interpolate_pos_embed=True)
    np.testing.assert_array_equal(same.params["pos_embed"], sd["pos_embed"])  # nothing to do


def test_orbax_round_trip(tmp_path):
    model = vim_state_dict_to_model(random_state_dict(jaxmamba.get_config("vim_test")), img_size=64)
    custom = jaxmamba.create_model(VimConfig(embed_dim=16, depth=1, img_size=(32, 48), stride=8))
    for m, name in ((model, "a"), (custom, "b")):
        loaded = load(save(m, tmp_path / name))
        assert loaded.config == m.config and isinstance(loaded.config, VimConfig)
        images = jnp.asarray(
            np.random.default_rng(0).standard_normal((2, *m.config.img_size, 3)), jnp.float32
        )
        np.testing.assert_array_equal(jaxmamba.forward(loaded, images), jaxmamba.forward(m, images))
    text = json.loads((tmp_path / "b" / "config.json").read_text())
    assert text["family"] == "vim" and text["config"]["img_size"] == [32, 48]


@pytest.mark.torch
def test_command_line(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from jaxmamba.convert.cli import main

    sd = random_state_dict(VimConfig(embed_dim=16, depth=1, img_size=(32, 48), num_classes=3))
    torch.save({"model": {k: torch.from_numpy(v) for k, v in sd.items()}}, tmp_path / "vim.pth")
    assert main([str(tmp_path / "vim.pth"), "--out", str(tmp_path / "x")]) == 2
    assert "pass img_size" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    args = [str(tmp_path / "vim.pth"), "--out", str(tmp_path / "ok"), "--img-size", "32x48"]
    assert main(args) == 0
    assert "Vim, embed_dim 16" in capsys.readouterr().out
    loaded = load(tmp_path / "ok")
    assert loaded.config.img_size == (32, 48) and loaded.config.grid == (2, 3)
