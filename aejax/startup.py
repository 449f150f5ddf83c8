"""Seconds since this process started: the clock of the start-up figure (``first_step_s``).

A user waits from the moment the command starts: the interpreter, the imports, Hydra, reading
the data and compiling all count, so the clock starts with the process, not with aejax. Linux
records that instant (``/proc/self/stat``: the start time in clock ticks after boot, compared
with ``/proc/uptime``; 10 ms resolution). Where there is no ``/proc``, the clock starts when this
module is first imported, which leaves out the interpreter's start and the imports before it.
"""
from __future__ import annotations

import os
import time


def _process_start() -> float:
    """The process's start as a ``time.time()`` value."""
    now = time.time()
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime (after the comm field)
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return now - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return now


PROCESS_START = _process_start()


def seconds_since_start() -> float:
    """Seconds since the process started."""
    return time.time() - PROCESS_START
