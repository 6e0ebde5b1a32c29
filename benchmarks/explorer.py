"""The served explorer at the paper's scale, driven by headless Chromium: load time, the latency
of clicks, lassos and switches, the bytes they move, and the server's memory.

    python benchmarks/explorer.py                  # a synthetic VMamba-T study at 224x224
    python benchmarks/explorer.py --study STUDY    # any study folder

The synthetic study (:func:`jaxmamba.study.write_synthetic_study`) has the sizes of the
reference study: VMamba-T (vmamba_tiny_s1l8) at 224x224, 14 blocks (two of them 56x56, L =
3136), 4 orders: 339 MB of maps.  The server runs as ``jaxmamba serve`` in its own process; its
peak resident memory is read from ``/proc``.  Latencies are measured in the page, from the
interaction to the finished redraw (``performance.now``), over fresh selections (no cache hit).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip

TIMED = """
const [what, arg, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const t0 = performance.now(), n0 = performance.getEntriesByType('resource').length;
const idle = () => explorer.busy === 0 ? Promise.resolve() :
  new Promise((r) => setTimeout(() => idle().then(r), 2));
const act = what === 'select' ? explorer.select(arg) :
  (explorer.setControl(arg[0], arg[1]), Promise.resolve());
act.then(idle).then(() => {
  const entries = performance.getEntriesByType('resource').slice(n0);
  done([performance.now() - t0, entries.reduce((s, e) => s + e.transferSize, 0), entries.length,
        explorer.error]);
});
"""


def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for f in (*CHROME_FLAGS, f"--user-data-dir={tempfile.mkdtemp()}", "--window-size=1300,1000"):
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_script_timeout(60)
    return d


def rss_peak_mb(pid: int) -> float:
    text = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=None, help="a study folder (default: synthetic)")
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--lassos", type=int, default=10)
    args = parser.parse_args()
    from jaxmamba.study import Study, write_synthetic_study

    if args.study is None:
        path = os.path.join(tempfile.mkdtemp(), "study")
        t = time.perf_counter()
        study = write_synthetic_study(path)
        print(f"synthetic study written in {time.perf_counter() - t:.1f} s: {study}")
    else:
        study = Study(args.study)
    maps_mb = study.size_bytes() / 1e6
    server = subprocess.Popen(
        [sys.executable, "-m", "jaxmamba", "serve", str(study.path), "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/)", line).group(1)
        d = driver()
        d.get("about:blank")
        t = time.perf_counter()
        d.get(url)
        while not d.execute_script(
            "return !!(window.explorer && explorer.ready && !explorer.busy)"
        ):
            time.sleep(0.005)
        load_s = time.perf_counter() - t
        load_bytes = d.execute_script(
            "return performance.getEntriesByType('resource')"
            ".reduce((s, e) => s + e.transferSize, 0)"
            " + performance.getEntriesByType('navigation')[0].transferSize;"
        )
        big = max(study.blocks, key=lambda b: b.length)
        rng = np.random.default_rng(0)
        rows = {}

        def timed(label, what, arg):
            ms, nbytes, requests, error = d.execute_async_script(TIMED, what, arg)
            assert error is None, error
            rows.setdefault(label, []).append((ms, nbytes, requests))

        for _ in range(args.clicks):
            timed(f"click one patch (L={big.length})", "select", [int(rng.integers(big.length))])
        for _ in range(args.lassos):
            sel = sorted(int(p) for p in rng.choice(big.length, 500, replace=False))
            timed("lasso of 500 patches, rows", "select", sel)
        timed("switch direction to columns", "control", ["direction", "source"])
        for _ in range(args.lassos):
            sel = sorted(int(p) for p in rng.choice(big.length, 500, replace=False))
            timed("lasso of 500 patches, columns", "select", sel)
        timed("switch direction to rows", "control", ["direction", "query"])
        for o in study.orders[1:]:
            timed("switch order (new coordinates + heat)", "control", ["order", o])
        for stage in sorted({b.stage for b in study.blocks})[1:]:
            timed("switch stage (selection mapped)", "control", ["stage", str(stage)])
        severe = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        d.quit()
        peak = rss_peak_mb(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    print(f"\n{study.path}: {len(study.orders)} orders x {len(study.blocks)} blocks, "
          f"{maps_mb:.0f} MB of maps; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(
        f"page interactive {load_s:.2f} s after navigation, {load_bytes / 1e3:.0f} KB moved; "
        f"server peak RSS {peak:.0f} MB; browser console errors: {len(severe)}"
    )
    print(f"\n{'interaction':42} {'n':>3} {'median ms':>9} {'max ms':>7} {'KB each':>8}")
    for label, vals in rows.items():
        ms = np.array([v[0] for v in vals])
        kb = np.array([v[1] for v in vals]) / 1e3
        print(
            f"{label:42} {len(vals):3d} {np.median(ms):9.1f} {ms.max():7.1f} {np.median(kb):8.1f}"
        )


if __name__ == "__main__":
    main()
