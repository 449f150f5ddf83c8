"""One tracker interface; the training loop talks to it and never to a sink directly.

A row is a flat dict of numbers with ``step`` (optimizer steps so far) and ``epoch``, and
metric names such as ``train/loss`` and ``val/loss``: the same names in every sink.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Protocol

from aejax.tracking.media import Media

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def log(self, row: dict[str, float]) -> None: ...

    def log_media(self, step: int, media: dict[str, Media]) -> None:
        """Tables, images, histograms at ``step``, which is not before the last logged row's."""

    def summary(self, values: dict[str, Any]) -> None: ...

    def rewind(self, step: int) -> None:
        """A resumed run continues after ``step``: rows logged past it are dropped (where a sink can)."""

    def finish(self, status: str) -> None:
        """Close the sink; ``status`` is ``finished`` or ``failed``. Called on every exit path."""


def reads_media(sink: Tracker) -> bool:
    """Whether ``sink`` reads the files behind media when they are logged (W&B copies them); the run
    directory's own sink says not (``reads_media = False``). Asked of the class: a sink still opening
    in the background is not waited for."""
    return getattr(type(sink), "reads_media", True)


class Trackers:
    """Fans every call out to several sinks, in order. Media whose files are still being drawn
    (figures drawn in the background, ``aejax.analysis.painters``) keep their place: ``reserve``
    holds the calls made after it for the sinks that read media until the place is filled, while
    the others (the run directory: its metrics and summary) get every call at once."""

    def __init__(self, sinks: list[Tracker]):
        self.sinks = sinks
        self._held: list[dict] = []  # for the media readers, from the first place not yet filled: {"ready", "calls"}
        self._settle: Optional[Callable[[], None]] = None

    def _each(self, method: str, *args: Any) -> None:
        for sink in self.sinks:
            if not (self._held and reads_media(sink)):
                getattr(sink, method)(*args)
        if self._held:
            self._held.append({"ready": True, "calls": [(method, args)]})

    def reserve(self, settle: Callable[[], None]) -> Callable[[int, dict[str, Media]], None]:
        """A place, after the calls made so far, for media logged later: the returned
        ``log_media(step, media)`` fills it (empty media: nothing is logged). ``settle()`` is what
        fills every place (``finish`` calls it if one is still empty)."""
        place: dict = {"ready": False, "calls": []}
        self._held.append(place)
        self._settle = settle

        def log_media(step: int, media: dict[str, Media]) -> None:
            if media:
                for sink in self.sinks:
                    if not reads_media(sink):
                        sink.log_media(step, media)
                place["calls"].append(("log_media", (step, media)))
            place["ready"] = True
            self._release()

        return log_media

    def _release(self, skip_empty: bool = False) -> None:
        """The held calls up to the first empty place (past every place with ``skip_empty``), to the media readers."""
        while self._held and (self._held[0]["ready"] or skip_empty):
            for method, args in self._held.pop(0)["calls"]:
                for sink in self.sinks:
                    if reads_media(sink):
                        getattr(sink, method)(*args)

    def log(self, row: dict[str, float]) -> None:
        self._each("log", row)

    def log_media(self, step: int, media: dict[str, Media]) -> None:
        self._each("log_media", step, media)

    def summary(self, values: dict[str, Any]) -> None:
        self._each("summary", values)

    def rewind(self, step: int) -> None:
        self._each("rewind", step)

    def finish(self, status: str) -> None:
        """Each sink in the reverse order of opening (the run directory's summary, the first sink, is
        written last: after W&B, whose run id it records once W&B is open). Media still being drawn
        are waited for first; a place left empty even then (its drawing failed) is skipped."""
        errors = []
        if self._held and self._settle is not None:
            try:
                self._settle()
            except Exception as e:  # the sinks are closed before it is reported
                errors.append(e)
        if any(not place["ready"] for place in self._held):
            log.warning("figures of this run were never drawn; W&B gets the rest without them")
        self._release(skip_empty=True)
        for sink in reversed(self.sinks):
            try:
                sink.finish(status)
            except Exception as e:  # close the others before reporting
                errors.append(e)
        if errors:
            raise errors[0]
