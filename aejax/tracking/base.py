"""One tracker interface; the training loop talks to it and never to a sink directly.

A row is a flat dict of numbers with ``step`` (optimizer steps so far) and ``epoch``, and
metric names such as ``train/loss`` and ``val/loss``: the same names in every sink.
"""
from __future__ import annotations

from typing import Any, Protocol

from aejax.tracking.media import Media


class Tracker(Protocol):
    def log(self, row: dict[str, float]) -> None: ...

    def log_media(self, step: int, media: dict[str, Media]) -> None:
        """Tables, images, histograms at ``step``, which is not before the last logged row's."""

    def summary(self, values: dict[str, Any]) -> None: ...

    def rewind(self, step: int) -> None:
        """A resumed run continues after ``step``: rows logged past it are dropped (where a sink can)."""

    def finish(self, status: str) -> None:
        """Close the sink; ``status`` is ``finished`` or ``failed``. Called on every exit path."""


class Trackers:
    """Fans every call out to several sinks."""

    def __init__(self, sinks: list[Tracker]):
        self.sinks = sinks

    def log(self, row: dict[str, float]) -> None:
        for sink in self.sinks:
            sink.log(row)

    def log_media(self, step: int, media: dict[str, Media]) -> None:
        for sink in self.sinks:
            sink.log_media(step, media)

    def summary(self, values: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.summary(values)

    def rewind(self, step: int) -> None:
        for sink in self.sinks:
            sink.rewind(step)

    def finish(self, status: str) -> None:
        """Each sink in the reverse order of opening (the run directory's summary, the first sink, is
        written last: after W&B, whose run id it records once W&B is open)."""
        errors = []
        for sink in reversed(self.sinks):
            try:
                sink.finish(status)
            except Exception as e:  # close the others before reporting
                errors.append(e)
        if errors:
            raise errors[0]
