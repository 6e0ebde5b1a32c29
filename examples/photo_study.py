"""A study at the reference study's scale, for looking: VMamba-T at 224x224 (stage-0 grid 56x56)
over the two photographs bundled with scikit-learn (``china.jpg``, ``flower.jpg``).

    python examples/photo_study.py photo_study [CHECKPOINT]

Without a checkpoint the model has random weights (``vmamba_tiny_s1l8`` with the official init
rules; no download is possible here), which the study's title and model source say; with an
official VMamba-T checkpoint (``.pth``/``.safetensors`` or a converted Orbax folder) it is that
model. Orders cross and spiral (one model scanned in both), the two stage-0 blocks, the first
block of stages 1 and 3 and the first and last of stage 2, per-route maps kept (the matrix view
draws them), one single image.  Beside it, as its companion ``photo_study/vim`` (shown side by
side by ``jaxmamba serve photo_study``), a random-weight Vision Mamba Vim-S (``vim_small``,
24 layers of 14x14 patches and a class token) over the same photos, scanned in its raster path.
A few minutes on a 2-core CPU; the README's photo pictures come from them
(``examples/readme_figures.py``).
"""

from __future__ import annotations

import sys

import numpy as np

BLOCKS = ["layers.0.blocks.0", "layers.0.blocks.1", "layers.1.blocks.0", "layers.2.blocks.0",
          "layers.2.blocks.7", "layers.3.blocks.0"]  # fmt: skip
PHOTOS = ("china.jpg", "flower.jpg")
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ImageNet's


def photos(size: int = 224) -> np.ndarray:
    """The bundled photographs, centre-cropped to a square and resized.

    Returns: uint8 ``(2, size, size, 3)``.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_image

    out = []
    for name in PHOTOS:
        im = load_sample_image(name)
        h, w = im.shape[:2]
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        square = Image.fromarray(im[y : y + s, x : x + s])
        out.append(np.asarray(square.resize((size, size), Image.Resampling.BICUBIC)))
    return np.stack(out)


def main(out: str = "photo_study", checkpoint: str | None = None) -> None:
    import jaxmamba
    from jaxmamba.study import add_companions, write_study

    if checkpoint is None:
        model = jaxmamba.create_model("vmamba_tiny_s1l8", seed=0)
        source = "VMamba-T with random weights (vmamba_tiny_s1l8, official init rules; not trained)"
    else:
        from pathlib import Path

        if Path(checkpoint).is_dir():  # a converted Orbax folder
            from jaxmamba.storage.checkpoint import load

            model = load(checkpoint)
        else:  # an official .pth / .safetensors file (needs the [torch] extra)
            from jaxmamba.convert import load_torch_checkpoint

            model = load_torch_checkpoint(checkpoint)
        source = f"checkpoint {checkpoint}"
    display = photos()
    images = ((display / 255.0 - MEAN) / STD).astype(np.float32)
    study = write_study(
        out, model, images, display, orders=["cross", "spiral"], blocks=BLOCKS,
        route_maps=True, methods=["pca"], single_images=[0],
        image_names=[f"photo {n} (scikit-learn sample)" for n in PHOTOS],
        sources=source,
        title=f"{'random-weight ' if checkpoint is None else ''}VMamba-T over two photos "
        "at 224×224",
    )  # fmt: skip
    vim = write_study(
        study.path / "vim", jaxmamba.create_model("vim_small", seed=0), images, display,
        orders=["raster"], route_maps=True, methods=["pca"], single_images=[0],
        image_names=[f"photo {n} (scikit-learn sample)" for n in PHOTOS],
        sources="Vim-S with random weights (vim_small, official init rules; not trained)",
        title="random-weight Vim-S over the same two photos at 224×224",
    )  # fmt: skip
    study = add_companions(study.path, [vim.path.name])
    print(f"wrote {study.path} and its Vim companion {vim.path}; explore them: jaxmamba serve "
          f"{study.path}")  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
