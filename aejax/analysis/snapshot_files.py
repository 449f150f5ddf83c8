"""A run's snapshot files (``RUN_DIR/snapshots/``): their names and reading them back.

numpy only, so that ``aejax-explore`` starts without JAX. ``probe.npz`` holds the probe set
(``x``, ``labels``, ...), ``step_XXXXXXX.npz`` one snapshot each (``SNAPSHOT_KEYS`` at least).
Data without labels has no ``labels`` in either (and empty ``class_names``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from aejax.rundir import SNAPSHOTS


def snapshot_name(step: int) -> str:
    return f"step_{step:07d}"


class SnapshotError(FileNotFoundError):
    """A run directory without (usable) snapshots: says how to get them."""


SNAPSHOT_KEYS = frozenset({"step", "epoch", "z", "grad", "loss", "z_2d", "grad_2d", "recon"})


def load_snapshots(run_dir) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """The probe set and every snapshot of a run, sorted by step; a ``SnapshotError`` says what is
    missing or does not match the probe set."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SnapshotError(f"{run_dir} is not a directory")
    folder = run_dir / SNAPSHOTS
    paths = sorted(folder.glob("step_*.npz"))
    if not (folder / "probe.npz").is_file() or not paths:
        raise SnapshotError(f"no snapshots in {folder}: train with snapshots enabled "
                            f"(snapshot.every=N, e.g. `aejax-train snapshot.every=1`) and pass that run's directory")
    with np.load(folder / "probe.npz") as f:
        probe = dict(f)
    snaps = []
    for path in paths:
        with np.load(path) as f:
            snap = dict(f)
        missing = SNAPSHOT_KEYS - set(snap)
        if missing or len(snap["z"]) != len(probe["x"]):
            raise SnapshotError(f"{path} does not match {folder / 'probe.npz'}: "
                                f"{'missing ' + ', '.join(sorted(missing)) if missing else 'another number of points'}")
        snaps.append(snap)
    return probe, sorted(snaps, key=lambda s: int(s["step"]))
