"""The ``aejax-train`` command (also ``python -m aejax``): a Hydra app over ``conf/``."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from aejax.errors import EXIT_CONFIG, EXIT_DATA, EXIT_DIVERGED, EXIT_RUN, ConfigError, DataError, RunError
from aejax.startup import config_dir, setup_compile_cache  # noqa: F401  (aejax.cli.config_dir for scripts)



def register_launchers() -> None:
    """Make aejax's launchers known to Hydra. Hydra finds plugins by scanning the ``hydra_plugins``
    folders on ``sys.path``; an editable install (``pip install -e .``) maps aejax's
    ``hydra_plugins/aejax_launcher`` without such a folder, so the scan misses it: register it here."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.aejax_launcher.batched import BatchedLauncher
    from hydra_plugins.aejax_launcher.fault_tolerant_joblib import FaultTolerantJoblibLauncher

    Plugins.instance().register(FaultTolerantJoblibLauncher)
    Plugins.instance().register(BatchedLauncher)


register_launchers()


def main() -> Optional[float]:
    """``aejax-train``: Hydra's app, except ``-m ... --cfg job`` (which Hydra refuses), printed here."""
    from aejax.multirun_cfg import print_job_configs

    status = print_job_configs(sys.argv[1:])
    if status is not None:
        sys.exit(status)
    return hydra_main()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def hydra_main(cfg: DictConfig) -> Optional[float]:
    logging.getLogger("jax").setLevel(logging.WARNING)  # not JAX's INFO lines about absent TPUs
    # A log line that cannot be written (aejax.log on a full disk, from a checkpointing thread) is
    # dropped, not reported with a traceback: the run reports the full disk itself (exit 4).
    logging.raiseExceptions = False
    setup_compile_cache()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:  # a failing job is recorded and the sweep goes on
        from aejax.sweep import run_job

        return run_job(cfg, hydra_cfg, run_dir)

    from aejax.experiment import run

    try:
        value = run(cfg, run_dir, overrides=list(hydra_cfg.overrides.task))
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
