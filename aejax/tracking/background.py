"""A sink that opens in a background thread while the run loads its data and compiles.

Opening W&B takes one to two seconds before a run can train (importing it, starting its service
process, online a round trip to the server), time in which the main thread loads the dataset and
compiles. ``BackgroundSink`` opens the sink in a thread; calls made before it is open are kept,
in order, and replayed once it is, so the sink receives exactly what it would have received
synchronously. ``finish`` (and reading an attribute of the sink, such as W&B's ``location``)
waits for it to open. An error while opening is raised once, by the first call that finds it.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from aejax.tracking.base import Tracker
from aejax.tracking.media import Media


class BackgroundSink:
    def __init__(self, open_sink: Callable[[], Tracker], on_open: Callable[[Tracker], None] = lambda sink: None,
                 name: str = "sink"):
        """``open_sink`` runs in the thread; ``on_open(sink)`` runs in the caller's thread once the
        sink is open, before the calls made meanwhile are replayed."""
        self._on_open = on_open
        self._result: dict[str, Any] = {}
        self._pending: list[tuple[str, tuple]] = []
        self._sink: Optional[Tracker] = None
        self._failed = False

        def target() -> None:
            try:
                self._result["sink"] = open_sink()
            except BaseException as e:  # handed to the main thread
                self._result["error"] = e

        self._thread = threading.Thread(target=target, name=f"aejax-open-{name}", daemon=True)
        self._thread.start()

    def _opened(self, wait: bool) -> Optional[Tracker]:
        """The open sink with every pending call replayed; None while it is still opening (without ``wait``)."""
        if self._sink is None and not self._failed:
            if not wait and self._thread.is_alive():
                return None
            self._thread.join()
            if "error" in self._result:
                self._failed = True
                raise self._result.pop("error")
            self._sink = self._result.pop("sink")
            self._on_open(self._sink)
            for method, args in self._pending:
                getattr(self._sink, method)(*args)
            self._pending.clear()
        return self._sink

    def _call(self, method: str, *args: Any) -> None:
        sink = self._opened(wait=False)
        if sink is not None:
            getattr(sink, method)(*args)
        elif not self._failed:
            self._pending.append((method, args))

    def log(self, row: dict[str, float]) -> None:
        self._call("log", dict(row))

    def log_media(self, step: int, media: dict[str, Media]) -> None:
        self._call("log_media", step, dict(media))

    def summary(self, values: dict[str, Any]) -> None:
        self._call("summary", dict(values))

    def rewind(self, step: int) -> None:
        self._call("rewind", step)

    def finish(self, status: str) -> None:
        sink = self._opened(wait=True)
        if sink is not None:
            sink.finish(status)

    def __getattr__(self, name: str) -> Any:
        """The open sink's other attributes (waits for it to open)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._opened(wait=True), name)
