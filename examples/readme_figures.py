"""Regenerate the README's pictures from the demo's output: figures and an explorer screenshot.

    python -m jaxmamba demo --out demo && python examples/readme_figures.py demo docs

Copies the demo's overview, patch-view and scatter figures into ``docs/`` and screenshots
``explorer.html`` in headless Chromium (Debian's ``chromium`` + ``chromedriver``; selenium).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path


def screenshot(html: Path, png: Path, size=(1400, 900)) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for flag in (
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-quic", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
        ):  # fmt: skip
            opts.add_argument(flag)
        service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
        driver = webdriver.Chrome(service=service, options=opts)
        try:
            driver.get(html.resolve().as_uri())
            driver.save_screenshot(str(png))
        finally:
            driver.quit()


FIGURES = {  # demo output -> docs name
    "overview.png": "overview.png",
    "patch_view_*.png": "patch_view.png",
    "scatter_*_row.png": "scatter.png",
    "compare_orders_*.png": "compare_orders.png",
}


def main(demo: str = "demo", out: str = "docs") -> None:
    demo_dir, out_dir = Path(demo), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern, name in FIGURES.items():
        for f in sorted(demo_dir.glob(pattern))[:1]:
            shutil.copy(f, out_dir / name)
    screenshot(demo_dir / "explorer.html", out_dir / "explorer.png")
    print("wrote", ", ".join(sorted(p.name for p in out_dir.glob("*.png"))))


if __name__ == "__main__":
    main(*sys.argv[1:])
