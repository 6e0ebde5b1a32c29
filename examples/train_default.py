"""Train jaxmamba's default model (or the digit Vim) on the bundled digits, save it in the package.

The exact command that produced ``jaxmamba/default_model`` (about 6 minutes on 2 CPU cores)::

    python examples/train_default.py

It trains :func:`jaxmamba.pretrained.default_model_config` (a v05_noz VMamba, dims 16, depths
1-1-2-1) at 64x64 in the ``cross`` order with
:data:`jaxmamba.train.recipe.DEFAULT_TRAIN_CONFIG`, then writes the checkpoint with
``jaxmamba.save`` plus ``TRAINING.json``/``TRAINING.md``. Interrupted runs resume from
``--work-dir``. Options override the defaults, e.g. a quick check::

    python examples/train_default.py --epochs 1 --size 32 --dims 8 --depths 1 --limit 128 \\
        --out /tmp/digits_model

``--family vim`` trains the registered ``vim_digits`` config (a 4-layer Vision Mamba on 8x8
patches of the 64x64 digits) in its official path with the same recipe; the command that
produced ``jaxmamba/vim_digits_model``::

    python examples/train_default.py --family vim --out jaxmamba/vim_digits_model --no-progress

For Vim, ``--dims`` sets ``embed_dim``, ``--depths`` the number of layers (one number) and
``--size`` the input size (the config's ``img_size``).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from jaxmamba.models.config import ModelConfig, get_config
from jaxmamba.pretrained import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MODEL_DIR,
    VIM_DIGITS_DIR,
    default_model_config,
)
from jaxmamba.train.recipe import DEFAULT_ORDERS, DEFAULT_TRAIN_CONFIG, train_digits


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default ``sys.argv[1:]``), train, save; return the training record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = DEFAULT_TRAIN_CONFIG
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--seed", type=int, default=d.seed, help="data order and augmentation")
    parser.add_argument("--model-seed", type=int, default=0, help="model initialisation")
    parser.add_argument("--family", choices=tuple(DEFAULT_ORDERS), default="vmamba")
    parser.add_argument("--order", default=None, help="default: cross (VMamba), raster (Vim)")
    parser.add_argument("--size", type=int, default=DEFAULT_IMAGE_SIZE, help="image size")
    parser.add_argument("--dims", type=int, default=None, help="stage-0 width (default 16)")
    parser.add_argument("--depths", default=None, help="blocks per stage, e.g. 1-1-2-1")
    parser.add_argument("--limit", type=int, default=None, help="use only N training images")
    parser.add_argument("--out", default=None, help="checkpoint directory (default: the package's)")
    parser.add_argument("--work-dir", default=None, help="resumable training checkpoints")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    model_config = _model_config(args)
    out = args.out or str(VIM_DIGITS_DIR if args.family == "vim" else DEFAULT_MODEL_DIR)
    config = d.replace(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        order=args.order or DEFAULT_ORDERS[args.family],
        warmup_epochs=min(d.warmup_epochs, args.epochs),
    )  # fmt: skip
    command = "python examples/train_default.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    record = train_digits(
        model_config, config, size=args.size, out=out, work_dir=args.work_dir,
        limit=args.limit, model_seed=args.model_seed, command=command,
        progress=not args.no_progress, overwrite=True,
    )  # fmt: skip
    print(
        f"{record['model']}: test accuracy {record['test_accuracy']:.4f} after "
        f"{record['train_seconds']:.0f} s; saved to {out}"
    )
    return record


def _model_config(args: argparse.Namespace) -> ModelConfig:
    """The config to train: the default model's or ``vim_digits``, with the size overrides."""
    if args.family == "vim":
        changes: dict = {}
        if args.dims is not None:
            changes["embed_dim"] = args.dims
        if args.depths is not None:
            changes["depth"] = int(args.depths)
        if args.size != DEFAULT_IMAGE_SIZE:
            changes["img_size"] = args.size
        return get_config("vim_digits", **changes)
    model_config: ModelConfig = default_model_config()
    if args.dims is not None or args.depths is not None:
        depths = model_config.depths
        if args.depths is not None:
            depths = tuple(int(x) for x in args.depths.split("-"))
        base = model_config.dims[0] if args.dims is None else args.dims
        dims = tuple(base * 2**i for i in range(len(depths)))
        model_config = get_config(model_config, depths=depths, dims=dims)
    return model_config


if __name__ == "__main__":
    main()
