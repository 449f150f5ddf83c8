"""Weights & Biases as a tracking sink.

``logger.mode=auto`` runs online when credentials exist (``WANDB_API_KEY`` or a netrc entry for
the W&B host) and offline otherwise; an online init that fails within ``logger.init_timeout``
falls back to offline with a warning. Offline runs are written under the run directory and can
be uploaded later with ``wandb sync``.
"""
from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    """``auto`` -> ``WANDB_MODE`` if set, else online with credentials, else offline."""
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if has_credentials() else "offline")


class WandbTracker:
    def __init__(self, cfg: DictConfig, run_dir: Path, config: dict[str, Any]):
        import wandb

        self._wandb = wandb
        mode = resolve_mode(cfg.mode)
        kwargs = dict(project=cfg.project, entity=cfg.entity, group=cfg.group, name=cfg.name,
                      tags=list(cfg.tags), job_type=cfg.job_type, config=config, dir=str(run_dir),
                      reinit="finish_previous")
        settings = wandb.Settings(init_timeout=cfg.init_timeout, silent=True)
        try:
            self.run = wandb.init(mode=mode, settings=settings, **kwargs)
        except Exception as e:
            if mode != "online" or cfg.mode != "auto":
                raise
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.warning("W&B online init failed (%s); logging offline instead. Upload later with `wandb sync`.", reason)
            self.run = wandb.init(mode="offline", settings=settings, **kwargs)
        self.mode = "offline" if self.run.offline else mode
        self.run.define_metric("step")
        self.run.define_metric("epoch")
        self.run.define_metric("train/*", step_metric="step")
        self.run.define_metric("val/*", step_metric="epoch")

    @property
    def location(self) -> str:
        """Where to find the run: its URL online, its directory offline."""
        return self.run.url if self.mode == "online" and self.run.url else str(Path(self.run.dir).parent)

    def log(self, row: dict[str, float]) -> None:
        self.run.log(row, step=int(row["step"]))

    def summary(self, values: dict[str, Any]) -> None:
        self.run.summary.update(values)

    def finish(self, status: str) -> None:
        self.run.summary["status"] = status
        self.run.finish(exit_code=0 if status == "finished" else 1)
