"""The persistent compilation cache: private folder, environment switches, programs stored."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "JAXMAMBA_NO_COMPILE_CACHE"} | env
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_enable_stores_compiled_programs_in_a_private_folder(tmp_path):
    cache = tmp_path / "cache"
    out = _run(
        f"""
        import os, stat, jax, jax.numpy as jnp
        from jaxmamba.storage.compile_cache import enable_compile_cache
        path = enable_compile_cache()
        assert str(path) == {str(cache)!r}, path
        assert jax.config.jax_compilation_cache_dir == str(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # store even tiny ones
        jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()
        print(len(os.listdir(path)))
        """,
        {"JAXMAMBA_CACHE_DIR": str(cache)},
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) >= 1  # the program was written to the cache


def test_switched_off_or_unsafe_folders_leave_jax_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # writable by everyone: JAX would run what others put there
    code = """
        import warnings, jax
        from jaxmamba.storage.compile_cache import enable_compile_cache
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print(enable_compile_cache(), jax.config.jax_compilation_cache_dir, len(w))
            if w: print(w[0].message)
        """
    off = _run(code, {"JAXMAMBA_NO_COMPILE_CACHE": "1", "JAXMAMBA_CACHE_DIR": str(shared)})
    assert off.returncode == 0, off.stderr
    assert off.stdout.split()[:3] == ["None", "None", "0"]
    unsafe = _run(code, {"JAXMAMBA_CACHE_DIR": str(shared)})
    assert unsafe.returncode == 0, unsafe.stderr
    assert unsafe.stdout.split()[:3] == ["None", "None", "1"]
    assert "writable by other users" in unsafe.stdout
    mine = _run(code, {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "own")})
    assert mine.stdout.split()[:2] == [str(tmp_path / "own")] * 2  # the caller's choice kept
