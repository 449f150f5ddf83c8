"""The host's side of training: one ``SeedRun`` per model (its rows, checkpoints, snapshots and
tracker), the bookkeeping after each compiled segment, restoring from checkpoints, and the result.

The device trains; after each segment the host gets a few floats per step and does what is here.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aejax.tracking import Tracker
from aejax.training.checkpoint import CheckpointError, Checkpoints
from aejax.training.rows import TrainRows
from aejax.training.snapshots import SnapshotRecorder
from aejax.training.state import TrainState

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    graphdef: nnx.GraphDef
    state: TrainState
    summary: dict[str, Any]
    status: str = "finished"  # or "diverged": a NaN/Inf loss stopped training

    @property
    def model(self) -> nnx.Module:
        """The trained model (of a seed batch's run: this run's model)."""
        from aejax.training.parallel import first_replica
        from aejax.training.state import variables

        return nnx.merge(self.graphdef, first_replica(variables(self.state)))


@dataclass
class SeedRun:
    """The host's side of one run: the only one, or one model of a seed batch."""
    seed: int
    tracker: Tracker
    run_dir: Optional[Path]
    rows: TrainRows
    checkpoints: Optional[Checkpoints]
    snapshots: Optional[SnapshotRecorder] = None
    # the host's side of the loop, saved with every checkpoint
    host: dict[str, Any] = field(default_factory=lambda: {"val": {}, "best": math.inf, "best_epoch": 0,
                                                          "train_loss": math.nan, "epoch_loss": [0.0, 0.0]})
    batched: bool = False  # one model of a seed batch
    diverged_at: Optional[int] = None  # the first step with a NaN/Inf loss
    stopped_at: Optional[int] = None  # the last step logged before it


def host_segment(run: SeedRun, metrics: dict[str, np.ndarray], val: Optional[dict[str, float]],
                  step: int, end: int, steps: int, total: int, epoch: int) -> None:
    """One run's bookkeeping after the segment of steps ``step+1..end``: the NaN/Inf check, rows,
    the epoch's training loss and validation, logged to its tracker."""
    finite = np.isfinite(metrics["loss"])
    if not finite.all():  # the state is spoilt: no rows, no checkpoint from here on
        run.diverged_at, run.stopped_at = step + int(np.argmin(finite)) + 1, step
        log.error("the loss is %s at step %d: training diverged; stopping (lower optimizer.lr?)%s",
                  metrics["loss"][np.argmin(finite)], run.diverged_at,
                  f" [seed {run.seed}; the other models of the batch go on]" if run.batched else "")
        return
    host = run.host
    rows = run.rows.add(metrics, step + 1, last=end == total)
    counts = metrics["count"].astype(np.float64)
    host["epoch_loss"][0] += float(np.sum(metrics["loss"] * counts))
    host["epoch_loss"][1] += float(np.sum(counts))
    if end % steps == 0:  # an epoch ends
        host["train_loss"] = host["epoch_loss"][0] / host["epoch_loss"][1]
        host["epoch_loss"] = [0.0, 0.0]
        if val is not None:
            host["val"] = val
            rows.setdefault(end, {}).update(val)
            if val["val/loss"] < host["best"]:
                host["best"], host["best_epoch"] = val["val/loss"], epoch
    for at in sorted(rows):
        run.tracker.log({"step": at, "epoch": at / steps if at % steps else at // steps, **rows[at]})


def restore(runs: list[SeedRun], state: TrainState, pick, before: Optional[int] = None,
            stack=None) -> tuple[int, TrainState]:
    """Every run's state and host bookkeeping from its checkpoints, at the newest step all have
    (with ``before``: the newest before that step, where there is one; a damaged snapshot's step).
    ``pick(state, i)`` is run ``i``'s state as saved; ``stack`` puts the restored ones together
    (default: stacked on a leading axis)."""
    common = sorted(set.intersection(*(set(run.checkpoints.steps()) for run in runs)), reverse=True)
    if not common:
        found = "; ".join(f"{run.checkpoints.directory}: {run.checkpoints.steps() or 'none'}" for run in runs)
        raise CheckpointError(f"no checkpoint step common to all runs to resume from ({found})")
    if before is not None:
        earlier = [at for at in common if at < before]
        log.warning("the snapshot of step %d cannot be read: %s", before,
                    f"resuming from the checkpoint of step {earlier[0]} to take it again" if earlier
                    else "no checkpoint is older, so it is dropped")
        common = earlier or common
    states = []
    for at in common:
        try:
            for i, run in enumerate(runs):
                _, restored, saved = run.checkpoints.restore(pick(state, i), at)
                states.append(restored)
                run.host = saved["loop"]
                run.rows.load(saved["rows"])
            break
        except CheckpointError:
            if at == common[-1]:
                raise
            log.warning("the checkpoints of step %d cannot all be read; trying the one before", at)
            states = []
    for run in runs:  # a run whose newer checkpoints the others lack continues from the common step
        run.checkpoints.drop_after(at)
    if stack is not None:
        return at, stack(states)
    stacked = states[0] if len(runs) == 1 else jax.tree.map(lambda *a: jnp.stack(a), *states)
    return at, stacked


def result(run: SeedRun, graphdef: nnx.GraphDef, state: TrainState, shared: dict[str, Any], step: int) -> FitResult:
    host = run.host
    summary = {
        **host["val"],
        "train/loss": host["train_loss"],
        "val/loss_best": host["best"],
        "val/loss_best_epoch": host["best_epoch"],
        "steps": step if run.stopped_at is None else run.stopped_at,
        **shared,
    }
    if run.diverged_at is not None:
        summary["diverged_at_step"] = run.diverged_at
        summary["last_checkpoint_step"] = (run.checkpoints.steps() or [None])[-1] if run.checkpoints else None
    if run.snapshots:
        summary["snapshot_host_time_s"] = round(run.snapshots.host_seconds, 3)
        summary["snapshots"] = len(run.snapshots.frames)
        summary["snapshot_figures"] = len(run.snapshots.figure_steps)
    return FitResult(graphdef, state, summary, "diverged" if run.diverged_at is not None else "finished")
