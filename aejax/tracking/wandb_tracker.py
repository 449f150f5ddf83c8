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

from aejax.tracking.media import Histogram, Html, Image, Media, Table

log = logging.getLogger(__name__)


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")


def env_mode() -> str | None:
    """``WANDB_MODE`` when it names a W&B mode. An empty or unknown one is removed from this process's
    environment (W&B itself reads it, and fails on it in every ``wandb.init``), with a warning."""
    value = os.environ.get("WANDB_MODE")
    if value is None:
        return None
    if value.strip() in WANDB_MODES:
        return value.strip()
    os.environ.pop("WANDB_MODE")
    if value.strip():
        log.warning("WANDB_MODE=%r is not a W&B mode (%s): ignored", value, ", ".join(WANDB_MODES[:3]))
    return None


def resolve_mode(mode: str) -> str:
    """``auto`` -> ``WANDB_MODE`` if set, else online with credentials, else offline."""
    env = env_mode()
    if mode != "auto":
        return mode
    return env or ("online" if has_credentials() else "offline")


class WandbTracker:
    def __init__(self, cfg: DictConfig, run_dir: Path, config: dict[str, Any], resume_id: str | None = None,
                 concurrent: bool = False):
        """``resume_id``: continue that run (a resumed training run keeps its W&B run, offline too);
        ``concurrent``: leave this process's other runs open (the runs of a seed batch log side by side)."""
        import wandb

        self._wandb = wandb
        mode = resolve_mode(cfg.mode)
        kwargs = dict(project=cfg.project, entity=cfg.entity, group=cfg.group, name=cfg.name,
                      tags=list(cfg.tags), job_type=cfg.job_type, config=config, dir=str(run_dir),
                      reinit="create_new" if concurrent else "finish_previous")
        if resume_id:
            kwargs.update(id=resume_id, resume="allow")
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
        self.run.define_metric("latent/*", step_metric="step")
        self.run.define_metric("vae/*", step_metric="step")

    @property
    def location(self) -> str:
        """Where to find the run: its URL online, its directory offline."""
        return self.run.url if self.mode == "online" and self.run.url else str(Path(self.run.dir).parent)

    def log(self, row: dict[str, float]) -> None:
        self.run.log(row, step=int(row["step"]))

    def rewind(self, step: int) -> None:
        """W&B keeps what it has; rows are logged again from ``step`` on (an online run ignores steps
        it already holds, an offline resume is a new file under the same run id)."""

    def log_media(self, step: int, media: dict[str, Media]) -> None:
        self.run.log({key: self._convert(value) for key, value in media.items()}, step=int(step))

    def _convert(self, value: Media):
        wandb = self._wandb
        if isinstance(value, Table):
            return wandb.Table(columns=value.columns, data=value.rows, allow_mixed_types=True)  # skips per-cell checks
        if isinstance(value, Image):
            return wandb.Image(str(value.path), caption=value.caption or None)
        if isinstance(value, Histogram):
            return wandb.Histogram(value.values)
        if isinstance(value, Html):
            return wandb.Html(value.path.read_text(), inject=False)
        raise TypeError(f"cannot log {type(value).__name__} to W&B")

    def summary(self, values: dict[str, Any]) -> None:
        self.run.summary.update(values)

    def finish(self, status: str) -> None:
        self.run.summary["status"] = status
        self.run.finish(exit_code=0 if status == "finished" else 1)
