"""Where metrics go: the run directory always, W&B unless ``logger.mode=disabled``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from aejax.tracking.background import BackgroundSink
from aejax.tracking.base import Tracker, Trackers
from aejax.tracking.local import LocalTracker
from aejax.tracking.progress import progress_bar


def open_trackers(logger_cfg: DictConfig, run_dir: Path, config: dict[str, Any], resume: bool = False,
                  concurrent: bool = False) -> Trackers:
    """With ``resume``, the run directory's files continue and so does the W&B run whose id the
    summary holds (``wandb_id``). W&B opens in a background thread (``BackgroundSink``) while the
    run loads its data and compiles; the summary gets its id once it is open. ``concurrent``: other
    runs of this process stay open (a seed batch's runs, opened one after another)."""
    local = LocalTracker(run_dir, config, resume=resume)
    sinks: list[Tracker] = [local]
    resume_id = local.values.get("wandb_id") if resume else None
    if logger_cfg.mode != "disabled":
        from aejax.tracking.wandb_tracker import WandbTracker

        def open_wandb() -> WandbTracker:
            return WandbTracker(logger_cfg, run_dir, config, resume_id=resume_id, concurrent=concurrent)

        def opened(wandb: WandbTracker) -> None:
            local.summary({"wandb_id": wandb.run.id})

        if concurrent:  # not several wandb.init calls at once
            try:
                sinks.append(open_wandb())
                opened(sinks[1])
            except BaseException:
                local.finish("failed")
                raise
        else:
            sinks.append(BackgroundSink(open_wandb, on_open=opened, name="wandb"))
    return Trackers(sinks)


__all__ = ["LocalTracker", "Tracker", "Trackers", "open_trackers", "progress_bar"]
