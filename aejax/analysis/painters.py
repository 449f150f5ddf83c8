"""The figure painters of one program's runs, and drawing the figures those runs owe in parallel.

Drawing is most of a snapshot's host work (matplotlib lays out and renders every figure on one
core) and a program of many runs (a seed batch, a batched sweep's group) owes as many figure sets
at each snapshot as it has runs. ``Painters`` keeps the painters the runs share (a figure is built
once and redrawn for every run with its layout, see ``aejax.analysis.figures``) and the figures
the runs owe: each run's recorder hands in what it draws and what it logs after (``submit``), and
the training loop calls ``draw`` once every run has flushed. One run's figures are drawn at once,
in this process. Several runs' are shared out among forked processes, one per core (the
process's own share drawn here meanwhile), on Linux; a child only draws with matplotlib into the
run directories and leaves with ``os._exit``, never touching JAX, the trackers or the parent's
files. A share whose process fails (its exit status, or no end within ``timeout`` seconds) is drawn
again here, so no figure is lost; then each run logs its media in submission order, at the steps
it would have logged them drawing alone. ``AEJAX_FIGURE_PROCESSES=1`` draws everything here.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
import warnings
from typing import Callable, Hashable

log = logging.getLogger(__name__)
ENV = "AEJAX_FIGURE_PROCESSES"


def processes() -> int:
    """How many processes draw a program's figures: ``$AEJAX_FIGURE_PROCESSES`` or the cores this
    process may use; 1 where forking is not safe to rely on (not Linux)."""
    setting = os.environ.get(ENV, "").strip()
    if setting:
        try:
            return max(1, int(setting))
        except ValueError:  # figures are drawn either way: a bad setting costs no run
            log.warning("%s=%r is not a number of processes; using the default", ENV, setting)
    if not sys.platform.startswith("linux"):
        return 1
    return len(os.sched_getaffinity(0))


class Painters:
    def __init__(self, runs: int, timeout: float = 300.0):
        """``runs``: how many runs share these painters (one: every figure drawn at once)."""
        self.runs, self.timeout = runs, timeout
        self._cache: dict[Hashable, object] = {}
        self._owed: list[tuple[Callable[[], None], Callable[[float], None]]] = []

    def get(self, key: Hashable, make: Callable[[], object]):
        """The painter for ``key`` (a figure's kind and layout), made by ``make`` the first time."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def submit(self, paint: Callable[[], None], then: Callable[[float], None]) -> None:
        """A run's figures: ``paint`` draws them into its files, ``then(seconds)`` logs them (with
        the seconds its drawing took). A program of one run draws them now."""
        if self.runs == 1:
            start = time.perf_counter()
            paint()
            then(time.perf_counter() - start)
        else:
            self._owed.append((paint, then))

    def draw(self) -> None:
        """Draw every run's owed figures (in parallel processes where there are several), then log them."""
        owed, self._owed = self._owed, []
        if not owed:
            return
        start = time.perf_counter()
        shares = [owed[i::min(processes(), len(owed))] for i in range(min(processes(), len(owed)))]
        children = {}
        for i, share in enumerate(shares[1:], 1):
            pid = _fork(share)
            if pid is None:  # could not fork: drawn here
                shares[0] = shares[0] + share
            else:
                children[pid] = share
        for paint, _ in shares[0]:
            paint()
        for share in _wait(children, self.timeout):
            log.warning("a figure process failed; its %d runs' figures are drawn again here", len(share))
            for paint, _ in share:
                paint()
        spent = (time.perf_counter() - start) / len(owed)
        for _, then in owed:
            then(spent)


def _fork(share: list) -> int | None:
    """A child that draws ``share`` and exits (0: all drawn); its pid, or None if it cannot fork."""
    try:
        with warnings.catch_warnings():  # JAX warns of any fork; the child never calls JAX
            warnings.simplefilter("ignore", RuntimeWarning)
            pid = os.fork()
    except OSError as e:
        log.warning("cannot fork a figure process (%s); drawing here", e)
        return None
    if pid == 0:  # the child: draw, then leave at once (no atexit hooks, no flushing of the parent's buffers)
        code = 1
        try:
            for paint, _ in share:
                paint()
            code = 0
        except BaseException as e:  # the parent draws this share again
            try:
                os.write(2, f"aejax: a figure process failed: {type(e).__name__}: {e}\n".encode())
            except OSError:
                pass
        finally:
            os._exit(code)
    return pid


def _wait(children: dict[int, list], timeout: float) -> list[list]:
    """Wait for the children; the shares of those that failed or did not end in ``timeout`` seconds."""
    failed, deadline = [], time.monotonic() + timeout
    for pid, share in children.items():
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                if os.waitstatus_to_exitcode(status) != 0:
                    failed.append(share)
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                failed.append(share)
                break
            time.sleep(0.002)
    return failed
