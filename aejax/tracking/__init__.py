"""Where metrics go: the run directory always, W&B unless ``logger.mode=disabled``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from aejax.tracking.base import Tracker, Trackers
from aejax.tracking.local import LocalTracker
from aejax.tracking.progress import progress_bar


def open_trackers(logger_cfg: DictConfig, run_dir: Path, config: dict[str, Any], resume: bool = False,
                  concurrent: bool = False) -> Trackers:
    """With ``resume``, the run directory's files continue and so does the W&B run whose id the
    summary holds (``wandb_id``). ``concurrent``: other runs of this process stay open (a seed batch)."""
    sinks: list[Tracker] = [LocalTracker(run_dir, config, resume=resume)]
    resume_id = sinks[0].values.get("wandb_id") if resume else None
    if logger_cfg.mode != "disabled":
        from aejax.tracking.wandb_tracker import WandbTracker

        try:
            sinks.append(WandbTracker(logger_cfg, run_dir, config, resume_id=resume_id, concurrent=concurrent))
            sinks[0].summary({"wandb_id": sinks[1].run.id})
        except BaseException:
            sinks[0].finish("failed")
            raise
    return Trackers(sinks)


__all__ = ["LocalTracker", "Tracker", "Trackers", "open_trackers", "progress_bar"]
