"""Where metrics go: the run directory always, W&B unless ``logger.mode=disabled``.

W&B can never stop a run: its failures, at open or later, leave one warning line and the run goes
on with its run directory (``GuardedSink``). Only ``logger.mode=online`` without any credentials is
refused, before training (``check_logger``), since it cannot work.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from aejax.errors import ConfigError
from aejax.tracking.background import BackgroundSink
from aejax.tracking.base import Tracker, Trackers
from aejax.tracking.guarded import GuardedSink, warn_failed
from aejax.tracking.local import LocalTracker
from aejax.tracking.progress import PartsLine, progress_bar


def check_logger(logger_cfg: DictConfig) -> None:
    """Refuse what cannot work before anything is trained: W&B online without credentials."""
    if logger_cfg.mode == "disabled":
        return
    from aejax.tracking.wandb_tracker import has_credentials, resolve_mode

    mode = resolve_mode(logger_cfg.mode)
    if mode == "online" and not has_credentials():
        where = "logger.mode=online" if logger_cfg.mode == "online" else "WANDB_MODE=online (logger.mode=auto)"
        raise ConfigError("logger.mode", f"{where} needs W&B credentials, and none were found: run `wandb login` "
                                         "(or set WANDB_API_KEY), or log offline with logger.mode=offline and upload "
                                         "later with `wandb sync`")


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
                wandb = open_wandb()
                opened(wandb)
                sinks.append(GuardedSink(wandb, "W&B", run_dir))
            except Exception as e:
                warn_failed("W&B", "opening", e, run_dir)
            except BaseException:
                local.finish("failed")
                raise
        else:
            sinks.append(GuardedSink(BackgroundSink(open_wandb, on_open=opened, name="wandb"), "W&B", run_dir))
    return Trackers(sinks)


__all__ = ["GuardedSink", "LocalTracker", "Tracker", "Trackers", "check_logger", "open_trackers", "PartsLine", "progress_bar"]
