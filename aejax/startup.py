"""What every entry point (``aejax-train``, ``aejax.train``) sets up first: where the packaged configs
are, JAX's persistent compilation cache, and the seconds since this process started: the clock of
the start-up figure (``first_step_s``).

A user waits from the moment the command starts: the interpreter, the imports, Hydra, reading
the data and compiling all count, so the clock starts with the process, not with aejax. Linux
records that instant (``/proc/self/stat``: the start time in clock ticks after boot, compared
with ``/proc/uptime``; 10 ms resolution). Where there is no ``/proc``, the clock starts when this
module is first imported, which leaves out the interpreter's start and the imports before it.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Optional


def _process_start() -> float:
    """The process's start as a ``time.time()`` value."""
    now = time.time()
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime (after the comm field)
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return now - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return now


PROCESS_START = _process_start()


def seconds_since_start() -> float:
    """Seconds since the process started."""
    return time.time() - PROCESS_START


# JAX's persistent compilation cache: a directory, or one of these to turn it off.
CACHE_ENV = "AEJAX_COMPILE_CACHE"
CACHE_OFF = ("", "0", "off", "false", "no", "none")
CACHE_MIN_COMPILE_S = 0.1  # executables that compile faster than this are not worth a disk round trip


def config_dir() -> str:
    """``aejax/conf`` inside an installed wheel, ``<repo>/conf`` in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"aejax's configs were not found next to {here}; reinstall the package")


def cache_root() -> Path:
    """aejax's own caches: ``$XDG_CACHE_HOME/aejax`` (``~/.cache/aejax``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aejax"


def default_cache_dir() -> Path:
    return cache_root() / "jax"


def setup_compile_cache() -> Optional[str]:
    """Turn on JAX's persistent compilation cache before anything is compiled, so that jobs and
    runs with the same shapes load their executables instead of compiling them again.

    ``$AEJAX_COMPILE_CACHE`` names the directory (default ``$XDG_CACHE_HOME/aejax/jax``, i.e.
    ``~/.cache/aejax/jax``); ``0``/``off`` turns it off. A directory set with JAX's own
    ``JAX_COMPILATION_CACHE_DIR`` is left as it is. Returns the directory in use, or None.

    The cache is unbounded, as JAX's default (``JAX_COMPILATION_CACHE_MAX_SIZE`` bounds it); it
    can be deleted at any time. Parallel jobs share it: an entry read while another process writes
    it fails to decompress, and JAX then warns and compiles instead.
    """
    import jax

    setting = os.environ.get(CACHE_ENV)
    if setting is not None and setting.strip().lower() in CACHE_OFF:
        return None
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = Path(setting).expanduser() if setting else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only home: run without the cache
        logging.getLogger(__name__).warning("compile cache off: cannot create %s (%s)", path, e)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    # JAX's own variables win: JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 caches every executable.
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_S)
    return str(path)
