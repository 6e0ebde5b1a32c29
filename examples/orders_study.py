"""Train a small VMamba on the bundled digits in every patch order; accuracy and the findings.

For each order (cross, diagonal, morton, spiral, zigzag, hilbert with K = 4 routes; raster K = 1;
bidirectional K = 2, the model's ``k_routes`` set to match) and each seed s (model init seed s,
data order/augmentation seed s), trains :func:`jaxmamba.train.loop.default_model_config` (depths
``--depths``) with :func:`jaxmamba.train.loop.fit`, reports the test accuracy, and measures the
paper's findings (:func:`jaxmamba.attention.findings.summarize`: block distinctness, sequence
locality, attention distance per stage) on the mean attention maps of the first ``--n-maps``
test digits. The seed-0 models are also scanned in every other order with the same number of
routes (the order swap table): how much a trained model depends on its order.
Writes ``orders_study.md``, ``orders_study.json`` and ``orders_findings.png`` into ``--out``.

The exact command that produced ``examples/results/`` and the README's study section (its time
is in ``orders_study.md``)::

    python examples/orders_study.py --readme README.md

Quick check (what the tests run, seconds)::

    python examples/orders_study.py --smoke --out /tmp/orders_smoke
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from jaxmamba.attention.findings import summarize, too_few_patches
from jaxmamba.models.config import get_config
from jaxmamba.models.model import create_model
from jaxmamba.orders import ORDER_NAMES, as_order
from jaxmamba.pretrained import default_model_config
from jaxmamba.train import data as D
from jaxmamba.train.evaluate import evaluate_metrics
from jaxmamba.train.loop import fit
from jaxmamba.train.optim import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"
README_START, README_END = "<!-- orders-study:start -->", "<!-- orders-study:end -->"
FINDINGS = ("block_distinctness", "sequence_locality", "attention_distance_norm")


def model_config(order: str, depths=(2, 2, 1, 1), dims: int = 16):
    """The study's model for ``order``: the default model's family with ``k_routes`` = K."""
    base = default_model_config()
    return get_config(
        base,
        depths=tuple(depths),
        dims=tuple(dims * 2**i for i in range(len(depths))),
        k_routes=as_order(order).num_routes(2, 2),
    )


def init_model(config, seed: int):
    """``create_model(config, seed=seed)``: for K < 4 routes, the first K routes' parameters of
    the K = 4 model (each parameter's values are drawn in order from a stream of its own path)."""
    return create_model(config, seed=seed)


def run_one(order, seed, *, epochs, size, depths, dims, train, test, n_maps, batch_size):
    """Train one model; return it and its record (accuracy, timing, findings)."""
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, seed=seed, order=order,
        warmup_epochs=min(1.0, epochs), eval_every=0,
    )  # fmt: skip
    tic = time.perf_counter()
    model = init_model(model_config(order, depths, dims), seed)
    init_s = time.perf_counter() - tic
    tic = time.perf_counter()
    model, history = fit(model, train, None, config, progress=False)
    train_s = time.perf_counter() - tic
    scores = evaluate_metrics(model, *test, order=order)
    tic = time.perf_counter()
    findings = summarize(model, test[0][:n_maps], order=order, batch_size=64, seed=seed)
    return model, {
        "order": order,
        "seed": seed,
        "test_accuracy": scores["accuracy"],
        "test_loss": scores["loss"],
        "init_seconds": init_s,
        "train_seconds": train_s,
        "epoch_seconds": history["seconds"],
        "findings_seconds": time.perf_counter() - tic,
        "history": history,
        "findings": findings,
    }


def _mean_sd(values) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], np.float64)
    if not v.size:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def aggregate(runs: list[dict]) -> dict:
    """Per order: accuracy mean ± sd, steady-state seconds per epoch, findings means per stage."""
    out = {}
    for order in dict.fromkeys(r["order"] for r in runs):
        mine = [r for r in runs if r["order"] == order]
        # the first epoch of an order's first run includes compilation: left out of the timing
        steady = [s for i, r in enumerate(mine) for s in r["epoch_seconds"][(i == 0) :]]
        stages = {}
        for stage, st in mine[0]["findings"]["stages"].items():
            if st["grid"][0] * st["grid"][1] < 2:
                continue  # a 1x1 grid has no spatial structure
            stages[stage] = {"grid": st["grid"], "blocks": st["blocks"]}
            for key in FINDINGS:
                stages[stage][key] = _mean_sd(r["findings"]["stages"][stage][key] for r in mine)
        out[order] = {
            "k_routes": as_order(order).num_routes(2, 2),
            "seeds": [r["seed"] for r in mine],
            "test_accuracy": _mean_sd(r["test_accuracy"] for r in mine),
            "test_loss": _mean_sd(r["test_loss"] for r in mine),
            "seconds_per_epoch": float(np.mean(steady)) if steady else math.nan,
            "train_seconds": float(np.mean([r["train_seconds"] for r in mine])),
            "stages": stages,
        }
    return out


def _no_nan(x):
    """NaN (undefined metrics) as JSON null."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_no_nan(v) for v in x]
    return x


def _f(x, digits=3) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def accuracy_table(summary: dict) -> str:
    rows = [
        "| order | K | test accuracy (mean ± sd) | test loss (mean ± sd) | s / epoch "
        "| train s / run |",
        "|---|---|---|---|---|---|",
    ]
    for order, s in summary.items():
        m, sd = s["test_accuracy"]
        lm, lsd = s["test_loss"]
        rows.append(
            f"| {order} | {s['k_routes']} | {m:.4f} ± {sd:.4f} | {lm:.4f} ± {lsd:.4f} | "
            f"{s['seconds_per_epoch']:.1f} | {s['train_seconds']:.0f} |"
        )
    return "\n".join(rows)


SWAP_NOTE = (
    "Test accuracy / loss of each seed-0 model (rows: the order it was trained in) scanned in "
    "every order with the same number of routes (columns): how much the trained model depends "
    "on its order."
)


def order_swap(models: dict, test) -> dict:
    """``{trained order: {scan order: {"accuracy", "loss"}}}`` among orders with equal K."""
    out = {}
    for trained, model in models.items():
        k = model.config.k_routes
        out[trained] = {
            order: evaluate_metrics(model, *test, order=order)
            for order in models
            if as_order(order).num_routes(2, 2) == k
        }
    return out


def swap_table(swap: dict) -> str:
    """Rows: trained order; columns: scan order (K = 4 orders only); cells: accuracy / loss."""
    cols = [o for o, row in swap.items() if len(row) > 1]
    if not cols:
        return "(no two trained orders share a route count)"
    rows = ["| trained \\ scanned | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for trained in cols:
        cells = [
            f"{swap[trained][c]['accuracy']:.4f} / {swap[trained][c]['loss']:.4f}"
            if c in swap[trained] else "–"
            for c in cols
        ]  # fmt: skip
        rows.append(f"| {trained} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


TOO_FEW = "too few patches"


def _value(stage: dict, key: str) -> float:
    """A stage's finding (mean over seeds), NaN on a grid of too few patches to mean anything."""
    return math.nan if too_few_patches(stage["grid"]) else stage[key][0]


def findings_table(summary: dict) -> str:
    """The findings per order and stage; a stage of fewer than 16 patches (the 2x2 stage 3 of
    64x64 digits) reads "too few patches", not a number.

    >>> st = {"grid": [2, 2], "block_distinctness": [0.5, 0], "sequence_locality": [0.6, 0],
    ...       "attention_distance_norm": [0.4, 0]}
    >>> findings_table({"cross": {"stages": {"layers.3": st}}}).splitlines()[-1]
    '| cross | too few patches | too few patches | too few patches |'
    """
    stages = list(next(iter(summary.values()))["stages"])
    heads = {"block_distinctness": "distinct", "sequence_locality": "locality",
             "attention_distance_norm": "distance"}  # fmt: skip
    cols = [f"{heads[k]} {s.split('.')[1]}" for k in FINDINGS for s in stages]
    rows = ["| order | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for order, s in summary.items():
        vals = [TOO_FEW if too_few_patches(s["stages"][st]["grid"]) else _f(s["stages"][st][k][0])
                for k in FINDINGS for st in stages]  # fmt: skip
        rows.append(f"| {order} | " + " | ".join(vals) + " |")
    return "\n".join(rows)


def figure(summary: dict, path: Path) -> None:
    from jaxmamba.views import plots

    stages = list(next(iter(summary.values()))["stages"])
    titles = {"block_distinctness": "block distinctness (silhouette)",
              "sequence_locality": "sequence locality (Spearman)",
              "attention_distance_norm": "attention distance / grid diagonal"}  # fmt: skip
    fig = plots.figure((13, 3.8))
    axes = fig.subplots(1, 3)
    x = np.arange(len(stages))
    for ax, key in zip(axes, FINDINGS, strict=True):
        for order, s in summary.items():
            ax.plot(x, [_value(s["stages"][st], key) for st in stages], marker="o", label=order)
        ax.set_xticks(x, [f"{st}\n{s['grid'][0]}x{s['grid'][1]}"
                          + (f"\n{TOO_FEW}" if too_few_patches(s["grid"]) else "")
                          for st, s in next(iter(summary.values()))["stages"].items()])  # fmt: skip
        ax.set_title(titles[key], fontsize=10)
        ax.axhline(0, color="grey", lw=0.5)
    axes[-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    plots.save(fig, path, dpi=80)


def readme_block(command: str, setup: str, summary: dict, swap: dict, figure_path: str) -> str:
    """The README's study section body: command, set-up, the three tables, the figure."""
    return (
        f"{README_START}\n"
        f"Produced by `{command}`.\n\n{setup}\n\n"
        f"{accuracy_table(summary)}\n\n"
        f"Order swap: {SWAP_NOTE}\n\n{swap_table(swap)}\n\n"
        "Findings per stage (mean over seeds): distinct = silhouette of block labels in a joint "
        "PCA of the stage's attention rows; locality = Spearman ρ of scan-order distance vs "
        "attention-row distance; distance = attention-weighted mean spatial distance / grid "
        "diagonal.\n\n"
        f"{findings_table(summary)}\n\n"
        f"![findings per order and stage]({figure_path})\n"
        f"{README_END}"
    )


def _marker_span(text: str, path: Path) -> tuple[int, int]:
    i, j = text.find(README_START), text.find(README_END)
    if text.count(README_START) != 1 or text.count(README_END) != 1 or j < i:
        raise ValueError(f"{path}: needs exactly one {README_START} followed by one {README_END}")
    return i, j


def update_readme(path: Path, block: str) -> None:
    """Replace the text between the study markers in ``path`` by ``block`` (atomic write).

    Raises ``ValueError`` (and writes nothing) unless both markers occur once, in order.
    """
    text = path.read_text()
    i, j = _marker_span(text, path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text[:i] + block + text[j + len(README_END) :])
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the study, write the results; return them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", nargs="+", default=list(ORDER_NAMES), choices=ORDER_NAMES)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per order")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--size", type=int, default=64, help="image size (multiple of 32)")
    parser.add_argument("--depths", default="2-2-1-1", help="blocks per stage")
    parser.add_argument("--dims", type=int, default=16, help="stage-0 width")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-maps", type=int, default=128, help="test digits in the mean maps")
    parser.add_argument("--limit", type=int, default=None, help="use only N training images")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--readme", default=None,
        help=f"also rewrite this file's section between {README_START} and {README_END}",
    )  # fmt: skip
    parser.add_argument(
        "--render", action="store_true",
        help="no training: write the tables, figure (and --readme section) again from "
        "--out/orders_study.json",
    )  # fmt: skip
    parser.add_argument(
        "--smoke", action="store_true",
        help="CI check: 1 epoch, 1 seed, 64 images at 32x32, one-stage model, orders cross, "
        "diagonal and raster",
    )  # fmt: skip
    args = parser.parse_args(argv)
    readme = None if args.readme is None else Path(args.readme)
    if readme is not None:  # checked before hours of training, not after
        try:
            _marker_span(readme.read_text(), readme)
        except (OSError, ValueError) as e:
            parser.error(f"--readme: {e}")
    if args.render:  # the tables, figure and README section again, from the saved record
        out = Path(args.out)
        return write_results(json.loads((out / "orders_study.json").read_text()), out, readme)
    if args.smoke:
        args.epochs, args.seeds, args.limit, args.n_maps, args.batch_size = 1, 1, 64, 16, 32
        args.depths, args.dims, args.size = "1", 8, 32
        if args.orders == list(ORDER_NAMES):
            args.orders = ["cross", "diagonal", "raster"]
    depths = tuple(int(d) for d in args.depths.split("-"))
    command = "python examples/orders_study.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    train = D.load_digits_images(args.size, split="train")
    test = D.load_digits_images(args.size, split="test")
    if args.limit is not None:
        train = (train[0][: args.limit], train[1][: args.limit])
        test = (test[0][: args.limit], test[1][: args.limit])
    runs, first = [], {}
    tic = time.perf_counter()
    for order in args.orders:
        for seed in range(args.seeds):
            model, r = run_one(
                order, seed, epochs=args.epochs, size=args.size, depths=depths, dims=args.dims,
                train=train, test=test, n_maps=args.n_maps, batch_size=args.batch_size,
            )  # fmt: skip
            runs.append(r)
            if seed == 0:
                first[order] = model
            print(
                f"{order:13s} seed {seed}: test acc {r['test_accuracy']:.4f}, "
                f"train {r['train_seconds']:.0f} s, findings {r['findings_seconds']:.0f} s "
                f"({time.perf_counter() - tic:.0f} s so far)",
                flush=True,
            )
    swap = order_swap(first, test)
    summary = aggregate(runs)
    total = time.perf_counter() - tic
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model_config("cross", depths, args.dims)
    setup = (
        f"Model: {cfg.describe()} (k_routes = K of the order), {args.size}x{args.size} digits, "
        f"{len(train[1])} train / {len(test[1])} test images, {args.epochs} epochs, batch "
        f"{args.batch_size}, seeds 0..{args.seeds - 1} (init and data), default AdamW schedule. "
        f"Findings on the mean maps of the first {min(args.n_maps, len(test[1]))} test digits, "
        f"averaged over seeds. Total {total:.0f} s."
    )
    record = {"command": command, "setup": setup, "total_seconds": total, "summary": summary,
              "order_swap": swap, "runs": runs}  # fmt: skip
    text = json.dumps(_no_nan(record), indent=1, default=float, allow_nan=False)
    (out / "orders_study.json").write_text(text + "\n")
    return write_results(record, out, readme)


def write_results(record: dict, out: Path, readme: Path | None) -> dict:
    """``orders_study.md``, ``orders_findings.png`` (and the README section) from a record."""
    command, setup, summary, swap = (record[k] for k in ("command", "setup", "summary",
                                                         "order_swap"))  # fmt: skip
    md = (
        f"# Orders study\n\nProduced by `{command}`.\n\n{setup}\n\n## Test accuracy\n\n"
        f"{accuracy_table(summary)}\n\ns / epoch: steady state (the first epoch of each order's "
        "first run, which compiles, left out); train s / run: mean wall time of `fit`.\n\n"
        "## Order swap (seed 0)\n\n"
        f"{swap_table(swap)}\n\n{SWAP_NOTE}\n\n"
        "## Findings per stage\n\n"
        f"{findings_table(summary)}\n\n"
        "distinct: silhouette of block labels in a joint PCA of the stage's blocks' attention rows "
        "(`findings.block_distinctness`); locality: Spearman ρ between scan-order distance "
        "(min over routes) and attention-row distance (`findings.sequence_locality`); distance: "
        "attention-weighted mean spatial distance / grid diagonal "
        "(`findings.attention_distance(normalize=True)`).\n"
    )
    (out / "orders_study.md").write_text(md)
    figure(summary, out / "orders_findings.png")
    if readme is not None:
        fig = os.path.relpath(out / "orders_findings.png", readme.resolve().parent)
        update_readme(readme, readme_block(command, setup, summary, swap, Path(fig).as_posix()))
    print(md)
    return record


if __name__ == "__main__":
    main()
