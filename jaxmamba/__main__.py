"""Command line: ``python -m jaxmamba demo --out DIR`` and ``python -m jaxmamba explore ...``.

    python -m jaxmamba demo --out demo
    python -m jaxmamba explore --checkpoint vssm1_tiny_0230s_ckpt_epoch_264.pth \\
        --images photos/ --out out --order cross spiral --blocks 0 3 --method pca tsne
"""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jaxmamba", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the embedded default model on bundled digits")
    d.add_argument("--out", required=True, help="output folder")
    d.add_argument("--images", type=int, default=200, help="held-out digits to average over")
    d.add_argument("--order", nargs="+", default=["cross", "diagonal", "morton", "spiral"])
    d.add_argument("--method", nargs="+", default=["pca", "tsne"], choices=["pca", "tsne", "umap"])
    e = sub.add_parser("explore", help="a real checkpoint (.pth or Orbax folder) on real images")
    e.add_argument("--checkpoint", required=True, help=".pth/.safetensors file or Orbax folder")
    e.add_argument("--images", required=True, nargs="+", help="image files or folders")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--order", nargs="+", default=["cross"])
    e.add_argument("--blocks", nargs="+", default=None, help="stage indices or block names")
    e.add_argument("--method", nargs="+", default=["pca"], choices=["pca", "tsne", "umap"])
    e.add_argument("--size", type=int, default=224, help="input size (a multiple of 32)")
    e.add_argument("--variant", default=None, help="expected variant of a .pth checkpoint")
    e.add_argument("--batch-size", type=int, default=8)
    return p


def _blocks(values):
    if values is None:
        return None
    return [int(v) if v.isdigit() else v for v in values]


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from jaxmamba import demo

    try:
        if args.command == "demo":
            from jaxmamba.data import load_digits_images
            from jaxmamba.train import DEFAULT_IMAGE_SIZE, load_default

            model = load_default()
            images, _ = load_digits_images(DEFAULT_IMAGE_SIZE, split="test")
            images = images[: args.images]
            lo, hi = images.min(), images.max()
            display = ((images - lo) / (hi - lo) * 255).astype("uint8")
            summary = demo.run(
                model, images, display, args.out, orders=args.order, methods=args.method
            )
        else:
            from pathlib import Path

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
            summary = demo.run(
                model, images, display, args.out, orders=args.order, blocks=_blocks(args.blocks),
                methods=args.method, batch_size=args.batch_size,
            )  # fmt: skip
    except ValueError as e:  # every library error is a ValueError subclass
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(summary['figures'])} figures and {summary['explorer']} "
          f"({summary['images']} images, {summary['seconds']} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
