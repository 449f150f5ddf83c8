"""The ``aejax-train`` command (also ``python -m aejax``): a Hydra app over ``conf/``."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from aejax.errors import EXIT_CONFIG, EXIT_DATA, EXIT_DIVERGED, EXIT_RUN, ConfigError, DataError, RunError

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


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aejax" / "jax"


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


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    logging.getLogger("jax").setLevel(logging.WARNING)  # not JAX's INFO lines about absent TPUs
    setup_compile_cache()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:  # a failing job is recorded and the sweep goes on
        from aejax.sweep import run_job

        return run_job(cfg, hydra_cfg, run_dir)

    from aejax.experiment import run

    try:
        value = run(cfg, run_dir)
    except ConfigError as e:
        print(f"aejax: invalid config: {e}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except DataError as e:
        print(f"aejax: data unavailable: {e}", file=sys.stderr)
        sys.exit(EXIT_DATA)
    except RunError as e:
        print(f"aejax: {e}", file=sys.stderr)
        sys.exit(EXIT_RUN)
    if value == float("inf"):  # diverged: the message is printed, summary.json says so
        sys.exit(EXIT_DIVERGED)
    return value
