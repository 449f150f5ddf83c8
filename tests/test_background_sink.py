"""A sink opened in a background thread receives exactly what a synchronously opened one would."""
import threading

import pytest

from aejax.tracking.background import BackgroundSink
from aejax.tracking.base import Trackers


class Recorder:
    """A sink that records the calls it gets."""

    def __init__(self):
        self.calls = []

    def log(self, row):
        self.calls.append(("log", row["step"]))

    def log_media(self, step, media):
        self.calls.append(("log_media", step))

    def summary(self, values):
        self.calls.append(("summary", tuple(values)))

    def rewind(self, step):
        self.calls.append(("rewind", step))

    def finish(self, status):
        self.calls.append(("finish", status))


def test_calls_made_while_opening_are_replayed_in_order_after_on_open():
    release, opened = threading.Event(), []
    recorder = Recorder()

    def open_slowly():
        release.wait(timeout=30)
        return recorder

    sink = BackgroundSink(open_slowly, on_open=lambda s: opened.append(list(s.calls)))
    sink.log({"step": 0})
    sink.summary({"a": 1})
    sink.log_media(0, {})
    assert recorder.calls == []  # still opening: nothing reached the sink, nothing waited
    release.set()
    sink._thread.join()
    sink.log({"step": 1})  # the first call that finds it open replays the others first
    sink.finish("finished")
    assert opened == [[]]  # on_open saw the sink before any replayed call
    assert recorder.calls == [("log", 0), ("summary", ("a",)), ("log_media", 0), ("log", 1), ("finish", "finished")]


def test_an_error_while_opening_is_raised_once():
    def fail():
        raise ConnectionError("no server")

    sink = BackgroundSink(fail)
    sink._thread.join()
    with pytest.raises(ConnectionError, match="no server"):
        sink.log({"step": 0})
    sink.log({"step": 1})  # a sink that never opened takes calls and drops them
    sink.finish("failed")
    assert not hasattr(sink, "location")


def test_the_run_directory_gets_the_background_sinks_id_before_its_final_status():
    """Trackers finish in reverse order of opening: W&B first, so the run directory's summary (the
    first sink) records W&B's id before it is closed with the run's status."""
    local, release = Recorder(), threading.Event()

    def open_slowly():
        release.wait(timeout=30)
        sink = Recorder()
        sink.run_id = "abc123"
        return sink

    trackers = Trackers([local, BackgroundSink(open_slowly, on_open=lambda s: local.summary({"wandb_id": s.run_id}))])
    trackers.log({"step": 0, "epoch": 0})
    release.set()
    trackers.finish("finished")
    assert local.calls == [("log", 0), ("summary", ("wandb_id",)), ("finish", "finished")]
