"""Every public module's ``>>>`` examples run and give what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "jaxmamba.config", "jaxmamba.params", "jaxmamba.orders", "jaxmamba.model",
    "jaxmamba.attention", "jaxmamba.aggregate", "jaxmamba.checkpoint",
    "jaxmamba.kernels.selective_scan",
    "jaxmamba.reduce", "jaxmamba.plots", "jaxmamba.explorer", "jaxmamba.data", "jaxmamba.train",
    "jaxmamba.convert",
]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
