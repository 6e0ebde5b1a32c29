"""Regenerate the README's pictures from the demo's study: figures and a screenshot of every
mode of the served explorer.

    python -m jaxmamba demo --out demo && python examples/readme_figures.py demo docs

Copies the demo's overview, patch-view, scatter and order-comparison figures into ``docs/`` and
screenshots the explorer (``jaxmamba serve``, in headless Debian Chromium through selenium) in
each mode: patches of a block (mean, and one image), blocks of a stage, side by side.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

FIGURES = {  # demo figure -> docs name
    "overview_*.png": "overview.png",
    "patch_view_*.png": "patch_view.png",
    "scatter_tsne_layers.0.*_row.png": "scatter.png",
    "compare_orders_*.png": "compare_orders.png",
}

SHOTS = {  # docs name -> what to do in the page before the screenshot
    "explorer.png": "explorer.select([5 * 16 + 4, 5 * 16 + 5, 6 * 16 + 4, 6 * 16 + 5]);",
    "explorer_single.png": "explorer.setControl('subject', '0'); explorer.select([7 * 16 + 8]);",
    "explorer_blocks.png": "explorer.setControl('mode', 'blocks');",
    "explorer_compare.png": (
        "explorer.setControl('mode', 'compare'); explorer.setControl('orderB', 'spiral');"
        "explorer.setControl('blockB', 'layers.1.blocks.0'); explorer.select([4 * 16 + 6]);"
    ),
}


def driver(size=(1320, 1000)):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", f"--user-data-dir={tempfile.mkdtemp()}",
        f"--window-size={size[0]},{size[1]}",
    ):  # fmt: skip
        opts.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=opts)


def idle(d, timeout=60):
    t0 = time.monotonic()
    ready = "return !!(window.explorer && explorer.ready && explorer.busy === 0)"
    while not d.execute_script(ready):
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("the explorer did not become idle")
        time.sleep(0.05)
    time.sleep(0.3)  # images under the maps


def main(demo: str = "demo", out: str = "docs") -> None:
    from jaxmamba.serve import ServerThread

    demo_dir, out_dir = Path(demo), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern, name in FIGURES.items():
        for f in sorted((demo_dir / "figures").glob(pattern))[:1]:
            shutil.copy(f, out_dir / name)
    with ServerThread(demo_dir) as server:
        d = driver()
        try:
            for name, script in SHOTS.items():
                d.get(server.url)
                idle(d)
                d.execute_script(script)
                idle(d)
                d.save_screenshot(str(out_dir / name))
        finally:
            d.quit()
    print("wrote", ", ".join(sorted(p.name for p in out_dir.glob("*.png"))))


if __name__ == "__main__":
    main(*sys.argv[1:])
