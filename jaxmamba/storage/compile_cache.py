"""JAX's persistent compilation cache under the user's cache folder.

The ``jaxmamba`` command turns it on before it compiles anything, so a second run of ``demo`` or
``explore`` loads its compiled programs from disk instead of compiling them again (JAX's own
mechanism: https://docs.jax.dev/en/latest/persistent_compilation_cache.html).  Library calls
leave JAX's configuration alone unless the caller asks, with :func:`enable_compile_cache`.

JAX treats the cache as trusted code: anyone who can write to it can make the process run code.
So the folder is created private (mode 700) and a folder that others can write to, or that
belongs to another user, is not used.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import jax

__all__ = ["ENV_DIR", "ENV_OFF", "cache_dir", "enable_compile_cache"]

ENV_DIR = "JAXMAMBA_CACHE_DIR"  # where the cache lives (default: the user's cache folder)
ENV_OFF = "JAXMAMBA_NO_COMPILE_CACHE"  # set to 1 to leave the cache off


def cache_dir() -> Path:
    """The folder of the compilation cache: ``$JAXMAMBA_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/jaxmamba/xla``, else ``~/.cache/jaxmamba/xla``.

    >>> import os
    >>> os.environ["JAXMAMBA_CACHE_DIR"] = "/tmp/jm-cache"
    >>> str(cache_dir())
    '/tmp/jm-cache'
    >>> del os.environ["JAXMAMBA_CACHE_DIR"]
    """
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().absolute() / "jaxmamba" / "xla"


def enable_compile_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache in ``directory`` (default :func:`cache_dir`).

    Call it before the first compilation.  Every compiled program that took at least 0.2 s to
    compile is stored.  Nothing changes, and None is returned, when ``$JAXMAMBA_NO_COMPILE_CACHE``
    is set, when the caller already configured a cache (``jax_compilation_cache_dir``), or when
    the folder cannot be made private (a warning says why).

    Returns:
      The cache folder in use, or None.
    """
    if os.environ.get(ENV_OFF, "") not in ("", "0"):
        return None
    # The caller's own choice wins. A flag with a context manager is read as an attribute, which
    # jax sets dynamically (its Config class declares none).
    configured = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
    if configured:
        return Path(configured)
    path = Path(directory).expanduser().absolute() if directory is not None else cache_dir()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as e:
        warnings.warn(f"compilation cache off: cannot create {path}: {e}", stacklevel=2)
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        warnings.warn(
            f"compilation cache off: {path} is writable by other users or not yours; JAX runs "
            "what it finds there, so use a private folder (chmod 700) or set $" + ENV_DIR,
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
