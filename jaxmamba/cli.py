"""The ``jaxmamba`` command (also ``python -m jaxmamba``).

    jaxmamba demo --out demo
    jaxmamba explore --checkpoint vssm1_tiny_0230s_ckpt_epoch_264.pth \\
        --images photos/ --out out --order cross spiral --blocks 0 3 --method pca tsne
    jaxmamba convert vssm1_tiny_0230s_ckpt_epoch_264.pth --out vmamba_t

Every failure is one line ``error: ...`` on stderr and exit status 2, with nothing written.
"""

from __future__ import annotations

import argparse
import sys

from jaxmamba.orders import ORDER_NAMES
from jaxmamba.reduce import METHODS

__all__ = ["main", "parser"]

_ORDERS = ", ".join(ORDER_NAMES)
_METHODS = ", ".join(METHODS)


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jaxmamba`` command."""
    from jaxmamba.convert import cli as convert_cli

    p = argparse.ArgumentParser(
        prog="jaxmamba",
        description="Exact hidden attention of VMamba models: extract, average and explore it.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo",
        help="the embedded default model on the bundled digits",
        description="Average the attention of the embedded default model over held-out digits "
        "in several scan orders and write figures and an offline explorer.",
    )
    d.add_argument("--out", required=True, help="output folder (created)")
    d.add_argument("--images", type=int, default=200, help="held-out digits to average over")
    d.add_argument(
        "--order", nargs="+", default=["cross", "diagonal", "morton", "spiral"], metavar="ORDER",
        help=f"scan orders ({_ORDERS})",
    )  # fmt: skip
    d.add_argument(
        "--method", nargs="+", default=["pca", "tsne"], choices=METHODS, metavar="METHOD",
        help=f"reductions of the scatterplots ({_METHODS})",
    )  # fmt: skip
    e = sub.add_parser(
        "explore",
        help="a checkpoint (.pth or Orbax folder) on your images",
        description="Average the attention of a checkpoint over your images in the given scan "
        "orders and write figures and an offline explorer.",
    )
    e.add_argument("--checkpoint", required=True, help=".pth/.safetensors file or Orbax folder")
    e.add_argument("--images", required=True, nargs="+", help="image files or folders")
    e.add_argument("--out", required=True, help="output folder (created)")
    e.add_argument(
        "--order", nargs="+", default=["cross"], metavar="ORDER", help=f"scan orders ({_ORDERS})"
    )
    e.add_argument(
        "--blocks", nargs="+", default=None, metavar="BLOCK",
        help="stage indices (0 1 ...) or block names (layers.0.blocks.1); default all blocks",
    )  # fmt: skip
    e.add_argument(
        "--method", nargs="+", default=["pca"], choices=METHODS, metavar="METHOD",
        help=f"reductions of the scatterplots ({_METHODS})",
    )  # fmt: skip
    e.add_argument("--size", type=int, default=224, help="input size (a multiple of 32)")
    e.add_argument("--variant", default=None, help="expected variant of a .pth checkpoint")
    e.add_argument("--batch-size", type=int, default=8, help="images per extraction batch")
    c = sub.add_parser("convert", help="an official PyTorch checkpoint to an Orbax folder")
    c.description = convert_cli.DESCRIPTION
    convert_cli.add_arguments(c)
    return p


def _blocks(values):
    if values is None:
        return None
    return [int(v) if v.isdigit() else v for v in values]


def _demo(args) -> dict:
    from jaxmamba import pipeline
    from jaxmamba.data import load_digits_images
    from jaxmamba.pretrained import DEFAULT_IMAGE_SIZE, load_default

    model = load_default()
    images, _ = load_digits_images(DEFAULT_IMAGE_SIZE, split="test")
    images = images[: args.images]
    lo, hi = images.min(), images.max()
    display = ((images - lo) / (hi - lo) * 255).astype("uint8")
    return pipeline.run(model, images, display, args.out, orders=args.order, methods=args.method)


def _explore(args) -> dict:
    from pathlib import Path

    from jaxmamba import pipeline
    from jaxmamba.images import list_images, load_images

    path = Path(args.checkpoint)
    files = list_images(args.images)  # fail on bad paths before loading a model
    if path.is_dir():
        from jaxmamba.checkpoint import load

        model = load(path)
    else:
        from jaxmamba.convert import load_torch_checkpoint

        model = load_torch_checkpoint(path, args.variant)
    if args.size % model.config.reduction:
        raise ValueError(f"--size must be a multiple of {model.config.reduction}")
    images, display, files = load_images(files, args.size)
    print(f"{model.config.describe()}; {len(files)} images at {args.size}x{args.size}")
    return pipeline.run(
        model, images, display, args.out, orders=args.order, blocks=_blocks(args.blocks),
        methods=args.method, batch_size=args.batch_size,
    )  # fmt: skip


def main(argv=None) -> int:
    """Run the ``jaxmamba`` command; returns the exit status (0, or 2 on any error)."""
    args = parser().parse_args(argv)
    try:
        if args.command == "convert":
            from jaxmamba.convert import cli as convert_cli

            return convert_cli.run(args)
        summary = _demo(args) if args.command == "demo" else _explore(args)
    except (ValueError, OSError) as e:  # every library error is a JaxmambaError (a ValueError)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(
        f"wrote {len(summary['figures'])} figures and {summary['explorer']} "
        f"({summary['images']} images, {summary['seconds']} s)"
    )
    return 0
