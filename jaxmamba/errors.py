"""The error family: every error jaxmamba raises on bad input is a :class:`JaxmambaError`.

``JaxmambaError`` derives from ``ValueError``, so ``except ValueError`` keeps working; each
module raises the subclass named for its idea (an order, a checkpoint, an image, ...), and the
command line prints any of them as ``error: ...`` with exit status 2.

>>> from jaxmamba.errors import JaxmambaError, OrderError
>>> issubclass(OrderError, JaxmambaError) and issubclass(JaxmambaError, ValueError)
True
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = [
    "JaxmambaError",
    "AggregateError",
    "AttentionError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExplorerError",
    "ImageError",
    "InputError",
    "MetricsError",
    "MissingDependencyError",
    "OrderError",
    "PlotError",
    "ReduceError",
    "ScanError",
    "StudyError",
    "TrainError",
    "require",
]


class JaxmambaError(ValueError):
    """Base class of every error jaxmamba raises for bad input, files or options."""


class ConfigError(JaxmambaError):
    """An invalid model config or an unknown variant."""


class OrderError(JaxmambaError):
    """An invalid patch order, route array or grid."""


class ScanError(JaxmambaError):
    """Bad selective-scan inputs or kernel options."""


class InputError(JaxmambaError):
    """Images or a block selection that the model cannot take."""


class AttentionError(JaxmambaError):
    """An attention option or input is invalid."""


class AggregateError(JaxmambaError):
    """Bad input to an aggregation, or a resume that would mix two different runs."""


class CheckpointError(JaxmambaError):
    """A checkpoint is missing, corrupt, or does not match the model it is meant for."""


class ImageError(JaxmambaError):
    """An image file that cannot be read, or an image the library will not guess about."""


class DataError(JaxmambaError):
    """Bad arguments to the bundled data sets or batching."""


class TrainError(JaxmambaError):
    """A training configuration, data set or training directory is invalid."""


class ReduceError(JaxmambaError):
    """Bad input to a PCA / t-SNE / UMAP reduction."""


class MetricsError(JaxmambaError):
    """Bad input to an attention statistic."""


class PlotError(JaxmambaError):
    """Bad input to a figure."""


class ExplorerError(JaxmambaError):
    """Explorer inputs (maps, grids, routes, coordinates, images, options) are invalid."""


class StudyError(JaxmambaError):
    """A study folder that is missing, damaged, or other than the one a command expects."""


class MissingDependencyError(JaxmambaError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import the optional ``module`` or raise :class:`MissingDependencyError` naming ``extra``.

    >>> require("json", "plot", "this example").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{what} needs {module.split('.')[0]}: pip install 'jaxmamba[{extra}]'"
        ) from e
