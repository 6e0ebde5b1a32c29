"""Regenerate the README's pictures: figures and screenshots of the served explorer, of the
demo's digit study and of a study at the paper's scale (224x224 photos, 56x56 stage-0 grid).

    python -m jaxmamba demo --out demo
    python examples/photo_study.py photo_study
    python examples/readme_figures.py demo docs photo_study

Copies the demo's overview, patch-view, scatter and order-comparison figures into ``docs/`` and
screenshots the explorer (``jaxmamba serve``, in headless Debian Chromium through selenium) in
each mode: patches of a block (mean, and one image), blocks of a stage, side by side, and beside
its digit Vim companion; then, of
the photo study, the patch view of a stage-0 patch, the matrix view, the selection in every block,
side by side across stages, beside its Vim-S companion, and its patch-view figure
(``photo_*.png``); of its Vim-S companion
(``photo_study/vim``), the class token's view of a middle layer and of every layer, and its
class-token figures (``photo_vim_*.png``).
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
    "explorer_single.png": "explorer.setControl('subject', '0'); "
    "explorer.setControl('opacity', '0.5');"
    "explorer.select([7 * 16 + 8]);",  # the digit shows through a map at opacity 0.5
    "explorer_blocks.png": "explorer.setControl('mode', 'blocks');",
    "explorer_pair.png": (  # the companion, the digit Vim, beside the cross model
        "document.querySelector('#companions button').click();"
        "explorer.setControl('blockB', 'layers.3'); explorer.select([5 * 16 + 6]);"
    ),
    "explorer_compare.png": (
        "explorer.setControl('mode', 'compare'); explorer.setControl('orderB', 'spiral');"
        "explorer.setControl('blockB', 'layers.1.blocks.0'); explorer.select([4 * 16 + 6]);"
    ),
}


PHOTO_FIGURES = {"patch_view_*.png": "photo_patch_view.png"}
_CENTRE = "explorer.setControl('stage', '0'); explorer.setControl('block', 'layers.0.blocks.1');"
PHOTO_SHOTS = {  # the centre patch (28, 28) of the 56x56 stage-0 block layers.0.blocks.1
    "photo_explorer.png": _CENTRE + "explorer.select([28 * 56 + 28]);",
    "photo_matrix.png": _CENTRE + "explorer.setControl('mode', 'matrix');"
    "explorer.setControl('route', '0'); explorer.select([28 * 56 + 28]);",
    "photo_overview.png": _CENTRE + "explorer.setControl('mode', 'overview');"
    "explorer.select([28 * 56 + 28]);",
    "photo_compare.png": _CENTRE + "explorer.setControl('mode', 'compare');"
    "explorer.setControl('orderB', 'spiral'); explorer.setControl('blockB', 'layers.2.blocks.0');"
    "explorer.select([28 * 56 + 28]);",
    "photo_pair.png": _CENTRE + "document.querySelector('#companions button').click();"
    "explorer.setControl('blockB', 'layers.12'); explorer.select([28 * 56 + 28]);",
}


VIM_FIGURES = {  # the photo study's Vim companion (photo_study/vim): its class-token figures
    "class_token_*.png": "photo_vim_class_token.png",
    "overview_class_token_*.png": "photo_vim_class_token_layers.png",
}
VIM_SHOTS = {  # the page opens on the class token: what it reads from every patch
    "photo_vim_explorer.png": "explorer.setControl('block', 'layers.12');",
    "photo_vim_overview.png": "explorer.setControl('mode', 'overview');",
}


def driver(size=(1320, 1200)):
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


def shoot(study: Path, out_dir: Path, figures: dict, shots: dict, size=(1320, 1200)) -> None:
    """Copy ``figures`` of ``study`` and take the screenshots ``shots`` of it served."""
    from jaxmamba.views.figures import write_figures
    from jaxmamba.views.server import ServerThread

    if not (study / "figures").is_dir():
        write_figures(study)
    for pattern, name in figures.items():
        for f in sorted((study / "figures").glob(pattern))[:1]:
            shutil.copy(f, out_dir / name)
    with ServerThread(study) as server:
        d = driver(size)
        try:
            for name, script in shots.items():
                d.get(server.url)
                idle(d)
                d.execute_script(script)
                idle(d, timeout=300)  # a single image's map is computed on demand
                d.save_screenshot(str(out_dir / name))
        finally:
            d.quit()


def main(demo: str = "demo", out: str = "docs", photo: str | None = None) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    shoot(Path(demo), out_dir, FIGURES, SHOTS)
    if photo is not None:
        shoot(Path(photo), out_dir, PHOTO_FIGURES, PHOTO_SHOTS, size=(1400, 1400))
        shoot(Path(photo) / "vim", out_dir, VIM_FIGURES, VIM_SHOTS, size=(1400, 1200))
    print("wrote", ", ".join(sorted(p.name for p in out_dir.glob("*.png"))))


if __name__ == "__main__":
    main(*sys.argv[1:])
