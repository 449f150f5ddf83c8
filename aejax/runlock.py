"""The lock that gives a run directory one owner, and the rules of who may write a run directory (``RUN_DIR/.aejax.lock``, named in ``aejax.rundir``).

A run takes it before it writes anything and releases it when it ends, so two runs started into
one directory (the same ``hydra.run.dir`` second, a sweep launched twice) cannot both write it:
the second is refused, naming the holder. The kernel's ``flock`` is the lock, so a process killed
hard (``kill -9``, the OOM killer) leaves no stale lock behind; the file records the holder's PID
and host for the message, and decides where the filesystem has no ``flock``.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Optional

from aejax.errors import RunDirTaken
from aejax.rundir import (CHECKPOINTS, CONFIG, FINISHED, LOCK, MEDIA, METRICS, SEED_PREFIX, SNAPSHOTS, SUMMARY,
                          checkpoint_steps, read_json, read_summary, run_status)


class RunDirBusy(RuntimeError):
    """Another live process holds the run directory's lock; its PID and host are in the message."""


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError, TypeError):
        return True  # someone else's process, or cannot tell: assume it lives
    return True


class RunLock:
    """``RUN_DIR/.aejax.lock``, held by the one process that writes the run directory: taken when a
    run starts, released (deleted) when it ends. The kernel's ``flock`` on it is the lock, so a
    killed process (``kill -9``, the OOM killer) releases it with its death; the file names the
    holder's PID and host. Where the filesystem has no ``flock``, a lock file whose PID is not alive
    on this host is stale and taken over; one of another host is respected."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        import fcntl

        for _ in range(5):  # the file may be deleted by its releasing holder meanwhile
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES):
                    raise RunDirBusy(self._holder()) from None
                if not self._stale_or_mine():  # no flock on this filesystem: PID and host decide
                    raise RunDirBusy(self._holder()) from None
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # locked a file its holder deleted on release: take the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
            self._fd = fd
            return self
        raise RunDirBusy(self._holder())

    def _stale_or_mine(self) -> bool:
        holder = read_json(self.path)
        return not holder or (holder.get("host") == socket.gethostname()
                              and (holder.get("pid") == os.getpid() or not _alive(holder.get("pid"))))

    def _holder(self) -> str:
        holder = read_json(self.path)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"])) if "since" in holder else "?"
        return (f"{self.path.parent} is in use by another run (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, since {since}; lock file {self.path})")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run's files (a summary, metrics or checkpoints; a seed batch's runs)."""
    run_dir = Path(run_dir)
    return (run_dir / SUMMARY).is_file() or (run_dir / METRICS).is_file() or (run_dir / CHECKPOINTS).is_dir() or any(
        holds_run(p) for p in run_dir.glob(f"{SEED_PREFIX}*") if p.is_dir())


def clear_run(run_dir: Path) -> None:
    """Delete the run's files from ``run_dir`` (``trainer.overwrite=true``); others are kept."""
    import shutil

    run_dir = Path(run_dir)
    for path in [*(run_dir / n for n in (SUMMARY, METRICS, CONFIG, CHECKPOINTS, SNAPSHOTS, MEDIA)),
                 *run_dir.glob(f"{SEED_PREFIX}*")]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


OTHER_DIR = "start a new run elsewhere with hydra.run.dir=NEW_DIR (hydra.sweep.dir=NEW_DIR in a multirun)"


def own(run_dir: Path, *, resume: bool, overwrite: bool) -> RunLock:
    """Take ``run_dir`` for this run, or raise ``RunDirTaken`` (exit 2) without changing anything in it:
    when another live process holds it, or when a fresh run (no ``resume``) would write into a run's
    files. ``overwrite`` deletes that run's files first (``trainer.overwrite=true``)."""
    try:
        lock = RunLock(run_dir).acquire()
    except RunDirBusy as e:
        raise RunDirTaken("hydra.run.dir", f"{e}: wait for it to end, or {OTHER_DIR}") from None
    if not resume and holds_run(run_dir):
        if not overwrite:
            lock.release()
            raise RunDirTaken("hydra.run.dir", f"{run_dir} holds a run (status: {run_status(run_dir)}); nothing was "
                                               f"changed. Continue it with trainer.resume=true, {OTHER_DIR}, or "
                                               "replace it with trainer.overwrite=true")
        clear_run(run_dir)
    return lock


def finished_already(run_dir: Path) -> bool:
    """Whether resuming ``run_dir`` has nothing to do: it finished, and each of its runs' newest
    checkpoint (if any) is its last step. Such a run is left untouched by a resume."""
    if run_status(run_dir) != FINISHED:
        return False
    runs = read_summary(run_dir).get("runs")
    for run in [Path(run_dir) / r for r in runs] if isinstance(runs, list) else [Path(run_dir)]:
        steps, last = checkpoint_steps(run), read_summary(run).get("steps")
        if steps and isinstance(last, int) and steps[-1] < last:
            return False  # an earlier checkpoint (a copy cut short): retrain from it
    return True
