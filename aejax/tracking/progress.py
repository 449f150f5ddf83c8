"""A progress bar per run that stays quiet when stderr is not a terminal."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from tqdm.auto import tqdm


def progress_bar(total: int, mode: str, desc: str) -> tqdm:
    disable = {"on": False, "off": True, "auto": not sys.stderr.isatty()}[mode]
    return tqdm(total=total, desc=desc, unit="epoch", disable=disable, file=sys.stderr, dynamic_ncols=True, leave=False)


@contextlib.contextmanager
def logs_above(bar: tqdm) -> Iterator[None]:
    """While ``bar`` is shown, log lines to the console are written above it (``tqdm.write``), not
    into the middle of its line."""
    if bar.disable:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(tqdm_class=type(bar)):
        yield


class PartsLine:
    """One console line (stderr) that grows as the parts of a task run: ``evaluating: codes 0.12 s
    pca 0.01 s probe ...``, each part's name as it starts and its seconds as it ends, the total
    at ``close``. ``mode`` as the progress bar's, except that ``auto`` writes the line to a log
    file too (it is one line)."""

    def __init__(self, label: str, mode: str, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = mode != "off"
        self.label, self.started = label, False

    def __call__(self, name: str, seconds: float | None) -> None:
        if not self.enabled:
            return
        text = f" {seconds:.2f} s" if seconds is not None else f" {name}"
        if not self.started:
            text, self.started = f"{self.label}:{text}", True
        self.stream.write(text)
        self.stream.flush()

    def close(self, total: float) -> None:
        if self.enabled and self.started:
            self.stream.write(f"  ({total:.2f} s)\n")
            self.stream.flush()
