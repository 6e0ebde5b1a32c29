"""Command line: convert an official VMamba checkpoint to a jaxmamba Orbax checkpoint directory.

    python -m jaxmamba.convert vssm1_tiny_0230s_ckpt_epoch_264.pth --out ckpt/vmamba_tiny_s1l8

On any error it prints ``error: <message>`` to stderr, exits with status 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxmamba.checkpoint import CheckpointError, save

from .checkpoint_io import load_torch_checkpoint


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jaxmamba.convert",
        description="Convert an official VMamba PyTorch checkpoint (.pth/.pt/.bin/.safetensors) "
        "to a jaxmamba Orbax checkpoint directory.",
    )
    parser.add_argument("input", metavar="IN", help="checkpoint file to convert")
    parser.add_argument("--out", metavar="DIR", required=True, help="checkpoint directory to write")
    parser.add_argument(
        "--variant",
        help="variant name the checkpoint must be (detected from the shapes if omitted)",
    )
    parser.add_argument("--ema", action="store_true", help="convert the 'model_ema' weights")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace DIR if it exists and is not empty"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the exit status (0 on success, 2 on any error).

    >>> main(["missing.pth", "--out", "never_written"])  # doctest: +SKIP
    2
    """
    args = _parser().parse_args(argv)
    out = Path(args.out)
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
            raise CheckpointError(f"{out} already exists; pass --overwrite to replace it")
        model = load_torch_checkpoint(args.input, args.variant, ema=args.ema)
        path = save(model, out, overwrite=args.overwrite)
    except (CheckpointError, ImportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"detected {model.config.describe()}")
    print(f"{model.num_params:,} parameters")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
