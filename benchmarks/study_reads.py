"""How fast a study answers the heat-map reads of the explorer, at the paper's scale.

    python benchmarks/study_reads.py

A synthetic VMamba-T study at 224x224 (:func:`jaxmamba.study.write_synthetic_study`); the reads
of one 56x56 block (L = 3136, a 39 MB map) through :meth:`jaxmamba.study.Study.heat`, which
reads just the rows (or row blocks, for columns) it needs with ordinary reads (no memory map).
Each read is repeated warm (the file in the page cache); the table gives the median.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from jaxmamba.study import Study, write_synthetic_study

BLOCK = "layers.0.blocks.1"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        study = Study(write_synthetic_study(Path(tmp) / "s").path)
        lasso = np.concatenate([np.arange(r * 56 + 10, r * 56 + 35) for r in range(10, 30)])
        scattered = np.random.default_rng(0).choice(3136, 500, replace=False)
        cases = [("mean of 500 rows (a lasso: 20 runs)", lasso, "query"),
                 ("mean of 500 scattered rows", scattered, "query"),
                 ("mean of 500 columns", lasso, "source"),
                 ("one row", [77], "query"), ("one column", [77], "source")]  # fmt: skip
        print(f"{'read of ' + BLOCK + ' (L = 3136)':<44} {'median ms':>10}")
        for label, patches, direction in cases:
            study.heat("cross", BLOCK, patches, direction)  # warm
            times = []
            for _ in range(20):
                t0 = time.perf_counter()
                study.heat("cross", BLOCK, patches, direction)
                times.append(time.perf_counter() - t0)
            print(f"{label:<44} {1e3 * np.median(times):>10.2f}")


if __name__ == "__main__":
    main()
