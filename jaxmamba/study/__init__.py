"""A study folder: what ``jaxmamba explore`` and ``jaxmamba demo`` write and every view reads.

This package owns the study format, one module per idea: ``layout`` (every path of a study
folder, and the checks that keep untrusted names inside it), ``schema`` (``study.json`` read into
typed, frozen values, every field checked), ``files`` (PNG, ``.npy`` and ``study.json`` written
atomically), ``arguments`` (``write_study``'s arguments checked), ``resume`` (whether a folder
holds this study; what a killed run left), ``phases`` (means, single images, embeddings,
findings), ``writer`` (``write_study``), ``npy`` (checked reads of rows, columns and members),
``reader`` (``Study``: rows, columns, pooled matrices and single-image maps, read a few bytes at a
time from untrusted folders) and ``synthetic`` (``write_synthetic_study``).

May import: :mod:`jaxmamba.errors`, :mod:`jaxmamba.orders`, :mod:`jaxmamba.models`,
:mod:`jaxmamba.attention`, :mod:`jaxmamba.storage`. The views read studies through this package;
nothing here imports a view.
"""

from jaxmamba.errors import StudyError
from jaxmamba.study.files import estimate_bytes, png_bytes
from jaxmamba.study.reader import DIRECTIONS, MATRIX_SIZE, MATRIX_SIZES, Study, map_selection
from jaxmamba.study.schema import StudyInfo
from jaxmamba.study.synthetic import write_synthetic_study
from jaxmamba.study.writer import add_companions, write_study

__all__ = [
    "DIRECTIONS", "MATRIX_SIZE", "MATRIX_SIZES", "Study", "StudyError", "StudyInfo",
    "add_companions", "estimate_bytes", "map_selection", "png_bytes", "write_study",
    "write_synthetic_study",
]  # fmt: skip
