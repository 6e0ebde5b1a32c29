"""Arguments are taken as written, or refused by name: no Unicode digits on the command line, no
bool or float where an int is meant, no unknown channel mode, no empty image path."""

import numpy as np
import pytest

import jaxmamba
from jaxmamba.attention.extract import route_attention
from jaxmamba.attention.mean import attention_mean
from jaxmamba.cli import main, parser
from jaxmamba.errors import AggregateError, AttentionError, ImageError, StudyError
from jaxmamba.storage.images import list_images, load_image


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from jaxmamba.study import write_synthetic_study

    return write_synthetic_study(
        tmp_path_factory.mktemp("strict") / "s", "vmamba_test", 64, orders=["cross"]
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), np.uint8)).save(
        folder / "a.png"
    )
    return folder


# ---- 1, 2. --blocks: ASCII digits are stages, anything else a name refused by name ------------


@pytest.mark.parametrize("block", ["²", "٣", "３"])
def test_export_blocks_in_other_digits_are_refused_by_name(study, tmp_path, capsys, block):
    page = tmp_path / "x.html"
    assert main(["export", str(study.path), "--out", str(page), "--blocks", block]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and repr(block) in err and "Traceback" not in err
    assert not page.exists()


def test_export_blocks_in_ascii_digits_are_stages(study, tmp_path):
    page = tmp_path / "x.html"
    assert main(["export", str(study.path), "--out", str(page), "--blocks", "3"]) == 0
    assert page.exists()


def test_explore_blocks_in_other_digits_are_refused_by_name(photo, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["explore", "--images", str(photo), "--out", str(out), "--size", "64"]
    assert main([*argv, "--blocks", "²"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'²'" in err and "Traceback" not in err
    assert not out.exists()


# ---- 2. numbers on the command line: ASCII only ------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["serve", "s", "--port", "١٠", "--no-browser"], "ASCII"),
        (["serve", "s", "--port", "８０"], "ASCII"),
        (["serve", "s", "--port", "65536"], "0..65535"),
        (["serve", "s", "--port", "-1"], "0..65535"),
        (["demo", "--out", "o", "--images", "١٠"], "ASCII"),
        (["explore", "--images", "x", "--out", "o", "--size", "٦٤"], "ASCII"),
        (["explore", "--images", "x", "--out", "o", "--batch-size", "٢"], "ASCII"),
        (["explore", "--images", "x", "--out", "o", "--batch-size", "1_0"], "ASCII"),
        (["export", "s", "--out", "x.html", "--max-mb", "١"], "ASCII"),
        (["export", "s", "--out", "x.html", "--max-mb", "lots"], "not a number"),
    ],
)
def test_non_ascii_numbers_are_usage_errors(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # were a number taken, the command would write here
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: " in err and message in err and "Traceback" not in err


def test_ascii_numbers_are_read():
    args = parser().parse_args(["serve", "s", "--port", "0"])
    assert args.port == 0
    args = parser().parse_args(["export", "s", "--out", "x.html", "--max-mb", "2.5"])
    assert args.max_mb == 2.5
    args = parser().parse_args(["explore", "--images", "x", "--out", "o", "--batch-size", "16"])
    assert args.batch_size == 16


# ---- 3. route_attention refuses an unknown channel mode ----------------------------------------


def _inputs():
    return np.full((1, 2, 3), 0.5), -np.ones((1, 2, 1)), np.ones((1, 1, 3)), np.ones((1, 1, 3))


@pytest.mark.parametrize("channels", ["bogus", "MEAN", ""])
def test_route_attention_refuses_unknown_channel_modes(channels):
    with pytest.raises(AttentionError, match="channels must be"):
        route_attention(*_inputs(), channels=channels)


def test_route_attention_modes_still_work():
    mean = np.asarray(route_attention(*_inputs(), channels="mean"))
    absolute = np.asarray(route_attention(*_inputs(), channels="abs_mean"))
    assert mean.shape == absolute.shape == (1, 3, 3)
    np.testing.assert_allclose(mean, absolute, rtol=1e-6)  # all-positive inputs
    assert np.asarray(route_attention(*_inputs(), channels=(1,))).shape == (1, 1, 3, 3)


# ---- 4. ints are ints (NumPy ones too), never bools or floats; no empty image path -------------


@pytest.fixture(scope="module")
def model():
    return jaxmamba.create_model("vmamba_test")


@pytest.mark.parametrize(
    "change",
    [
        dict(save_every=True), dict(save_every=2.0), dict(save_every=np.bool_(True)),
        dict(save_every=0), dict(total=True), dict(total=1.5), dict(total=-1), dict(total="3"),
    ],
)  # fmt: skip
def test_attention_mean_refuses_bools_and_floats(model, tmp_path, change):
    name = next(iter(change))
    with pytest.raises(AggregateError, match=f"{name} must be an int"):
        attention_mean(model, [np.zeros((1, 64, 64, 3), np.float32)], blocks=3,
                       out_dir=tmp_path / "m", progress=False, **change)  # fmt: skip
    assert not (tmp_path / "m").exists()


def test_attention_mean_takes_numpy_ints(model):
    data = [np.zeros((1, 64, 64, 3), np.float32)]
    mean = attention_mean(model, data, blocks=3, save_every=np.int64(2), total=np.int32(1),
                          progress=False)  # fmt: skip
    assert mean.count == 1


def test_load_image_refuses_bool_crop_ratio_and_takes_numpy_numbers(photo):
    with pytest.raises(ImageError, match="crop_ratio"):
        load_image(photo / "a.png", 64, crop_ratio=True)
    with pytest.raises(ImageError, match="size"):
        load_image(photo / "a.png", True)
    x, _ = load_image(photo / "a.png", np.int64(32), crop_ratio=np.float32(0.5))
    assert x.shape == (32, 32, 3)


def test_an_empty_image_path_is_refused_by_name(photo, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(photo)  # where an empty path, read as ".", would find a.png
    for paths in ([""], ["a.png", ""], [b"a.png"], []):
        with pytest.raises(ImageError, match="empty|must be a str|no image paths"):
            list_images(paths)
    assert list_images("a.png") == list_images(["a.png"])  # one path, not its characters
    out = tmp_path / "o"
    assert main(["explore", "--images", "", "--out", str(out), "--size", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "empty" in err and not out.exists()


@pytest.mark.parametrize("argv", [
    ["serve", "", "--no-browser"],
    ["export", "", "--out", "x.html"],
    ["export", "STUDY", "--out", ""],
    ["explore", "--images", "x.png", "--out", ""],
    ["explore", "--checkpoint", "cross=", "--images", "x.png", "--out", "o"],
])  # fmt: skip
def test_an_empty_path_on_the_command_line_is_refused(study, argv, capsys, monkeypatch, tmp_path):
    from jaxmamba.cli import main

    monkeypatch.chdir(study.path)  # main: '' was this folder, read as the study
    argv = [str(study.path) if a == "STUDY" else a for a in argv]
    if argv[0] == "explore":
        from PIL import Image

        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "x.png")
        argv = [str(tmp_path / a) if a == "x.png" else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # an argparse usage error
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "empty path" in err and "Traceback" not in err


def test_the_library_refuses_an_empty_study_path(study, monkeypatch):
    from jaxmamba.study import Study

    monkeypatch.chdir(study.path)
    with pytest.raises(StudyError, match="empty"):
        Study("")
