"""Learn a patch order for one stage by gradient descent on an attention objective.

The ordering logits ``(K, L, L)`` of one stage grid (default stage 1 of the 64x64 default model,
an 8x8 grid) become soft routes (:func:`jaxmamba.orders.soft.soft_routes`, Sinkhorn), used in
place of the stage's permutations; every other grid keeps the cross order. The objective is
computed from :func:`jaxmamba.attention.extract.extract_attention` with those soft routes on a
few test digits and minimised with optax Adam, starting near ``cross``:

* ``distance``: the attention-weighted mean spatial distance of the stage's mean map, over the
  grid diagonal (:func:`jaxmamba.attention.findings.attention_distance`) — a more local order;
* ``locality`` (default): minus the Pearson correlation between the soft scan distance (expected
  scan positions ``Σ_t t·P_k[t, p]``, min over routes) and the attention-row distance — a
  differentiable surrogate of :func:`jaxmamba.attention.findings.sequence_locality`.

The Sinkhorn temperature anneals from 1 to 0.1. After every step the soft routes are rounded to
a hard order by linear assignment (:func:`jaxmamba.orders.soft.hard_routes`) and scored; the best
rounded order (cross included) is kept, because a soft order can lower the objective by blurring
in ways no permutation can. The hard orders' objective is printed before (cross) and after, and
route 0 of the learned order drawn next to cross, hilbert, spiral and morton in
``learned_order.png`` (its record in ``learned_order.json``).

The exact command that produced ``examples/results/learned_order.png`` (a few minutes on 2 CPU
cores)::

    python examples/learn_order.py --steps 30 --accuracy

Quick check (what the tests run)::

    python examples/learn_order.py --steps 2 --images 1 --out /tmp/learned_order.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmamba.attention import findings as metrics
from jaxmamba.attention.extract import extract_attention
from jaxmamba.orders import make_routes
from jaxmamba.orders import soft as so
from jaxmamba.pretrained import DEFAULT_IMAGE_SIZE, load_default
from jaxmamba.train import data as D
from jaxmamba.train.evaluate import evaluate

RESULTS = Path(__file__).resolve().parent / "results"
OBJECTIVES = ("distance", "locality")


def _grid_distance(h, w):
    r, c = np.divmod(np.arange(h * w), w)
    return jnp.asarray(
        np.hypot(r[:, None] - r[None], c[:, None] - c[None]) / np.hypot(h - 1, w - 1)
    )


def objective_fn(model, images, stage: int, grids, objective: str):
    """``f(stage soft routes (K, L, L)) -> scalar`` to minimise; other grids scan in cross."""
    h, w = grids[stage]
    fixed = {
        g: jax.nn.one_hot(make_routes("cross", *g), g[0] * g[1], dtype=jnp.float32)
        for i, g in enumerate(grids)
        if i != stage
    }
    block = f"layers.{stage}.blocks.0"
    dist = _grid_distance(h, w)
    t = jnp.arange(h * w, dtype=jnp.float32)

    def f(soft):
        order = {**fixed, (h, w): soft}
        a = jnp.mean(extract_attention(model, images, order=order, blocks=block)[block], axis=0)
        if objective == "distance":
            return jnp.sum(jnp.abs(a) * dist) / jnp.sum(jnp.abs(a))
        pos = jnp.einsum("t,ktp->kp", t, soft)  # expected scan position of every patch
        d_scan = jnp.min(jnp.abs(pos[:, :, None] - pos[:, None, :]), axis=0)
        diff = a[:, None, :] - a[None, :, :]
        d_rows = jnp.sqrt(jnp.sum(diff**2, axis=-1) + 1e-12)
        iu = jnp.triu_indices(h * w, k=1)
        x, y = d_scan[iu], d_rows[iu]
        x, y = x - x.mean(), y - y.mean()
        return -jnp.sum(x * y) / jnp.sqrt(jnp.sum(x**2) * jnp.sum(y**2))

    return f


def hard_objective(model, images, stage, grids, objective, routes) -> float:
    """The objective's exact version (:mod:`jaxmamba.attention.findings`) for hard ``routes``
    of the stage."""
    h, w = grids[stage]
    order = {g: make_routes("cross", *g) for g in grids}
    order[(h, w)] = np.asarray(routes)
    block = f"layers.{stage}.blocks.0"
    a = np.asarray(extract_attention(model, images, order=order, blocks=block)[block]).mean(0)
    if objective == "distance":
        return metrics.attention_distance(a, h, w, normalize=True)
    return -metrics.sequence_locality(a, routes)


def learn(model, images, *, stage=1, objective="distance", steps=30, lr=0.2, scale=3.0,
          temperature=(1.0, 0.1), n_iters=20, seed=0, log=print):  # fmt: skip
    """Optimise the ordering logits of ``stage``; return ``(best hard routes (K, L), history)``.

    The Sinkhorn temperature anneals geometrically from ``temperature[0]`` to
    ``temperature[1]``, so that the soft routes sharpen towards a permutation. After every step
    the soft routes are rounded (:func:`jaxmamba.orders.soft.hard_routes`) and the rounded order
    scored with the same objective (exact permutation matrices as soft routes, so nothing
    recompiles); the best rounded order seen, cross included, is returned.
    History: ``{"soft": [...], "hard": [...]}`` per step.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    height, width = images.shape[1:3]
    cfg = model.config
    grids = [cfg.stage_grid(i, height, width) for i in range(cfg.num_stages)]
    h, w = grids[stage]
    l = h * w
    f = objective_fn(model, images, stage, grids, objective)
    cross = make_routes("cross", h, w)
    noise = 0.1 * jax.random.normal(jax.random.PRNGKey(seed), (cfg.k_routes, l, l))
    logits = so.route_logits(cross, scale) + noise
    tx = optax.adam(lr)
    state = tx.init(logits)
    t0, t1 = temperature

    @jax.jit
    def step(logits, state, temp):
        loss, g = jax.value_and_grad(lambda z: f(so.soft_routes(z, temp, n_iters)))(logits)
        updates, state = tx.update(g, state)
        return optax.apply_updates(logits, updates), state, loss

    score = jax.jit(lambda routes: f(jax.nn.one_hot(routes, l, dtype=jnp.float32)))
    best, best_value = cross, float(score(cross))
    history = {"soft": [], "hard": []}
    for i in range(steps):
        temp = t0 * (t1 / t0) ** (i / max(steps - 1, 1))
        logits, state, loss = step(logits, state, temp)
        hard = so.hard_routes(so.soft_routes(logits, temp, n_iters))
        value = float(score(hard))
        history["soft"].append(float(loss))
        history["hard"].append(value)
        if value < best_value:
            best, best_value = hard, value
        if i % 5 == 0 or i == steps - 1:
            log(f"step {i:3d}: temperature {temp:.3f}, soft objective {float(loss):.4f}, "
                f"rounded {value:.4f}")  # fmt: skip
    return best, history


def _path(ax, route, h, w, title):
    r, c = np.divmod(np.asarray(route), w)
    ax.plot(c, r, color="0.6", lw=1)
    ax.scatter(c, r, c=np.arange(len(route)), cmap="viridis", s=18, zorder=3)
    ax.scatter(c[:1], r[:1], marker="s", s=50, color="red", zorder=4)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def figure(learned, h, w, path, title):
    from jaxmamba.views import plots

    names = ["cross", "hilbert", "spiral", "morton"]
    fig = plots.figure((3.0 * (len(names) + 1), 3.4))
    axes = fig.subplots(1, len(names) + 1)
    _path(axes[0], learned[0], h, w, title)
    for ax, name in zip(axes[1:], names, strict=True):
        _path(ax, make_routes(name, h, w)[0], h, w, name)
    fig.suptitle("route 0 on the stage grid (red square: start, colour: scan position)", fontsize=9)
    plots.save(fig, path, dpi=80)


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default ``sys.argv[1:]``), learn an order, plot it; return the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--objective", choices=OBJECTIVES, default="locality")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--images", type=int, default=8, help="test digits in the objective")
    parser.add_argument("--accuracy", action="store_true", help="also test accuracy before/after")
    parser.add_argument("--out", default=str(RESULTS / "learned_order.png"))
    args = parser.parse_args(argv)
    model = load_default()
    x, y = D.load_digits_images(DEFAULT_IMAGE_SIZE, split="test")
    images = jnp.asarray(x[: args.images])
    height, width = images.shape[1:3]
    grids = [model.config.stage_grid(i, height, width) for i in range(model.config.num_stages)]
    h, w = grids[args.stage]
    tic = time.perf_counter()
    routes, history = learn(
        model, images, stage=args.stage, objective=args.objective, steps=args.steps, lr=args.lr
    )
    seconds = time.perf_counter() - tic
    cross = make_routes("cross", h, w)
    before = hard_objective(model, images, args.stage, grids, args.objective, cross)
    after = hard_objective(model, images, args.stage, grids, args.objective, routes)
    record = {
        "stage": args.stage, "grid": [h, w], "objective": args.objective, "steps": args.steps,
        "images": args.images, "history": history, "hard_before_cross": before,
        "hard_after_learned": after, "learned_routes": routes.tolist(), "seconds": seconds,
    }  # fmt: skip
    print(f"{args.objective} objective (hard orders, stage {args.stage} {h}x{w}): "
          f"cross {before:.4f} -> learned {after:.4f}; soft {history['soft'][0]:.4f} -> "
          f"{history['soft'][-1]:.4f}; {seconds:.0f} s")  # fmt: skip
    if args.accuracy:
        learned = {g: make_routes("cross", *g) for g in grids}
        learned[(h, w)] = routes
        record["accuracy_cross"] = evaluate(model, x, y, order="cross")
        record["accuracy_learned"] = evaluate(model, x, y, order=learned)
        print(f"test accuracy: cross {record['accuracy_cross']:.4f}, learned order "
              f"{record['accuracy_learned']:.4f}")  # fmt: skip
    if args.objective == "locality":
        title = f"learned (sequence locality ρ {-before:.3f} → {-after:.3f})"
    else:
        title = f"learned (attention distance {before:.3f} → {after:.3f})"
    figure(routes, h, w, args.out, title)
    Path(args.out).with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
