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

``start`` draws in the background instead: every share goes to a figure process (one core fewer
than ``processes()``, leaving the training process its own) and the caller goes on training,
evaluating and writing files meanwhile; ``join`` waits for them and logs. The figures' media must
then keep their place among the run's later calls: a run submits with ``deferred=True`` only after
reserving that place in its tracker (``Trackers.reserve``), and a share with any run that did not is
drawn at once.
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
        self._deferred = True  # every owed run reserved its media's place: they may be drawn in the background
        self._running: list[tuple[dict[int, list], list, float]] = []  # started: (children, owed, seconds drawn here)

    def get(self, key: Hashable, make: Callable[[], object]):
        """The painter for ``key`` (a figure's kind and layout), made by ``make`` the first time."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def submit(self, paint: Callable[[], None], then: Callable[[float], None], deferred: bool = False) -> None:
        """A run's figures: ``paint`` draws them into its files, ``then(seconds)`` logs them (with
        the seconds its drawing took). A program of one run draws them now. ``deferred``: the run's
        media have their place reserved, so ``then`` may come after the run's later calls (``start``)."""
        if self.runs == 1:
            start = time.perf_counter()
            paint()
            then(time.perf_counter() - start)
        else:
            self._owed.append((paint, then))
            self._deferred = self._deferred and deferred

    def start(self, every_core: bool = False) -> None:
        """Start drawing the owed figures in figure processes and return; ``join`` logs them. Drawn
        at once (``draw``) where fewer than two cores may draw or a run did not reserve its place.
        ``every_core``: a process per core (the caller has little left to do), not one core fewer."""
        owed, deferred = self._owed, self._deferred
        if not owed:
            return
        cores = processes()
        workers = 0 if cores == 1 else min(cores - (not every_core), len(owed))
        if not deferred or workers < 1:
            self.draw()
            return
        self._owed, self._deferred = [], True
        children, here = _spawn([owed[i::workers] for i in range(workers)])
        start = time.perf_counter()
        for paint, _ in here:
            paint()
        self._running.append((children, owed, time.perf_counter() - start))

    def join(self) -> None:
        """Wait for the figures ``start`` left drawing (a failed process's share is drawn again here)
        and log them in submission order, each run charged its share of the processes' CPU time."""
        running, self._running = self._running, []
        for children, owed, seconds in running:
            seconds += _wait(children, self.timeout)
            for _, then in owed:
                then(seconds / len(owed))

    def draw(self) -> None:
        """Draw every run's owed figures (in parallel processes where there are several), then log them
        (after those ``start`` left drawing)."""
        self.join()
        owed, self._owed, self._deferred = self._owed, [], True
        if not owed:
            return
        start = time.perf_counter()
        workers = min(processes(), len(owed))
        shares = [owed[i::workers] for i in range(workers)]
        children, here = _spawn(shares[1:])
        for paint, _ in shares[0] + here:
            paint()
        _wait(children, self.timeout)
        spent = (time.perf_counter() - start) / len(owed)
        for _, then in owed:
            then(spent)


def _spawn(shares: list[list]) -> tuple[dict[int, list], list]:
    """A figure process for each share: their pids with their shares, and what could not be forked
    (to be drawn here)."""
    children, here = {}, []
    for share in shares:
        pid = _fork(share)
        if pid is None:
            here += share
        else:
            children[pid] = share
    return children, here


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


def _wait(children: dict[int, list], timeout: float) -> float:
    """Wait for the children (those that fail or do not end in ``timeout`` seconds: their shares
    drawn again here); the CPU seconds the drawing took, theirs and the redrawing's."""
    seconds, deadline = 0.0, time.monotonic() + timeout
    for pid, share in children.items():
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            failed = False
            if done:
                seconds += usage.ru_utime + usage.ru_stime
                failed = os.waitstatus_to_exitcode(status) != 0
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                failed = True
            else:
                time.sleep(0.002)
                continue
            if failed:
                log.warning("a figure process failed; its %d runs' figures are drawn again here", len(share))
                start = time.process_time()
                for paint, _ in share:
                    paint()
                seconds += time.process_time() - start
            break
    return seconds
