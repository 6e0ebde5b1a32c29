"""The explorer's front end type-checks: ``tsc --noEmit`` over jaxmamba/views/web/*.js (JSDoc).

TypeScript comes from npm (``npm ci`` at the repository root, pinned in package-lock.json). Without
it the check is skipped, except under CI (the environment variable ``CI`` set), where a missing
TypeScript is a failure: CI cannot skip it silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TSC = ROOT / "node_modules" / "typescript" / "bin" / "tsc"


def test_the_front_end_type_checks():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None or not TSC.is_file():
        why = "needs Node.js and TypeScript (npm ci at the repository root)"
        if os.environ.get("CI"):
            pytest.fail(why + ": CI must run the tsc check")
        pytest.skip(why)
    command = [node, str(TSC), "--noEmit", "-p", str(ROOT / "tsconfig.json")]
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, "tsc found type errors:\n" + run.stdout + run.stderr


def test_the_check_covers_every_script_of_the_page():
    """Every script joined into app.js is one tsc checks (tsconfig's include), and is joined."""
    from jaxmamba.views.web import SCRIPTS, web_file

    web = ROOT / "jaxmamba" / "views" / "web"
    on_disk = {p.name for p in web.glob("*.js")}
    assert set(SCRIPTS) | {"types.js"} == on_disk
    script = web_file("app.js")
    for name in SCRIPTS:
        assert f"// ---- {name}\n" in script
