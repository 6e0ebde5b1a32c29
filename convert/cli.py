"""Command line: convert an official VMamba or Vision Mamba checkpoint to a jaxmamba Orbax
checkpoint directory.

    jaxmamba convert vssm1_tiny_0230s_ckpt_epoch_264.pth --out ckpt/vmamba_tiny_s1l8
    python -m jaxmamba.convert vssm1_tiny_0230s_ckpt_epoch_264.pth --out ckpt/vmamba_tiny_s1l8
    jaxmamba convert vim_t_midclstok_76p1acc.pth --out ckpt/vim_tiny --img-size 224

On any error it prints ``error: <message>`` to stderr, exits with status 2 and writes nothing.
``--out`` is never ``/``, the home folder, the current directory, a folder that holds one of
them or the input; ``--overwrite`` replaces only a folder that jaxmamba wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxmamba.errors import CheckpointError, JaxmambaError
from jaxmamba.storage.checkpoint import save
from jaxmamba.storage.store import guard

from .checkpoint_io import load_torch_checkpoint

DESCRIPTION = (
    "Convert an official VMamba or Vision Mamba (Vim) PyTorch checkpoint "
    "(.pth/.pt/.bin/.safetensors) to a jaxmamba Orbax checkpoint directory."
)


def image_size(text: str) -> tuple[int, int]:
    """``"224"`` → ``(224, 224)``, ``"48x80"`` → ``(48, 80)`` (an ``--img-size`` value).

    >>> image_size("48x80")
    (48, 80)
    """
    parts = text.lower().split("x")
    if len(parts) in (1, 2) and all(p.isdigit() and int(p) > 0 for p in parts):
        h = int(parts[0])
        return h, int(parts[-1])
    raise argparse.ArgumentTypeError(f"expected H or HxW (positive integers), got {text!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jaxmamba.convert", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The converter's options (``jaxmamba convert`` and ``python -m jaxmamba.convert``)."""
    parser.add_argument("input", metavar="IN", help="checkpoint file to convert")
    parser.add_argument("--out", metavar="DIR", required=True, help="checkpoint directory to write")
    parser.add_argument(
        "--variant",
        help="variant name the checkpoint must be (detected from the shapes if omitted)",
    )
    parser.add_argument("--ema", action="store_true", help="convert the 'model_ema' weights")
    parser.add_argument(
        "--img-size",
        type=image_size,
        metavar="H[xW]",
        help="Vim: the input size the checkpoint was trained at (or, with "
        "--interpolate-pos-embed, the size to convert to); default: a registered variant's",
    )
    parser.add_argument(
        "--stride", type=int, help="Vim: the patch stride, where --img-size leaves it ambiguous"
    )
    parser.add_argument(
        "--interpolate-pos-embed",
        action="store_true",
        help="Vim: resample the position embedding to --img-size (bicubic, CLS entry kept)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DIR if it is a jaxmamba checkpoint (any other folder is never replaced)",
    )


def run(args: argparse.Namespace) -> int:
    """Convert as ``args`` say; raises a :class:`~jaxmamba.errors.JaxmambaError` on bad input."""
    source = Path(args.input).expanduser().absolute()
    try:  # never /, ~, the current directory, a folder holding them or the input
        out = guard(args.out, protect=[source])
    except CheckpointError as e:
        raise CheckpointError(f"--out {e}") from None
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise CheckpointError(f"{out} already exists; pass --overwrite to replace it")
    model = load_torch_checkpoint(
        source, args.variant, ema=args.ema, img_size=args.img_size, stride=args.stride,
        interpolate_pos_embed=args.interpolate_pos_embed,
    )  # fmt: skip
    path = save(model, out, overwrite=args.overwrite)
    print(f"detected {model.config.describe()}")
    print(f"{model.num_params:,} parameters")
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the exit status (0 on success, 2 on any error).

    >>> main(["missing.pth", "--out", "never_written"])  # doctest: +SKIP
    2
    """
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except (JaxmambaError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
