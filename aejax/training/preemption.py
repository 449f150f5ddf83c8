"""Stopping on SIGTERM, SIGINT, SIGHUP or SIGUSR1 at the next segment boundary, with a checkpoint.

Clusters and preemptible hosts send SIGTERM before they kill a job; SLURM sends SIGUSR1 ahead of
the time limit (``--signal=USR1@120``); a closed terminal or a lost SSH session sends SIGHUP. The training loop cannot
stop inside a compiled segment, so the first signal only sets a flag: the loop finishes the
running segment (at most an epoch, or ``trainer.checkpoint_every`` steps), saves a checkpoint and
raises ``Preempted``; the process then exits with ``EXIT_PREEMPTED``. A second SIGINT (Ctrl-C
twice) stops at once. With several processes (multi-host) a signal to any of them stops all
after the same segment: they agree on it once per segment (``agreed``).
"""
from __future__ import annotations

import logging
import signal
import threading

import jax
import numpy as np

log = logging.getLogger(__name__)

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: try again; resume with trainer.resume=true


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint at ``step``."""

    def __init__(self, signal_name: str, step: int, checkpoint: str | None):
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        where = f"checkpoint of step {step} in {checkpoint}" if checkpoint else "no checkpoint (checkpoints are off)"
        super().__init__(f"stopped by {signal_name} after step {step}; {where}")


class StopSignals:
    """``with StopSignals() as stop:`` ... ``if stop.requested:`` ... (handlers restored on exit)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)

    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = name
        log.warning("%s received: stopping after the running segment, with a checkpoint", name)

    def agreed(self) -> str | None:
        """The stop request every process acts on after this segment: with several processes,
        a signal that reached any of them (a collective: every process calls it once per segment)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        names = [None, *(s.name for s in self.SIGNALS)]
        codes = multihost_utils.process_allgather(np.int32(names.index(self.requested)))
        return names[int(np.max(codes))]

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
