"""Where metrics go: the run directory always, W&B unless ``logger.mode=disabled``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from aejax.tracking.base import Tracker, Trackers
from aejax.tracking.local import LocalTracker
from aejax.tracking.progress import progress_bar


def open_trackers(logger_cfg: DictConfig, run_dir: Path, config: dict[str, Any]) -> Trackers:
    sinks: list[Tracker] = [LocalTracker(run_dir, config)]
    if logger_cfg.mode != "disabled":
        from aejax.tracking.wandb_tracker import WandbTracker

        try:
            sinks.append(WandbTracker(logger_cfg, run_dir, config))
        except BaseException:
            sinks[0].finish("failed")
            raise
    return Trackers(sinks)


__all__ = ["LocalTracker", "Tracker", "Trackers", "open_trackers", "progress_bar"]
