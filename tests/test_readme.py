"""The README's Python example runs as written, and its command names exist."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_python_runs(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert blocks, "the README shows no Python example"
    monkeypatch.chdir(tmp_path)  # it writes runs/mean
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "runs" / "mean" / "run.json").is_file()


def test_readme_commands_are_real_subcommands():
    text = README.read_text()
    used = set(re.findall(r"^(?:python3? -m )?jaxmamba (\w+)", text, re.M))
    used |= set(re.findall(r"python3 -m jaxmamba (\w+)", text))
    out = subprocess.run(
        [sys.executable, "-m", "jaxmamba", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert used and all(cmd in out for cmd in used), (used, out)
