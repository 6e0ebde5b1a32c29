"""Shared test fixtures: the official VMamba reference data and float64 NumPy oracles."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official-vmamba"
FIXTURE_NAMES = ("v0_small", "s2_small", "s1_small")

# the CLI turns on JAX's persistent compilation cache in the user's cache folder; tests (and the
# subprocesses they start) leave it off, except tests/test_compile_cache.py
os.environ.setdefault("JAXMAMBA_NO_COMPILE_CACHE", "1")


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop each test module's compiled programs when it ends: one long run would otherwise keep
    thousands of XLA executables (and their memory mappings) alive in one process."""
    yield
    jax.clear_caches()


def fixture_dir(name: str) -> Path:
    """Folder of one official fixture; skips the test when the fixtures are absent."""
    path = FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"official VMamba fixtures not found at {FIXTURES} (someone else's clone?)")
    return path


VIM_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official-vim"
VIM_SIZES = {"tiny_p16": 64, "tiny_s8": 64, "small_p16_48x80": (48, 80)}  # name -> img_size


def vim_fixture_dir(name: str) -> Path:
    """Folder of one official Vim fixture; skips the test when the fixtures are absent."""
    path = VIM_FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"official Vim fixtures not found at {VIM_FIXTURES}")
    return path


@functools.cache
def vim_converted(name: str):
    """The fixture's ``ckpt.pth`` converted (once per process) to a jaxmamba model."""
    pytest.importorskip("torch")
    from jaxmamba.convert import load_torch_checkpoint

    return load_torch_checkpoint(vim_fixture_dir(name) / "ckpt.pth", img_size=VIM_SIZES[name])


def rel_err(ours, ref) -> float:
    """``max|ours − ref| / max|ref|``."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def softplus64(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def scan64(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False):
    """Float64 step-by-step selective scan; B, C ``(b, n, l)`` or ``(b, g, n, l)``."""
    u, delta, A = (np.asarray(a, np.float64) for a in (u, delta, A))
    B, C = (np.asarray(a, np.float64) for a in (B, C))
    if B.ndim == 3:
        B, C = B[:, None], C[:, None]
    b, d, l = u.shape
    g = B.shape[1]
    Bd, Cd = np.repeat(B, d // g, axis=1), np.repeat(C, d // g, axis=1)  # (b, d, n, l)
    if delta_bias is not None:
        delta = delta + np.asarray(delta_bias, np.float64)[:, None]
    if delta_softplus:
        delta = softplus64(delta)
    h = np.zeros((b, d, A.shape[1]))
    y = np.zeros((b, d, l))
    for t in range(l):
        h = (
            np.exp(delta[..., t, None] * A) * h
            + (delta[..., t] * u[..., t])[..., None] * Bd[..., t]
        )
        y[..., t] = np.sum(h * Cd[..., t], axis=-1)
    if D is not None:
        y = y + np.asarray(D, np.float64)[:, None] * u
    return y


def alpha64(dt, A, B, C):
    """Float64 per-channel hidden attention ``(K, D, L, L)`` by the direct formula.

    dt ``(K, D, L)`` final Δ; A ``(K, D, N)``; B, C ``(K, N, L)``.
    """
    dt, A, B, C = (np.asarray(a, np.float64) for a in (dt, A, B, C))
    S = np.cumsum(dt, axis=-1)
    l = dt.shape[-1]
    causal = np.tril(np.ones((l, l), bool))
    diff = np.where(causal, S[..., :, None] - S[..., None, :], 0.0)  # (k, d, t, s)
    decay = np.where(causal[..., None], np.exp(diff[..., None] * A[:, :, None, None, :]), 0.0)
    # (k, d, t, s, n)
    return np.einsum("knt,kdtsn,kds,kns->kdts", C, decay, dt, B)


CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if shutil.which(p)), None
)
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if shutil.which("/usr/bin/chromedriver") else None
)


@pytest.fixture
def chromium(tmp_path):
    """Headless Debian Chromium driven by selenium (never a downloaded browser); skips without."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "needs the system chromium and chromedriver (apt-get install chromium chromium-driver)"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000",
    ):  # fmt: skip
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def wait_idle(drv, timeout: float = 60.0) -> None:
    """Wait until the explorer page is ready and has no request in flight; fail on its error."""
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        state = drv.execute_script(
            "return window.explorer ? [explorer.ready, explorer.busy, explorer.error] : null;"
        )
        if state and state[2]:
            raise AssertionError(f"the page reports an error: {state[2]}")
        if state and state[0] and state[1] == 0:
            return
        time.sleep(0.02)
    raise AssertionError("the explorer did not become idle")


def js(drv, code, *args):
    """Run ``code`` in the explorer page, then wait until it is idle; what the code returned."""
    out = drv.execute_script(code, *args)
    wait_idle(drv)
    return out


@contextlib.contextmanager
def served_page(study, drv):
    """The explorer of ``study`` served on 127.0.0.1 and loaded in ``drv``, idle."""
    from jaxmamba.views.server import ServerThread

    with ServerThread(study) as server:
        drv.get(server.url)
        wait_idle(drv)
        yield drv


def severe(drv) -> list:
    """The browser console's errors."""
    return [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def set_field(path: tuple, value):
    """A change of a ``study.json`` object: the value at ``path`` (keys and indices) set to
    ``value`` (for the tests that tamper with a study)."""

    def change(meta):
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change
