"""The static checks as tests: mypy (configured in pyproject's ``[tool.mypy]``) reports no error
on the package, and ``ruff check`` and ``ruff format --check`` pass on the Python code.

Each runs the tool in a subprocess from the repository root, as a contributor or CI would
(``python3 -m mypy``; ``ruff check PATHS``), and prints the tool's report when it fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUFF_PATHS = ["jaxmamba", "kernels", "convert", "tests", "benchmarks", "examples"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def _report(out: subprocess.CompletedProcess[str]) -> str:
    return f"exit status {out.returncode}\n{out.stdout}\n{out.stderr}"


def test_mypy_reports_no_errors():
    pytest.importorskip("mypy", reason="mypy is in the [test] extra")
    out = _run("mypy")
    report = _report(out)
    print(report)
    checked = re.search(r"no issues found in (\d+) source files", out.stdout)
    assert out.returncode == 0 and checked, report
    # the configured files were found: not a run that checked (almost) nothing
    assert int(checked.group(1)) >= 40, report


@pytest.mark.parametrize(
    "command", [["check"], ["format", "--check"]], ids=["ruff-check", "ruff-format"]
)
def test_ruff_is_clean(command):
    pytest.importorskip("ruff", reason="ruff is in the [test] extra")
    missing = [p for p in RUFF_PATHS if not (ROOT / p).is_dir()]
    assert not missing, f"paths to check are gone: {missing}"
    out = _run("ruff", *command, *RUFF_PATHS)
    report = _report(out)
    print(report)
    assert out.returncode == 0, report
