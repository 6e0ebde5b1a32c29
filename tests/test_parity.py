"""Parity with the official VMamba code, on the shared reference fixtures.

Each fixture was made by running the official PyTorch code (see the fixtures' README): an
official-format checkpoint, inputs with their logits, the hidden attention of every block, and
the scan tensors of the first and last blocks.  Every comparison is ``max|ours − ref| / max|ref|``
≤ 1e-5 in float32, and a failure names the first place where the values part, in forward order.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FIXTURE_NAMES, fixture_dir, rel_err

import jaxmamba
from jaxmamba.attention.extract import extract_attention
from jaxmamba.kernels import selective_scan
from jaxmamba.models.ss2d import cross_scan, scan_inputs

pytest.importorskip("torch")
from jaxmamba.convert import load_torch_checkpoint  # noqa: E402

pytestmark = pytest.mark.torch
TOL = 1e-5
SIZES = ("64x64", "64x96")


@pytest.fixture(scope="module", params=FIXTURE_NAMES)
def official(request):
    folder = fixture_dir(request.param)
    model = load_torch_checkpoint(folder / "ckpt.pth")
    return request.param, folder, model


def first_mismatch(checks):
    """``checks``: ``[(place, ours, ref)]`` in forward order → message for the first > TOL."""
    worst = []
    for place, ours, ref in checks:
        if np.shape(ours) != np.shape(ref):
            return f"{place}: shape {np.shape(ours)} != official {np.shape(ref)}"
        err = rel_err(ours, ref)
        worst.append(err)
        if not err <= TOL:
            return f"{place}: relative error {err:.2e} > {TOL:.0e} (first place where values part)"
    return None


def test_config_detected_from_checkpoint(official):
    name, folder, model = official
    meta = json.loads((folder / "config.json").read_text())
    kw = meta["vssm_kwargs"]
    c = model.config
    assert c.depths == tuple(kw["depths"]) and c.dims[0] == kw["dims"]
    assert c.d_state == kw["ssm_d_state"] and c.ssm_ratio == kw["ssm_ratio"]
    assert c.forward_type == kw["forward_type"] and c.num_classes == kw["num_classes"]
    assert c.downsample == kw["downsample_version"] and c.patch_embed == kw["patchembed_version"]
    assert c.mlp_ratio == kw["mlp_ratio"] and c.conv_bias == kw["ssm_conv_bias"]
    assert c.name == "custom"
    assert c.describe().startswith(f"custom {kw['forward_type']}, dims 32, depths 1-1-2-1")


@pytest.mark.parametrize("size", SIZES)
def test_logits_and_attention(official, size):
    name, folder, model = official
    io = np.load(folder / f"io_{size}.npz")
    ref = np.load(folder / f"attn_{size}.npz")
    images = jnp.asarray(io["x_nhwc"])
    maps = extract_attention(model, images)
    checks = [(f"{name} {size} {b} attention", maps[b], ref[b]) for b in model.config.block_names()]
    if "layers.0.blocks.0.routes" in ref.files:
        each = extract_attention(model, images, blocks="layers.0.blocks.0", route_mode="each")
        checks.insert(
            0, (f"{name} {size} layers.0.blocks.0 routes", each["layers.0.blocks.0"],
                ref["layers.0.blocks.0.routes"]),
        )  # fmt: skip
    checks.append((f"{name} {size} logits", jaxmamba.forward(model, images), io["logits"]))
    assert set(maps) == {k for k in ref.files if not k.endswith(".routes")}
    problem = first_mismatch(checks)
    assert problem is None, problem


@pytest.mark.parametrize("size", SIZES)
def test_scan_tensors_of_first_and_last_block(official, size):
    name, folder, model = official
    io = np.load(folder / f"io_{size}.npz")
    scan = np.load(folder / f"scan_{size}.npz")
    blocks = sorted({k.rsplit(".", 1)[0] for k in scan.files})
    _, cache = jaxmamba.run_with_cache(model, jnp.asarray(io["x_nhwc"]), blocks=blocks)
    checks = []
    for block in model.config.block_names():  # forward order
        if block not in blocks:
            continue
        ref = {k.rsplit(".", 1)[1]: scan[k] for k in scan.files if k.startswith(block + ".")}
        h, w = int(ref["H"]), int(ref["W"])
        _, i, _, j = block.split(".")
        op = model.params[f"layers_{i}"][f"blocks_{j}"]["op"]
        x = cache[block]["x"]
        s = scan_inputs(op, cross_scan(x, jaxmamba.make_routes("cross", h, w)))
        y_scan = selective_scan(*s, delta_softplus=True)
        where = f"{name} {size} {block}"
        checks += [
            (f"{where} u (scan input)", s.u, ref["u"]),
            (f"{where} delta", s.delta, ref["delta"]),
            (f"{where} delta_bias", s.delta_bias, ref["delta_bias"]),
            (f"{where} A", s.A, ref["A"]),
            (f"{where} D", s.D, ref["D"]),
            (f"{where} B", s.B, ref["B"]),
            (f"{where} C", s.C, ref["C"]),
            (f"{where} y_scan", y_scan, ref["y_scan"]),
            (f"{where} y_merged", cache[block]["y"], ref["y_merged"]),
        ]
    problem = first_mismatch(checks)
    assert problem is None, problem


def test_scan_on_the_official_inputs(official):
    """Our selective scan reproduces the official scan output from the official scan inputs."""
    name, folder, _ = official
    scan = np.load(folder / "scan_64x96.npz")
    for block in sorted({k.rsplit(".", 1)[0] for k in scan.files}):
        r = {k.rsplit(".", 1)[1]: jnp.asarray(scan[k]) for k in scan.files if k.startswith(block)}
        y = selective_scan(
            r["u"], r["delta"], r["A"], r["B"], r["C"], r["D"], r["delta_bias"], delta_softplus=True
        )
        assert rel_err(y, r["y_scan"]) <= TOL, f"{name} {block} y_scan"


def test_a_wrong_model_is_caught_and_located(official):
    """The check can fail: perturbing one block's A_logs is reported at that block first."""
    name, folder, model = official
    io = np.load(folder / "io_64x64.npz")
    ref = np.load(folder / "attn_64x64.npz")
    params = jax.tree_util.tree_map(lambda a: a, model.params)
    op = dict(params["layers_2"]["blocks_1"]["op"])
    op["A_logs"] = op["A_logs"] + 0.05
    params["layers_2"]["blocks_1"] = dict(params["layers_2"]["blocks_1"], op=op)
    broken = jaxmamba.Model(model.config, params)
    maps = extract_attention(broken, jnp.asarray(io["x_nhwc"]))
    problem = first_mismatch([(b, maps[b], ref[b]) for b in model.config.block_names()])
    assert problem is not None and problem.startswith("layers.2.blocks.1")
