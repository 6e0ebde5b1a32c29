"""The ``jaxmamba`` command (also ``python -m jaxmamba``).

    jaxmamba demo --out demo                      # a study of the bundled models, figures, explorer
    jaxmamba explore --checkpoint vmamba_t --images photos/ --out study --order cross spiral
    jaxmamba explore --checkpoint cross=A.pth diagonal=B.pth --images photos/ --out study
    jaxmamba serve study                          # the explorer at http://127.0.0.1:8765/
    jaxmamba export study --out small.html --blocks 2 3
    jaxmamba convert vssm1_tiny_0230s_ckpt_epoch_264.pth --out vmamba_t

Every failure is one line ``error: ...`` on stderr and exit status 2, with nothing written.
``demo`` and ``explore`` keep JAX's compiled programs in ``~/.cache/jaxmamba/xla`` (see
:mod:`jaxmamba.storage.compile_cache`; ``JAXMAMBA_NO_COMPILE_CACHE=1`` turns that off).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import time
from pathlib import Path

from jaxmamba.attention.embed import METHODS
from jaxmamba.errors import InputError, JaxmambaError
from jaxmamba.orders import ORDER_NAMES

__all__ = ["NO_CHECKPOINT", "demo_image_names", "main", "parser"]

_ORDERS = ", ".join(ORDER_NAMES)
_METHODS = ", ".join(METHODS)
NO_CHECKPOINT = (
    "no --checkpoint: using the embedded default model, a small VMamba trained on 64x64 "
    "digits (scikit-learn's), not on photos; its maps show how a digit model attends. For a "
    "photo model give --checkpoint (e.g. a converted VMamba-T: jaxmamba convert)"
)


def _ascii_int(text: str) -> int:
    """``text`` as an int, written in ASCII digits with an optional leading minus.

    ``int()`` also takes other scripts' digits (``"١٠"`` is 10), spaces and underscores; a
    command line value must be plain.

    >>> _ascii_int("10"), _ascii_int("-3")
    (10, -3)
    >>> _ascii_int("١٠")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: not an integer in ASCII digits: '١٠'
    """
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 30:
        raise argparse.ArgumentTypeError(f"not an integer in ASCII digits: {text[:40]!r}")
    return int(text)


def _path(text: str) -> str:
    """A path on the command line: never empty (an empty path would mean the current folder).

    >>> _path("")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: an empty path; name a file or folder
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name a file or folder")
    return text


def _positive(text: str) -> int:
    value = _ascii_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _ascii_int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535 (0: any free port), got {value}")
    return value


def _megabytes(text: str) -> float:
    """``text`` as a float written in ASCII (``float()`` takes other scripts' digits too); the
    range is checked by :func:`jaxmamba.views.export.export`, which names ``--max-mb``.

    >>> _megabytes("2.5"), _megabytes("1e3")
    (2.5, 1000.0)
    """
    try:
        if not text.isascii():
            raise ValueError(text)
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number in ASCII digits: {text[:40]!r}") from None


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows every option's default (``(default: 224)``), except where there is none
    to show (an absent option, a flag) or the help text says it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)

    def _expand_help(self, action):  # a list default as "a b", not "['a', 'b']"
        if isinstance(action.default, (list, tuple)):
            action = argparse.Action(
                action.option_strings, action.dest, default=" ".join(map(str, action.default)),
                help=action.help, metavar=action.metavar,
            )  # fmt: skip
        return super()._expand_help(action)


def _epilog() -> str:
    return (
        f"orders: {_ORDERS} (cross is VMamba's)\n"
        f"reductions: {_METHODS} (PCA, t-SNE, UMAP)\n"
        "options and defaults of a command: jaxmamba COMMAND --help"
    )


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jaxmamba`` command; ``--help`` lists the orders and
    reductions, and every command's help shows its defaults.

    >>> help = parser().format_help()
    >>> "hilbert" in help and "umap" in help
    True
    """
    from jaxmamba.convert import cli as convert_cli

    p = argparse.ArgumentParser(
        prog="jaxmamba",
        description="Exact hidden attention of VMamba models: extract, average and explore it.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser = functools.partial(sub.add_parser, formatter_class=_Defaults)
    d = add_parser(
        "demo",
        help="a study of the bundled models on held-out digits (figures and explorer.html)",
        description="Average the attention of the bundled digit models, one trained in each of "
        "four scan orders, over held-out digits, and of the bundled digit Vim beside them "
        "(OUT/vim, shown side by side); write the studies, their figures and an offline "
        "explorer.html. Returns when done; then look with: jaxmamba serve OUT.",
    )
    d.add_argument("--out", required=True, type=_path, help="the study folder to write")
    d.add_argument("--images", type=_positive, default=200, help="held-out digits to average")
    d.add_argument(
        "--order", nargs="+", default=["cross", "diagonal", "morton", "spiral"], metavar="ORDER",
        help="scan orders with a bundled model trained in them (cross, diagonal, morton, spiral)",
    )  # fmt: skip
    d.add_argument(
        "--method", nargs="+", default=["pca", "tsne"], choices=METHODS, metavar="METHOD",
        help=f"reductions of the scatterplots ({_METHODS})",
    )  # fmt: skip
    e = add_parser(
        "explore",
        help="a study of a checkpoint (or one per order) on your images",
        description="Average the attention of a model over your images in the given scan orders "
        "and write a study folder with its figures; then: jaxmamba serve OUT, or jaxmamba export.",
    )
    e.add_argument(
        "--checkpoint", nargs="+", default=None, metavar="CKPT",
        help="a .pth/.safetensors file or Orbax folder scanned in every order, or ORDER=PATH "
        "pairs (one trained model per order); default: the embedded digit model",
    )  # fmt: skip
    e.add_argument("--images", required=True, nargs="+", help="image files or folders")
    e.add_argument("--out", required=True, type=_path, help="the study folder to write (or resume)")
    e.add_argument(
        "--order", nargs="+", default=None, metavar="ORDER",
        help=f"scan orders ({_ORDERS}); default cross (a Vim model: raster), or the orders of "
        "ORDER=PATH checkpoints",
    )  # fmt: skip
    e.add_argument(
        "--blocks", nargs="+", default=None, metavar="BLOCK",
        help="stage indices (0 1 ...) or block names (layers.0.blocks.1); default all blocks",
    )  # fmt: skip
    e.add_argument(
        "--method", nargs="+", default=["pca"], choices=METHODS, metavar="METHOD",
        help=f"reductions of the scatterplots ({_METHODS})",
    )  # fmt: skip
    e.add_argument(
        "--size", type=_positive, default=None,
        help="input size in pixels: VMamba a multiple of 32, default 224; a Vim model takes its "
        "own input size, the default",
    )  # fmt: skip
    e.add_argument("--variant", default=None, help="expected variant of a .pth checkpoint")
    e.add_argument(
        "--img-size", type=convert_cli.image_size, default=None, metavar="H",
        help="Vim .pth: the input size it was trained at, when not a released variant's (224)",
    )  # fmt: skip
    e.add_argument(
        "--stride", type=_positive, default=None,
        help="Vim .pth: the patch stride, where --img-size leaves it ambiguous",
    )  # fmt: skip
    e.add_argument("--batch-size", type=_positive, default=8, help="images per extraction batch")
    e.add_argument("--routes", action="store_true", help="also keep per-route mean maps")
    s = add_parser(
        "serve",
        help="the explorer of a study in your browser (a local server)",
        description="Serve the explorer of a study on 127.0.0.1; the page fetches only the rows "
        "a selection needs.",
    )
    s.add_argument("study", type=_path, help="a study folder (jaxmamba explore / demo)")
    s.add_argument("--port", type=_port, default=8765, help="port on 127.0.0.1 (0: any free one)")
    s.add_argument("--no-browser", action="store_true", help="do not open a browser")
    s.add_argument(
        "--with", dest="companions", nargs="+", type=_path, default=None, metavar="STUDY",
        help="studies of other models over the same images, shown beside it (Side by side); "
        "default: the companions the study names (the demo's Vim study)",
    )  # fmt: skip
    x = add_parser(
        "export",
        help="one offline HTML explorer of a small part of a study",
        description="Write a self-contained explorer.html of some orders and blocks of a study, "
        "for sharing; prints its size first and refuses above --max-mb.",
    )
    x.add_argument("study", type=_path, help="a study folder")
    x.add_argument("--out", required=True, type=_path, help="the .html file to write")
    x.add_argument("--orders", nargs="+", default=None, metavar="ORDER", help="default all")
    x.add_argument(
        "--blocks", nargs="+", default=None, metavar="BLOCK",
        help="stage indices or block names; default all",
    )  # fmt: skip
    x.add_argument("--max-mb", type=_megabytes, default=100.0, help="size budget in MB")
    x.add_argument("--routes", action="store_true", help="include per-route maps")
    x.add_argument("--overwrite", action="store_true", help="replace an explorer page there")
    x.add_argument(
        "--no-companions", dest="companions", action="store_false",
        help="leave out the companion studies the study names (other models over the same "
        "images, shown side by side); by default every order and block of each is included",
    )  # fmt: skip
    c = add_parser("convert", help="an official PyTorch checkpoint to an Orbax folder")
    c.description = convert_cli.DESCRIPTION
    convert_cli.add_arguments(c)
    return p


def _blocks(values):
    """``--blocks`` values: ASCII digit strings as stage indices, anything else as a block name
    (which the model or study refuses by name if it has no such block).

    >>> _blocks(["2", "layers.0.blocks.1", "²", "٣"])
    [2, 'layers.0.blocks.1', '²', '٣']
    """
    if values is None:
        return None
    return [int(v) if v.isascii() and v.isdigit() and len(v) < 10 else v for v in values]


def _load_model(path: str, args):
    p = Path(path)
    if p.is_dir():
        from jaxmamba.storage.checkpoint import load

        given = [f for f, v in (("--variant", args.variant), ("--img-size", args.img_size),
                                ("--stride", args.stride)) if v is not None]  # fmt: skip
        if given:
            raise InputError(
                f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} to .pth files; "
                f"{p} is an Orbax folder, whose "
                "config says what it is"
            )
        return load(p)
    from jaxmamba.convert import load_torch_checkpoint

    return load_torch_checkpoint(p, args.variant, img_size=args.img_size, stride=args.stride)


def _models(args):
    """``(models: {order: Model} or Model, orders, sources)`` from --checkpoint and --order."""
    from jaxmamba.models.model import model_order
    from jaxmamba.pretrained import DEFAULT_MODEL_DIR, load_default

    items = args.checkpoint or []
    pairs = [i.split("=", 1) for i in items if "=" in i]
    if pairs and len(pairs) != len(items):
        raise InputError("--checkpoint takes one path, or ORDER=PATH pairs, not both")
    if any(not i.split("=", 1)[-1].strip() for i in items):
        raise InputError("--checkpoint has an empty path; name a file or folder")
    if pairs:
        orders = [o for o, _ in pairs]
        bad = [o for o in orders if o not in ORDER_NAMES]
        if bad or len(set(orders)) < len(orders):
            raise InputError(f"--checkpoint ORDER=PATH needs distinct orders from {_ORDERS}")
        if args.order is not None and list(args.order) != orders:
            raise InputError("--order must list the orders of the ORDER=PATH checkpoints, or go")
        models = {o: _load_model(path, args) for o, path in pairs}
        return models, orders, {o: str(Path(path).absolute()) for o, path in pairs}
    if len(items) > 1:
        raise InputError("--checkpoint takes one path (or ORDER=PATH pairs, one per order)")
    if items:
        model = _load_model(items[0], args)
        orders = args.order or [model_order(model.config, None).name]
        return model, orders, str(Path(items[0]).absolute())
    for flag, value in (("--variant", args.variant), ("--img-size", args.img_size),
                        ("--stride", args.stride)):  # fmt: skip
        if value is not None:
            raise InputError(f"{flag} needs a --checkpoint")
    orders = args.order or ["cross"]
    return load_default(), orders, f"embedded default model ({DEFAULT_MODEL_DIR.name})"


def _bytes_text(n: float) -> str:
    """A byte count in the unit that shows it: ``"512 B"``, ``"3.4 KB"``, ``"1.2 MB"``, ``"7 GB"``.

    >>> _bytes_text(512), _bytes_text(3400), _bytes_text(1.2e6), _bytes_text(7e12)
    ('512 B', '3.4 KB', '1.2 MB', '7000.0 GB')
    """
    if n < 1000:
        return f"{n:.0f} B"
    for unit, scale in (("KB", 1e3), ("MB", 1e6)):
        if n < 1000 * scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e9:.1f} GB"


def _check_resources(config, size: int, batch: int, maps_bytes: int, out: Path, route_maps: bool):
    """Refuse up front, with the estimate and the flag that lowers it, what cannot fit."""
    k = config.k_routes if route_maps else 1
    per_image = maps_bytes * k  # one image's maps, every chosen block
    need = 7 * batch * per_image + 2 * per_image  # extraction temporaries + running sums
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = None
    if available and need > 0.8 * available:
        raise InputError(
            f"averaging {size}x{size} images in batches of {batch} needs about "
            f"{_bytes_text(need)} of memory, {_bytes_text(available)} are free; lower "
            "--batch-size (or --size, or choose fewer --blocks)"
        )
    parent = next(p for p in [out, *out.parents] if p.exists())
    free = shutil.disk_usage(parent).free
    disk = 3 * per_image  # the maps, and the resumable running sums while an order is averaged
    if disk > free:
        raise InputError(
            f"the study needs about {_bytes_text(disk)} of disk at {out}, {_bytes_text(free)} "
            "are free; choose fewer --blocks or --orders, or another --out"
        )


def _explore(args) -> None:
    from jaxmamba.models.model import select_blocks
    from jaxmamba.models.vim_config import VimConfig
    from jaxmamba.storage.images import list_images, load_images
    from jaxmamba.study import estimate_bytes, write_study
    from jaxmamba.study.reader import study_block
    from jaxmamba.views.figures import write_figures

    out = Path(args.out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the study")
    files = list_images(args.images)  # fail on bad paths before loading a model
    if not args.checkpoint:
        _say(NO_CHECKPOINT)
    else:
        _say(f"loading {' '.join(args.checkpoint)}")
    models, orders, sources = _models(args)
    first = models if not isinstance(models, dict) else models[orders[0]]
    config = first.config
    if isinstance(config, VimConfig):
        h, w = config.img_size
        if h != w:
            raise InputError(
                f"{config.name} takes {h}x{w} images; explore loads square images (a study of "
                "other shapes: jaxmamba.study.write_study)"
            )
        if args.size is not None and args.size != h:
            raise InputError(
                f"--size {args.size}: {config.name} takes {h}x{h} images (its position "
                "embedding's size; convert it at another with jaxmamba convert --img-size "
                "--interpolate-pos-embed)"
            )
        args.size = h
    elif args.size is None:
        args.size = 224
    elif args.size % config.reduction:
        raise InputError(f"--size must be a multiple of {config.reduction}, got {args.size}")
    names = select_blocks(config, _blocks(args.blocks))
    blocks = [study_block(config.block(n, (args.size, args.size))) for n in names]
    maps_bytes = estimate_bytes(blocks, 1, 1, False)
    _check_resources(config, args.size, args.batch_size, maps_bytes, out, args.routes)
    _say(f"loading {len(files)} images at {args.size}x{args.size}")
    images, display, files = load_images(files, args.size)
    print(f"{config.describe()}; {len(files)} images at {args.size}x{args.size}")
    study = write_study(
        out, models, images, display, orders=orders, blocks=names, methods=args.method,
        route_maps=args.routes, image_names=[f.name for f in files], sources=sources,
        batch_size=args.batch_size,
    )  # fmt: skip
    _say("drawing the figures")
    figures = write_figures(study)
    print(f"wrote {len(figures)} figures to {study.path / 'figures'}")
    print(f"explore it: jaxmamba serve {study.path}")


def _say(text: str) -> None:
    """A phase's label, printed before it starts (so a slow phase is never silent)."""
    print(text, flush=True)


def demo_image_names(labels) -> list[str]:
    """The demo's image names: each held-out digit with its class.

    >>> demo_image_names([3, 0])
    ['test image 0 (class 3)', 'test image 1 (class 0)']
    """
    return [f"test image {i} (class {int(c)})" for i, c in enumerate(labels)]


VIM_COMPANION = "vim"  # the demo's Vim study: a sub-folder of its study, its companion


def _demo(args) -> None:
    from jaxmamba.pretrained import (
        DEFAULT_IMAGE_SIZE,
        VIM_DIGITS_DIR,
        load_order_models,
        load_vim_digits,
        order_model_dir,
    )
    from jaxmamba.storage import store
    from jaxmamba.study import add_companions, write_study
    from jaxmamba.train.data import load_digits_images
    from jaxmamba.views.export import export
    from jaxmamba.views.figures import write_figures

    out = Path(args.out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the study")
    _say(f"loading the bundled digit models of orders {', '.join(args.order)}")
    models = load_order_models(args.order)  # one model trained in each order
    _say(f"loading {args.images} held-out test digits at {DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE}")
    images, labels = load_digits_images(DEFAULT_IMAGE_SIZE, split="test")
    images, labels = images[: args.images], labels[: args.images]
    study = write_study(
        out, models, images, orders=args.order, methods=args.method, route_maps=True,
        image_names=demo_image_names(labels),
        sources={o: f"bundled digit model trained in order {o} ({order_model_dir(o).name})"
                 for o in args.order},
        batch_size=32,
    )  # fmt: skip
    _say(
        "the bundled digit Vim (vim_digits, trained in its raster path) over the same digits, "
        "shown beside them"
    )
    vim = write_study(
        out / VIM_COMPANION, load_vim_digits(), images, orders=["raster"], methods=args.method,
        route_maps=True, image_names=demo_image_names(labels),
        sources={"raster": f"bundled digit Vim ({VIM_DIGITS_DIR.name})"}, batch_size=32,
    )  # fmt: skip
    study = add_companions(study.path, [VIM_COMPANION])
    _say("drawing the figures")
    figures = write_figures(study) + write_figures(vim)
    page = export(
        study, store.inside(study.path, "explorer.html"), route_maps=True, overwrite=True
    )  # never written through a link out of the study
    print(f"wrote {len(figures)} figures to {study.path / 'figures'}, {vim.path / 'figures'} and "
          f"{page}")  # fmt: skip
    print(f"explore it: jaxmamba serve {study.path}   (or open {page})")


def main(argv=None) -> int:
    """Run the ``jaxmamba`` command; returns the exit status (0, or 2 on any error)."""
    args = parser().parse_args(argv)
    start = time.perf_counter()
    try:
        if args.command == "convert":
            from jaxmamba.convert import cli as convert_cli

            return convert_cli.run(args)
        if args.command == "serve":
            from jaxmamba.views.server import serve

            serve(args.study, args.port, open_browser=not args.no_browser,
                  companions=args.companions)  # fmt: skip
            return 0
        if args.command == "export":
            from jaxmamba.views.export import export

            export(
                args.study, args.out, orders=args.orders, blocks=_blocks(args.blocks),
                route_maps=args.routes, max_mb=args.max_mb, overwrite=args.overwrite,
                companions=args.companions,
            )  # fmt: skip
            return 0
        from jaxmamba.storage.compile_cache import enable_compile_cache

        enable_compile_cache()  # before the first compilation: a rerun loads programs from disk
        _demo(args) if args.command == "demo" else _explore(args)
    except (JaxmambaError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumable = args.command in ("demo", "explore")
        again = "; run the same command again to resume" if resumable else ""
        print(f"interrupted{again}", file=sys.stderr)
        return 130
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0
