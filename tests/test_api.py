"""The public API: top-level names, one error family, lazy optional imports, no private imports."""

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import jaxmamba
from jaxmamba.errors import JaxmambaError

ROOT = Path(__file__).resolve().parents[1]


def modules():
    names = ["jaxmamba", "jaxmamba.kernels", "jaxmamba.convert"]
    for pkg in ("jaxmamba", "jaxmamba.kernels", "jaxmamba.convert"):
        path = importlib.import_module(pkg).__path__
        names += [f"{pkg}.{m.name}" for m in pkgutil.iter_modules(path) if m.name != "__main__"]
    return sorted(set(names) - {"jaxmamba.kernels", "jaxmamba.convert"} | {"jaxmamba.convert"})


def test_top_level_entry_points():
    for name in ("extract_attention", "verify", "attention_mean", "rollout", "load_default",
                 "AttentionMaps", "SoftOrder", "JaxmambaError"):  # fmt: skip
        assert callable(getattr(jaxmamba, name)), name
    assert callable(jaxmamba.convert.load_torch_checkpoint)
    with pytest.raises(AttributeError):
        jaxmamba.no_such_name  # noqa: B018


def test_import_needs_no_torch_and_no_training_loop():
    code = (
        "import sys, jaxmamba; jaxmamba.load_default(); jaxmamba.convert;"
        "print('torch' in sys.modules, 'jaxmamba.train.loop' in sys.modules,"
        " 'optax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"], out.stdout


@pytest.mark.parametrize("name", modules())
def test_every_error_class_is_a_jaxmamba_error(name):
    module = importlib.import_module(name)
    for attr, obj in vars(module).items():
        if inspect.isclass(obj) and issubclass(obj, Exception) and attr.endswith("Error"):
            if obj.__module__.startswith("jaxmamba"):
                assert issubclass(obj, JaxmambaError), f"{name}.{attr}"


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in [
        *ROOT.glob("jaxmamba/*.py"),
        *ROOT.glob("kernels/*.py"),
        *ROOT.glob("convert/*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and "jaxmamba" in node.module:
                offenders += [
                    f"{path.name}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.endswith("__")  # dunders are public
                ]
    assert offenders == []
