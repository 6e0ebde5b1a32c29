"""A study folder: what ``jaxmamba explore`` and ``jaxmamba demo`` write and every view reads.

This package owns the study format: the folder's paths, ``study.json`` read into typed values,
the writer (means of every order and block, embeddings, thumbnails, findings) and the reader
(``Study``: rows, columns, pooled matrices and single-image maps, read a few bytes at a time from
untrusted folders).

May import: :mod:`jaxmamba.errors`, :mod:`jaxmamba.orders`, :mod:`jaxmamba.models`,
:mod:`jaxmamba.attention`, :mod:`jaxmamba.storage`. The views read studies through this package;
nothing here imports a view.
"""

from jaxmamba.study.folder import (
    DIRECTIONS,
    MATRIX_SIZE,
    MATRIX_SIZES,
    Study,
    StudyError,
    estimate_bytes,
    map_selection,
    png_bytes,
    write_study,
    write_synthetic_study,
)

__all__ = [
    "DIRECTIONS", "MATRIX_SIZE", "MATRIX_SIZES", "Study", "StudyError", "estimate_bytes", "map_selection",
    "png_bytes", "write_study", "write_synthetic_study",
]  # fmt: skip
