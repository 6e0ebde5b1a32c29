"""Reliability: no user file is ever deleted, no wrong result is called exact, no resume
mixes two runs, corruption and interruption are detected, and every bad input is a named error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

import jaxmamba
from jaxmamba.attention.extract import extract_attention, route_attention
from jaxmamba.attention.mean import attention_mean
from jaxmamba.attention.verify import verify
from jaxmamba.errors import AggregateError, AttentionError, CheckpointError, ImageError
from jaxmamba.models import params as P
from jaxmamba.storage import store
from jaxmamba.storage.checkpoint import load, param_shapes, save

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH="")


def random_model(seed: int = 4) -> jaxmamba.Model:
    """vmamba_test with random float32 parameters (no init to compile; the same in any process)."""
    rng = np.random.default_rng(seed)
    shapes = param_shapes(jaxmamba.get_config("vmamba_test"))
    flat = {P.key_to_path(k): rng.standard_normal(s).astype(np.float32) * 0.2
            for k, s in shapes.items()}  # fmt: skip
    return jaxmamba.Model(jaxmamba.get_config("vmamba_test"), P.unflatten(flat))


RANDOM_MODEL = (
    "import numpy as np, jaxmamba\n"
    "from jaxmamba.models import params as P\n"
    "from jaxmamba.storage.checkpoint import param_shapes\n"
    + "".join(__import__("inspect").getsource(random_model).splitlines(keepends=True))
)


@pytest.fixture(scope="module")
def model():
    return random_model()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).standard_normal((24, 64, 64, 3)).astype(np.float32)


def batched(images, size):
    return [images[i : i + size] for i in range(0, len(images), size)]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with the bytes of its files (None for folders)."""
    return {
        str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
    }


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def with_param(model, key: str, change) -> jaxmamba.Model:
    flat = P.flatten(model.params)
    path = P.key_to_path(key)
    flat[path] = jnp.asarray(change(np.array(flat[path])))
    return jaxmamba.Model(model.config, P.unflatten(flat))


def state_dict_file(torch, path: Path, seed: int = 0, change=None) -> Path:
    rng = np.random.default_rng(seed)
    shapes = param_shapes(jaxmamba.get_config("vmamba_test"))
    sd = {k: torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for k, s in shapes.items()}
    if change:
        change(sd)
    torch.save({"model": sd}, path)
    return path


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# ---- 1. never delete a folder that is not ours, nor a place the user stands in -----------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home folder ``home`` and a working directory ``home/work`` that holds a checkpoint file
    and is itself a jaxmamba checkpoint (so that only the new rule, not is_ours, protects it)."""
    home = tmp_path / "home"
    work = home / "work"
    work.mkdir(parents=True)
    (home / "notes.txt").write_text("my notes")
    (work / "model.pth").write_bytes(b"PK\x03\x04 stands in for a checkpoint")
    (work / "config.json").write_text(json.dumps({"format": "jaxmamba"}))
    (work / "sub").mkdir()
    (work / "sub" / "input.pth").write_bytes(b"PK\x03\x04 another input")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert store.is_ours(work)
    return home


@pytest.mark.parametrize(
    "out, inp, message",
    [
        (".", "model.pth", "is the current directory"),
        ("~", "model.pth", "is your home folder"),
        ("..", "model.pth", "is your home folder"),
        ("../..", "model.pth", "contains the current directory"),
        ("/", "model.pth", "root folder"),
        ("sub", "sub/input.pth", "contains the input"),
        ("link", "model.pth", "is the current directory"),  # a symlink to the cwd
        ("model.pth", "model.pth", "is the input"),
    ],
)
def test_convert_never_replaces_the_cwd_home_root_or_the_inputs_folder(
    home, capsys, out, inp, message
):
    from jaxmamba.convert.cli import main

    (home / "work" / "link").symlink_to(home / "work")
    if out == "sub":  # the folder of the input, seen from elsewhere
        os.chdir(home)
        out, inp = "work/sub", "work/sub/input.pth"
    before = snapshot(home)
    assert main([inp, "--out", out, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and err.count("\n") == 1, err
    assert any(m in err for m in message.split("|")), err
    assert snapshot(home) == before


@pytest.mark.torch
def test_convert_out_dot_overwrite_as_the_issue_ran_it(torch, home):
    state_dict_file(torch, home / "work" / "model.pth")  # a real checkpoint: on main, it converts
    before = snapshot(home)
    env = dict(ENV, HOME=str(home))
    run = subprocess.run(
        [sys.executable, "-m", "jaxmamba.convert", "model.pth", "--out", ".", "--overwrite"],
        cwd=home / "work", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.startswith("error: --out ") and "current directory" in run.stderr
    assert "Traceback" not in run.stderr
    assert snapshot(home) == before


def test_library_never_replaces_or_clears_the_cwd_or_home(home, model):
    before = snapshot(home)
    for where in (".", "~", str(home / "work"), ".."):
        with pytest.raises(CheckpointError, match="never replaces or clears"):
            save(model, where, overwrite=True)
        with pytest.raises(CheckpointError, match="never replaces or clears"):
            store.StepStore(where)
        with pytest.raises(CheckpointError, match="never replaces or clears"):
            store.remove(where)
        with pytest.raises(AggregateError, match="out_dir .*never replaces or clears"):
            attention_mean(model, [np.zeros((1, 64, 64, 3))], blocks=3, out_dir=where,
                           progress=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="contains the input"):
        store.guard(home / "work" / "sub", protect=[home / "work" / "sub" / "input.pth"])
    assert snapshot(home) == before
    # a folder of its own, beside them, is fine
    assert store.guard(home / "work" / "new") == home / "work" / "new"
    assert load(save(model, "new")).config == model.config


# ---- 2. verify never calls a non-finite map exact ----------------------------------------------


def test_verify_reports_nan_for_non_finite_maps(model):
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype(np.float32)
    key = "layers.1.blocks.0.op.A_logs"  # exp(89) overflows float32: A = -inf
    assert verify(model, x, blocks=1)["layers.1.blocks.0"] < 1e-5
    one = with_param(model, key, lambda a: np.where(np.arange(len(a))[:, None] == 7, 89.0, a))
    every = with_param(model, key, lambda a: np.full_like(a, 89.0))
    maps = extract_attention(one, x, blocks=1)["layers.1.blocks.0"]
    assert not np.isfinite(np.asarray(maps)).all()
    # on main these gave 1.4e-7 and -inf: XLA's max reduction may skip NaNs
    assert np.isnan(verify(one, x, blocks=1)["layers.1.blocks.0"])
    assert np.isnan(verify(every, x, blocks=1)["layers.1.blocks.0"])


# ---- 3. resume is exact, by images, and refuses other weights ---------------------------------


def test_resume_with_another_batch_size_counts_every_image_once(model, images, tmp_path):
    whole = attention_mean(model, batched(images, 4), blocks=3, progress=False)

    def stop_after(batches, n):
        for i, b in enumerate(batches):
            if i == n:
                raise KeyboardInterrupt
            yield b

    with pytest.raises(KeyboardInterrupt):  # 12 images consumed, in batches of 4
        attention_mean(model, stop_after(batched(images, 4), 3), blocks=3, out_dir=tmp_path,
                       save_every=1, progress=False)  # fmt: skip
    mean = attention_mean(model, batched(images, 5), blocks=3, out_dir=tmp_path, progress=False)
    assert mean.count == 24  # on main: 30 or 12
    assert rel_err(mean["layers.3.blocks.0"], whole["layers.3.blocks.0"]) < 1e-6
    again = attention_mean(model, batched(images, 4), blocks=3, out_dir=tmp_path, progress=False)
    assert again.count == 24


def test_resume_with_other_weights_is_refused(model, images, tmp_path):
    attention_mean(model, batched(images[:4], 2), blocks=3, out_dir=tmp_path, progress=False)
    before = snapshot(tmp_path)
    other = with_param(model, "layers.3.blocks.0.op.Ds", lambda a: a + 1e-3)
    with pytest.raises(AggregateError, match="params_digest"):
        attention_mean(other, batched(images[:4], 2), blocks=3, out_dir=tmp_path, progress=False)
    assert snapshot(tmp_path) == before


KILLED = RANDOM_MODEL + textwrap.dedent(
    """
    import sys
    model = random_model()
    images = np.random.default_rng(0).standard_normal((24, 64, 64, 3)).astype(np.float32)

    def batches():
        for i in range(0, 24, 4):
            print("batch", i // 4, flush=True)
            yield images[i : i + 4]

    jaxmamba.attention_mean(model, batches(), blocks=3, out_dir=sys.argv[1], save_every=1,
                            progress=False)
    print("done", flush=True)
    """
)


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(model, images, tmp_path):
    out = tmp_path / "mean"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(out)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        for line in child.stdout:
            if line.strip() == "batch 4":  # batches 0-2 saved, 3 in flight: kill it there
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(timeout=300)
    assert child.returncode == -signal.SIGKILL
    assert (out / "state").is_dir()
    resumed = attention_mean(model, batched(images, 5), blocks=3, out_dir=out, progress=False)
    whole = attention_mean(model, batched(images, 4), blocks=3, progress=False)
    assert resumed.count == whole.count == 24
    assert rel_err(resumed["layers.3.blocks.0"], whole["layers.3.blocks.0"]) < 1e-6
    leftovers = [p.name for p in (out / "state").iterdir() if ".tmp-" in p.name]
    assert leftovers == []


# ---- 5. corruption is detected and named ------------------------------------------------------


@pytest.mark.torch
def test_flipped_byte_in_a_pth_is_a_crc_error(torch, tmp_path):
    from jaxmamba.convert import load_torch_checkpoint

    path = state_dict_file(torch, tmp_path / "model.pth")
    with zipfile.ZipFile(path) as z:
        member = max(z.infolist(), key=lambda i: i.file_size)  # a tensor's storage
    local = path.read_bytes()[member.header_offset :][:30]  # its local header: 30 bytes, then
    name_len, extra_len = np.frombuffer(local[26:30], "<u2")  # the name, the extra field, data
    flip_byte(path, member.header_offset + 30 + int(name_len) + int(extra_len) + 8)
    with pytest.raises(
        CheckpointError, match=rf"model\.pth .*CRC-32 of its member {member.filename}"
    ):
        load_torch_checkpoint(path)


def test_flipped_byte_in_a_model_checkpoint_names_the_file(model, tmp_path):
    path = save(model, tmp_path / "ckpt")
    damaged = largest_file(path / "params")
    flip_byte(damaged)
    with pytest.raises(CheckpointError, match=rf"{damaged.name} is damaged"):
        load(path)


def test_flipped_byte_in_a_saved_running_sum_names_the_file(model, images, tmp_path):
    attention_mean(model, batched(images[:4], 2), blocks=3, out_dir=tmp_path, progress=False)
    damaged = largest_file(next((tmp_path / "state").iterdir()) / "sums")
    flip_byte(damaged)
    with pytest.raises(AggregateError, match=rf"{tmp_path}.*{damaged.name} is damaged"):
        attention_mean(model, batched(images[:4], 2), blocks=3, out_dir=tmp_path, progress=False)


# ---- 4. images of every bit depth and mode: scaled right or refused by name ---------------------


def png16(path: Path, pixels: np.ndarray, color_type: int) -> Path:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour PNGs)."""
    import struct
    import zlib

    h = pixels.shape[0]
    raw = b"".join(b"\x00" + pixels[r].astype(">u2").tobytes() for r in range(h))

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", pixels.shape[1], h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from jaxmamba.storage.images import load_image

    grey = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    _, shown = load_image(tmp_path / "grey16.png", size=32, crop_ratio=1.0)
    expected = np.round(grey / 257.0).astype(np.uint8)  # on main: 255 everywhere
    np.testing.assert_array_equal(shown, np.repeat(expected[..., None], 3, axis=-1))
    rgb = np.random.default_rng(0).integers(0, 65536, (32, 32, 3)).astype(np.uint16)
    _, shown = load_image(png16(tmp_path / "rgb16.png", rgb, 2), size=32, crop_ratio=1.0)
    np.testing.assert_array_equal(shown, (rgb >> 8).astype(np.uint8))


def test_palette_cmyk_and_exif_rotated_images(tmp_path, recwarn):
    from PIL import Image

    from jaxmamba.storage.images import load_image

    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = (200, 30, 30)  # left half red, right half blue
    rgb[:, 24:] = (20, 40, 220)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    palette.save(tmp_path / "palette.png", transparency=0)
    for name in ("cmyk.tif", "palette.png"):
        _, shown = load_image(tmp_path / name, size=32, crop_ratio=1.0)
        np.testing.assert_array_equal(shown, rgb[:, 8:40], err_msg=name)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned; show rotated 90° clockwise
    Image.fromarray(rgb).save(tmp_path / "turned.png", exif=exif)
    _, shown = load_image(tmp_path / "turned.png", size=32, crop_ratio=1.0)
    upright = np.rot90(rgb, k=-1)  # (48, 32): red on top
    np.testing.assert_array_equal(shown, upright[8:40])
    assert not [w for w in recwarn if "Palette" in str(w.message)]


def test_images_without_a_known_range_are_refused_by_name(tmp_path):
    from PIL import Image

    from jaxmamba.storage.images import load_image

    Image.fromarray(np.ones((8, 8), np.float32)).save(tmp_path / "float.tif")
    Image.fromarray(np.ones((8, 8), np.int32)).save(tmp_path / "int32.tif")
    with pytest.raises(ImageError, match=r"float\.tif: a floating-point image .*'F'"):
        load_image(tmp_path / "float.tif")
    with pytest.raises(ImageError, match=r"int32\.tif: an integer image .*'I'"):
        load_image(tmp_path / "int32.tif")
    with pytest.raises(ImageError, match="size must be an int >= 1, got 0"):
        load_image(tmp_path / "float.tif", size=0)


# ---- 6. float64 (jax_enable_x64) ---------------------------------------------------------------

X64 = RANDOM_MODEL + textwrap.dedent(
    """
    import jax, numpy as np, jax.numpy as jnp, jaxmamba
    from jaxmamba.attention.extract import route_attention
    assert jax.config.jax_enable_x64
    rng = np.random.default_rng(0)
    k, d, n, l = 2, 3, 4, 11
    dt = rng.uniform(0.1, 1.0, (k, d, l)); A = -rng.uniform(0.5, 2.0, (k, d, n))
    B, C = rng.standard_normal((2, k, n, l))
    S = np.cumsum(dt, -1)
    ref = np.zeros((k, d, l, l))
    for t in range(l):
        for s in range(t + 1):
            ref[:, :, t, s] = np.einsum("kn,kdn,kd,kn->kd", C[..., t],
                                        np.exp(A * (S[..., t] - S[..., s])[..., None]),
                                        dt[..., s], B[..., s])
    out = route_attention(*map(jnp.asarray, (dt, A, B, C)), chunk=4)
    assert out.dtype == jnp.float64, out.dtype
    err = float(np.max(np.abs(np.asarray(out) - ref.mean(1))) / np.max(np.abs(ref.mean(1))))
    assert err < 1e-12, err
    sub = route_attention(*map(jnp.asarray, (dt, A, B, C)), channels=(2, 0), chunk=3)
    assert np.allclose(np.asarray(sub), ref[:, [2, 0]], rtol=1e-12, atol=1e-14)
    model = random_model()
    x = jnp.asarray(rng.standard_normal((1, 64, 64, 3)))
    maps = jaxmamba.extract_attention(model, x, blocks=3, chunk=2)
    assert np.isfinite(np.asarray(maps["layers.3.blocks.0"])).all()
    assert jaxmamba.verify(model, x, blocks=3)["layers.3.blocks.0"] < 1e-5
    print("ok")
    """
)


@pytest.mark.slow  # a fresh process compiling in float64 (~55 s); in-process float64 elsewhere
def test_attention_under_jax_enable_x64():
    env = dict(ENV, JAX_ENABLE_X64="1")
    run = subprocess.run([sys.executable, "-c", X64], env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


@pytest.mark.slow
def test_attention_test_file_passes_under_jax_enable_x64():
    env = dict(os.environ, JAX_ENABLE_X64="1")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_attention.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]


# ---- 7. every bad input is a JaxmambaError naming the problem ----------------------------------


def _big_stride(sd):
    sd["layers.0.blocks.0.op.Ds"] = sd["layers.0.blocks.0.op.Ds"].repeat(3).as_strided((128,), (3,))


BAD_TENSORS = {
    "sparse": (lambda t, s: t.zeros(s).to_sparse(), "sparse_coo tensor"),
    "meta": (lambda t, s: t.empty(s, device="meta"), "meta tensor"),
    "quantized": (
        lambda t, s: t.quantize_per_tensor(t.zeros(s), 0.1, 0, t.qint8),
        "quantized tensor",
    ),
    "nested": (lambda t, s: t.nested.nested_tensor([t.zeros(2), t.zeros(3)]), "nested tensor"),
    "zero-size": (lambda t, s: t.zeros(0), "zero-size"),
    "nan": (lambda t, s: t.full(s, float("nan")), "NaN or inf"),
}


@pytest.mark.torch
@pytest.mark.parametrize("kind", sorted(BAD_TENSORS))
def test_unusual_tensors_in_a_pth_are_named(torch, tmp_path, kind):
    from jaxmamba.convert import load_torch_checkpoint

    make, message = BAD_TENSORS[kind]
    key = "layers.0.blocks.0.op.Ds"

    def change(sd):
        sd[key] = make(torch, tuple(sd[key].shape))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about saving prototype layouts
        path = state_dict_file(torch, tmp_path / f"{kind}.pth", change=change)
    with pytest.raises(CheckpointError, match=rf"{key}.*{message}|{message}.*{key}"):
        load_torch_checkpoint(path)


@pytest.mark.torch
@pytest.mark.parametrize("stride", [b"J\xff\xff\xff\x7f", b"J\xff\xff\xff\xff"])  # 2**31-1, -1
def test_absurd_strides_in_a_pth_are_a_checkpoint_error(torch, tmp_path, stride):
    from jaxmamba.convert import load_torch_checkpoint

    path = state_dict_file(torch, tmp_path / "ok.pth", change=_big_stride)
    bad = tmp_path / "bad.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):  # the (128,) size, then the (3,) stride
                at = data.index(b"K\x03\x85", data.index(b"K\x80\x85"))
                data = data[:at] + stride + data[at + 2 :]
            dst.writestr(info, data)
    with pytest.raises(CheckpointError, match=r"bad\.pth"):
        load_torch_checkpoint(bad)


def test_a_text_file_as_checkpoint_is_not_blamed_on_torch(tmp_path, monkeypatch):
    from jaxmamba.convert import load_torch_checkpoint

    (tmp_path / "notes.pth").write_text("these are my notes, not weights\n")
    monkeypatch.setitem(sys.modules, "torch", None)  # even without torch installed
    with pytest.raises(CheckpointError, match=r"notes\.pth .*neither a torch\.save file"):
        load_torch_checkpoint(tmp_path / "notes.pth")


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return save(model, tmp_path_factory.mktemp("saved") / "ckpt")


def edited(saved, tmp_path, change) -> Path:
    """A copy of ``saved`` whose config.json ``change(payload)`` edited (as format_version 1,
    which has no checksums, so that the config itself is what is checked)."""
    import shutil

    path = Path(shutil.copytree(saved, tmp_path / "copy"))
    payload = json.loads((path / "config.json").read_text())
    payload["format_version"] = 1
    text = change(payload)
    (path / "config.json").write_text(text if isinstance(text, str) else json.dumps(payload))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["config"].update(eps=0.0), "eps must be > 0"),
        (lambda p: p["config"].update(eps=-1e-5), "eps must be > 0"),
        (lambda p: json.dumps(p).replace('"eps": 1e-05', '"eps": NaN'), "NaN is not a JSON"),
        (lambda p: json.dumps(p).replace('"eps": 1e-05', '"eps": Infinity'), "Infinity"),
        (lambda p: p["config"].update(depths=[1, 1, 2.5, 1]), "depths must be a sequence of int"),
        (lambda p: p["config"].update(depths=[1, 1, 2.0, 1]), "depths must be a sequence of int"),
        (lambda p: p["config"].update(name="vmamba_tiny_s1l8"), "names the variant"),
        (lambda p: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_edited_config_json_is_refused(saved, tmp_path, change, message):
    with pytest.raises(CheckpointError, match=message):
        load(edited(saved, tmp_path, change))


def test_integer_params_are_refused(model, tmp_path):
    ints = jax.tree.map(lambda a: np.asarray(a).astype(np.int32), model.params)
    config = (save(model, tmp_path / "good") / "config.json").read_text()
    store.write(tmp_path / "ints", {"params": ints}, {"config.json": config})
    with pytest.raises(CheckpointError, match=r"not floating point: .*\(int32\)"):
        load(tmp_path / "ints")


def test_numpy_integers_select_blocks_and_bad_chunks_are_refused(model, images):
    x = images[:1]
    a = extract_attention(model, x, blocks=np.int64(3))
    b = extract_attention(model, x, blocks=[np.int32(3)])
    assert list(a) == list(b) == ["layers.3.blocks.0"]
    for chunk in (-1, 0, 2.5, True):
        with pytest.raises(AttentionError, match="chunk must be None or an int >= 1"):
            extract_attention(model, x, blocks=3, chunk=chunk)
    with pytest.raises(AttentionError, match="chunk"):
        route_attention(jnp.ones((1, 2, 4)), -jnp.ones((1, 2, 1)), jnp.ones((1, 1, 4)),
                        jnp.ones((1, 1, 4)), chunk=-1)  # fmt: skip


@pytest.mark.parametrize(
    "corrupt",
    ["run.json deep", "run.json Infinity", "run.json folder", "run.json list", "state file",
     "meta.json gone", "sums gone"],
)  # fmt: skip
def test_corrupt_resume_state_is_an_error_naming_out_dir(model, images, tmp_path, corrupt):
    import shutil

    out = tmp_path / "mean"
    attention_mean(model, batched(images[:4], 2), blocks=3, out_dir=out, progress=False)
    step = next((out / "state").iterdir())
    what, how = corrupt.split(" ")
    if what == "run.json":
        run = out / "run.json"
        run.unlink()
        if how == "folder":
            run.mkdir()
        else:
            text = {"deep": "[" * 100_000, "Infinity": '{"format": Infinity}', "list": "[1]"}
            run.write_text(text[how])
    elif what == "state":
        shutil.rmtree(out / "state")
        (out / "state").write_text("")
    elif what == "meta.json":
        (step / "meta.json").unlink()
    else:
        shutil.rmtree(step / "sums")
    with pytest.raises(AggregateError, match=str(out) if what != "run.json" else "run.json"):
        attention_mean(model, batched(images[:4], 2), blocks=3, out_dir=out, progress=False)


# ---- 8. silent garbage becomes an error -------------------------------------------------------


def test_out_of_range_channels_are_refused(model, images):
    for channels in ((999,), (-1,), (0, 256)):
        with pytest.raises(AttentionError, match=r"out of range for layers\.3\.blocks\.0.*256"):
            extract_attention(model, images[:1], blocks=3, channels=channels)
    with pytest.raises(AttentionError, match="out of range"):
        attention_mean(model, [images[:1]], blocks=3, channels=(999,), progress=False)
    with pytest.raises(AttentionError, match="out of range: there are 2"):
        route_attention(jnp.ones((1, 2, 4)), -jnp.ones((1, 2, 1)), jnp.ones((1, 1, 4)),
                        jnp.ones((1, 1, 4)), channels=(2,))  # fmt: skip


def test_zero_size_batches_give_no_nan(model, images):
    empty = np.zeros((0, 64, 64, 3), np.float32)
    mean = attention_mean(model, [empty, images[:2], empty], blocks=3, progress=False)
    alone = attention_mean(model, [images[:2]], blocks=3, progress=False)
    assert mean.count == 2 and np.isfinite(np.asarray(mean["layers.3.blocks.0"])).all()
    np.testing.assert_array_equal(mean["layers.3.blocks.0"], alone["layers.3.blocks.0"])
    with pytest.raises(AggregateError, match="no images were averaged"):  # on main: NaN, count 0
        attention_mean(model, [empty], blocks=3, progress=False)
    with pytest.raises(AttentionError, match="at least one image"):
        verify(model, empty, blocks=3)


def test_non_finite_pixels_are_refused_or_skipped_and_counted(model, images):
    bad = images[:6].copy()
    bad[1, 3, 4, 0] = np.nan
    bad[4, 0, 0, 2] = np.inf
    with pytest.raises(AggregateError, match=r"images \[1\] .*NaN or inf.*nonfinite='skip'"):
        attention_mean(model, batched(bad, 2), blocks=3, progress=False)
    mean = attention_mean(model, batched(bad, 2), blocks=3, nonfinite="skip", progress=False)
    good = attention_mean(model, batched(images[[0, 2, 3, 5]], 2), blocks=3, progress=False)
    assert (mean.count, mean.skipped) == (4, 2)
    assert rel_err(mean["layers.3.blocks.0"], good["layers.3.blocks.0"]) < 1e-6


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_are_refused(model, images, value):
    broken = with_param(model, "layers.1.blocks.0.op.Ds", lambda a: np.where(a == a, value, a))
    with pytest.raises(AggregateError, match="NaN/inf"):
        attention_mean(broken, [images[:1]], blocks=3, progress=False)


# ---- 10. interrupted and failed writes leave nothing behind -----------------------------------

INTERRUPTED = RANDOM_MODEL + textwrap.dedent(
    """
    import os, signal, sys
    import orbax.checkpoint as ocp
    import jaxmamba

    wait = ocp.StandardCheckpointer.wait_until_finished

    def then_stop(self):  # the arrays are written into the hidden temporary folder: stop here
        wait(self)
        os.kill(os.getpid(), getattr(signal, sys.argv[2]))

    ocp.StandardCheckpointer.wait_until_finished = then_stop
    jaxmamba.save(random_model(), sys.argv[1])
    """
)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_interrupted_save_leaves_nothing_after_the_next_run(model, tmp_path, how):
    target = tmp_path / "ckpt"
    run = subprocess.run([sys.executable, "-c", INTERRUPTED, str(target), how], env=ENV,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == -getattr(signal, how), run.stderr[-3000:]
    left = sorted(p.name for p in tmp_path.iterdir())
    if how == "SIGKILL":  # no chance to clean: the next write in the folder removes it
        assert len(left) == 1 and left[0].startswith(".ckpt.tmp-"), left
    else:  # SIGTERM: the write removed its temporary folder, then the process ended
        assert left == [], left
    save(model, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert load(target).config == model.config


def test_disk_full_is_one_clear_error_and_nothing_left(model, tmp_path, monkeypatch):
    import errno

    import orbax.checkpoint as ocp

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full)  # a simulated full disk
    with pytest.raises(CheckpointError, match="no space left on device; nothing was written"):
        save(model, tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (needs root; skipped where mounting is not allowed)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.torch
def test_disk_full_on_a_real_tiny_disk(torch, model, tiny_disk, tmp_path, capfd, monkeypatch):
    import shutil

    from jaxmamba.convert.cli import main

    pth = state_dict_file(torch, tmp_path / "model.pth")
    capfd.readouterr()
    assert main([str(pth), "--out", str(tiny_disk / "ckpt")]) == 2  # checked before writing
    err = capfd.readouterr().err
    assert err.startswith("error: not enough space to write") and err.count("\n") == 1, err
    assert list(tiny_disk.iterdir()) == []

    usage = shutil.disk_usage  # now pretend there is room: the writer itself hits ENOSPC
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(p)._replace(free=2**40))
    assert main([str(pth), "--out", str(tiny_disk / "ckpt")]) == 2
    err = capfd.readouterr().err
    assert err.startswith("error: could not write") and "no space left on device" in err
    assert err.count("\n") == 1 and "Traceback" not in err, err[:3000]
    assert list(tiny_disk.iterdir()) == []
