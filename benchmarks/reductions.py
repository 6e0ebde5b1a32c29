"""Reductions of one stage-0 block of VMamba-T at 224x224 (3136 patches by their 3136-long
attention rows): PCA, t-SNE and UMAP as jaxmamba runs them, and the alternatives.

    python benchmarks/reductions.py

Two maps: a planted local map (each patch attends to a Gaussian neighbourhood, as trained early
stages do; the hard case for Barnes-Hut t-SNE) and the mean map of two random images under the
official initialisation of vmamba_tiny_s1l8 (block layers.0.blocks.1).  Every t-SNE gets the
same 100-dimensional PCA input, perplexity 30 and a fixed seed; scikit-learn's t-SNE runs with
its own defaults (Barnes-Hut, 1000 iterations) on both cores (``n_jobs=-1``), openTSNE's with
``n_jobs=1`` and ``2``.  UMAP's first call in a process includes numba's compilation.
"""

from __future__ import annotations

import os
import time

import numpy as np


def local_map(h: int = 56, w: int = 56, seed: int = 0) -> np.ndarray:
    r, c = np.divmod(np.arange(h * w), w)
    d2 = (r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2
    rng = np.random.default_rng(seed)
    a = np.exp(-d2 / 8.0) * np.tril(np.ones((h * w, h * w)))
    return (a + 1e-3 * rng.standard_normal(a.shape)).astype(np.float32)


def vmamba_map() -> np.ndarray:
    import jax.numpy as jnp

    import jaxmamba

    model = jaxmamba.create_model("vmamba_tiny_s1l8")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 224, 224, 3)), jnp.float32)
    maps = jaxmamba.extract_attention(model, x, blocks="layers.0.blocks.1")
    return np.asarray(maps["layers.0.blocks.1"]).mean(0)


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    import openTSNE
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from jaxmamba.attention.embed import embed

    rows = []
    maps = {"planted local map": local_map(), "VMamba-T init, mean of 2": vmamba_map()}
    load = os.getloadavg()[0]
    for label, a in maps.items():
        z = PCA(100, random_state=0).fit_transform(a.astype(np.float64))
        rows.append((label, "jaxmamba PCA (embed)", timed(lambda a=a: embed(a, "pca"))))
        rows.append((label, "jaxmamba t-SNE (embed: PCA + openTSNE BH)",
                     timed(lambda a=a: embed(a, "tsne"))))  # fmt: skip
        for jobs in (1, 2):
            rows.append((label, f"openTSNE Barnes-Hut, n_jobs={jobs}", timed(
                lambda z=z, jobs=jobs: openTSNE.TSNE(
                    perplexity=30, initialization="pca", negative_gradient_method="bh",
                    n_jobs=jobs, random_state=0).fit(z))))  # fmt: skip
        rows.append((label, "openTSNE FFT, n_jobs=2", timed(
            lambda z=z: openTSNE.TSNE(perplexity=30, initialization="pca",
                                      negative_gradient_method="fft", n_jobs=2,
                                      random_state=0).fit(z))))  # fmt: skip
        rows.append((label, "scikit-learn t-SNE (Barnes-Hut), n_jobs=-1", timed(
            lambda z=z: TSNE(2, perplexity=30, init="pca", learning_rate="auto",
                             random_state=0, n_jobs=-1).fit_transform(z))))  # fmt: skip
        rows.append((label, "jaxmamba UMAP (embed)", timed(lambda a=a: embed(a, "umap"))))
    print(f"\n3136 points, load average {load:.2f} at the start, {os.cpu_count()} cores")
    print(f"{'map':26} {'reduction':46} {'seconds':>8}")
    for label, what, s in rows:
        print(f"{label:26} {what:46} {s:8.1f}")


if __name__ == "__main__":
    main()
