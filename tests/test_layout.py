"""The package tree a newcomer reads: short modules, subpackages by layer, imports only downward.

Read from the source files (``ast``), nothing imported: every module under ``jaxmamba/``,
``kernels/`` and ``convert/`` (installed as ``jaxmamba.kernels`` / ``jaxmamba.convert``).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 650
TOP_MODULES = {"__init__", "__main__", "errors", "cli", "pretrained"}

# The layers, lowest first: a module may import its own layer and those below.  ``errors`` is
# importable from anywhere; training, the command line and the pretrained weights are the top
# layer, the top-level API (``jaxmamba/__init__``) above them.
LAYERS = {
    "errors": 0,
    "kernels": 1,
    "orders": 2,
    "models": 3,
    "storage": 4,
    "attention": 5,
    "study": 6,
    "views": 7,
    "convert": 8,
    "train": 9,
    "cli": 9,
    "pretrained": 9,
    "__main__": 9,
    "__init__": 10,
}
ALLOWED = {("storage.checkpoint", "models")}  # a checkpoint saves a Model


def package_dirs() -> dict[str, Path]:
    """``{dotted package: folder}``: jaxmamba and its installed kernels/convert."""
    return {"jaxmamba": ROOT / "jaxmamba", "jaxmamba.kernels": ROOT / "kernels",
            "jaxmamba.convert": ROOT / "convert"}  # fmt: skip


def modules() -> dict[str, Path]:
    """``{dotted module name: file}`` of every module (symbolic links not followed: the
    worktree's jaxmamba/kernels -> ../kernels is counted once, as kernels/)."""
    out = {}
    for package, folder in package_dirs().items():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
            rel = Path(dirpath).relative_to(folder)
            for f in filenames:
                if f.endswith(".py"):
                    parts = [package, *rel.parts, f[:-3]]
                    out[".".join(p for p in parts if p)] = Path(dirpath) / f
    return out


MODULES = modules()


def layer(name: str) -> tuple[str, int]:
    """The layer of a dotted ``jaxmamba...`` name: its first component below ``jaxmamba``."""
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return top, LAYERS[top]


def imported(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """``[(module imported, names taken from it, line)]`` for every import in the file
    (those inside functions too), relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def test_the_tree_is_found():
    names = set(MODULES)
    assert {"jaxmamba.errors", "jaxmamba.orders.routes", "jaxmamba.kernels.scan_pallas",
            "jaxmamba.convert.state_dict", "jaxmamba.storage.store"} <= names  # fmt: skip
    assert not any(".kernels.kernels" in n or n.startswith("jaxmamba.jaxmamba") for n in names)


def test_no_module_is_longer_than_650_lines():
    long = {
        f"{path.relative_to(ROOT)} ({n} lines)": n
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {', '.join(sorted(long))}"


def test_no_flat_module_list():
    top = ROOT / "jaxmamba"
    flat = {p.stem for p in top.glob("*.py")} - TOP_MODULES
    assert not flat, f"modules at the top of jaxmamba/ (put them in a subpackage): {sorted(flat)}"
    for d in top.iterdir():
        if d.is_dir() and not d.is_symlink() and any(d.rglob("*.py")):
            assert (d / "__init__.py").is_file(), f"{d.name}/ holds modules but is no package"


def subpackages() -> list[str]:
    """The layers' packages: ``jaxmamba.<name>`` (a folder inside one, like ``views/web``, is
    part of its layer)."""
    return sorted(
        n.removesuffix(".__init__") for n, p in MODULES.items()
        if p.name == "__init__.py" and n.count(".") == 2
    )  # fmt: skip


@pytest.mark.parametrize("package", subpackages())
def test_every_subpackage_says_what_it_may_import(package):
    path = MODULES[package + ".__init__"]
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc, f"{path.relative_to(ROOT)} has no docstring"
    assert "May import" in doc, f"{path.relative_to(ROOT)}: its docstring says no 'May import'"


def test_imports_go_downward():
    upward = []
    for name, path in MODULES.items():
        own, rank = layer(name)
        sub = ".".join(name.split(".")[1:3])
        for target, _, line in imported(name, path):
            if not target.startswith("jaxmamba.") or target == "jaxmamba":
                continue
            other, other_rank = layer(target)
            if other_rank > rank and (sub, other) not in ALLOWED:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(sorted(upward))


def is_private(attr: str) -> bool:
    return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))


def test_no_module_takes_another_modules_private_names():
    taken = []
    for name, path in MODULES.items():
        aliases = set()  # names bound to jaxmamba modules: `from jaxmamba.storage import store`
        for target, names, line in imported(name, path):
            if not target.startswith("jaxmamba"):
                continue
            for n in names:
                if is_private(n):
                    taken.append(f"{path.relative_to(ROOT)}:{line} imports {target}.{n}")
                elif f"{target}.{n}" in MODULES or f"{target}.{n}.__init__" in MODULES:
                    aliases.add(n)
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and is_private(node.attr)):  # fmt: skip
                taken.append(f"{path.relative_to(ROOT)}:{node.lineno} uses "
                             f"{node.value.id}.{node.attr}")  # fmt: skip
    assert not taken, "private names used across modules:\n" + "\n".join(sorted(taken))


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The import reader resolves relative imports and sees imports inside functions."""
    pkg = tmp_path / "jaxmamba" / "orders"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def g():\n    from ..views import plots\n    from .routes import _hidden\n")
    got = imported("jaxmamba.orders.x", f)
    assert ("jaxmamba.views", ["plots"], 2) in got
    assert ("jaxmamba.orders.routes", ["_hidden"], 3) in got
    assert layer("jaxmamba.views.plots")[1] > layer("jaxmamba.orders.x")[1]
