"""The ``aejax-train`` command (also ``python -m aejax``): a Hydra app over ``conf/``."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from aejax.errors import EXIT_CONFIG, EXIT_DATA, EXIT_DIVERGED, EXIT_RUN, ConfigError, DataError, RunError


def config_dir() -> str:
    """``aejax/conf`` inside an installed wheel, ``<repo>/conf`` in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"aejax's configs were not found next to {here}; reinstall the package")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float:
    from aejax.experiment import run

    logging.getLogger("jax").setLevel(logging.WARNING)  # not JAX's INFO lines about absent TPUs
    try:
        value = run(cfg, Path(HydraConfig.get().runtime.output_dir))
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
