"""A sink whose failures never reach the run: W&B failing to open (a bad mode, a refused key, a
read-only home) or failing later (its service process killed, the network gone) leaves one
warning line, and the run goes on with its run directory.

``GuardedSink`` wraps a sink (the W&B one, opened in the background): the first exception any of
its calls raises is logged as one line and the sink is dropped; its later calls do nothing.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aejax.tracking.background import BackgroundSink
from aejax.tracking.base import Tracker
from aejax.tracking.media import Media

log = logging.getLogger(__name__)


def reason(error: BaseException) -> str:
    """An error's first line, for a one-line message."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def warn_failed(name: str, doing: str, error: BaseException, run_dir: Path) -> None:
    log.warning("%s failed while %s (%s); the run goes on, logging to its run directory %s only",
                name, doing, reason(error), run_dir)


class GuardedSink:
    def __init__(self, sink: Tracker, name: str, run_dir: Path):
        self._sink, self._name, self._run_dir = sink, name, Path(run_dir)
        self.failed = False

    def _fail(self, error: BaseException, doing: str) -> None:
        self.failed = True
        warn_failed(self._name, doing, error, self._run_dir)

    def _guard(self, method: str, *args: Any) -> None:
        if self.failed:
            return
        try:
            getattr(self._sink, method)(*args)
        except Exception as e:
            opening = isinstance(self._sink, BackgroundSink) and self._sink._sink is None
            self._fail(e, "opening" if opening else f"running ({method})")

    def log(self, row: dict[str, float]) -> None:
        self._guard("log", row)

    def log_media(self, step: int, media: dict[str, Media]) -> None:
        self._guard("log_media", step, media)

    def summary(self, values: dict[str, Any]) -> None:
        self._guard("summary", values)

    def rewind(self, step: int) -> None:
        self._guard("rewind", step)

    def finish(self, status: str) -> None:
        self._guard("finish", status)

    def __getattr__(self, name: str) -> Any:
        """The sink's other attributes (W&B's ``location``, ``mode``); none once it failed."""
        if name.startswith("_") or self.failed:
            raise AttributeError(name)
        try:
            return getattr(self._sink, name)
        except AttributeError:
            raise
        except Exception as e:
            self._fail(e, "opening")
            raise AttributeError(name) from None
