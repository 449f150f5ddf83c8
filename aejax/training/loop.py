"""The training loop: from a validated config and a dataset to a trained state and a summary.

Training runs in segments: a whole epoch as one compiled ``lax.scan``, or a part of one when a
checkpoint falls inside it. After each segment the host gets its per-step metrics (a few
floats), checks them for NaN/Inf, logs rows, evaluates the test split every
``trainer.eval_every`` epochs, takes snapshots and saves a checkpoint every
``trainer.checkpoint_every`` steps. A resumed run restores the state and the host's bookkeeping
from the last checkpoint and continues with the same data order, so its numbers equal an
uninterrupted run's.

A seed batch (``trainer.num_seeds=n``) trains ``n`` models as one compiled program: the state has
a leading axis of models (``jax.vmap``), each with its own initialisation, data order and
objective noise, drawn from its own seed exactly as a separate run would. The device work is
shared; the host keeps one ``SeedRun`` per model (its rows, checkpoints, snapshots, tracker), and a
model whose loss turns NaN/Inf stops being logged while the others go on.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from omegaconf import DictConfig, OmegaConf, open_dict

from aejax.data import Dataset
from aejax.models import build_autoencoder, resolve_output
from aejax.startup import seconds_since_start
from aejax.tracking import Tracker, progress_bar
from aejax.training.checkpoint import CheckpointError, Checkpoints
from aejax.training.epoch import epoch_key, make_eval_fn, steps_per_epoch
from aejax.training.feed import load_all, plan_feed
from aejax.training.optim import build_optimizer
from aejax.training.parallel import ONE_DEVICE, layout
from aejax.training.preemption import Preempted, StopSignals
from aejax.training.rows import TrainRows
from aejax.training.runners import memory_runner, stream_runner
from aejax.training.snapshots import SnapshotRecorder, Snapshots
from aejax.training.state import TrainState, count_params, create_train_state, split_seed
from aejax.training.step import make_train_step
from aejax.variants import build_objective

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    graphdef: nnx.GraphDef
    state: TrainState
    summary: dict[str, Any]
    status: str = "finished"  # or "diverged": a NaN/Inf loss stopped training


@dataclass
class SeedRun:
    """The host's side of one run: the only one, or one model of a seed batch."""
    cfg: DictConfig
    tracker: Tracker
    run_dir: Optional[Path]
    rows: TrainRows
    checkpoints: Optional[Checkpoints]
    snapshots: Optional[SnapshotRecorder] = None
    # the host's side of the loop, saved with every checkpoint
    host: dict[str, Any] = field(default_factory=lambda: {"val": {}, "best": math.inf, "best_epoch": 0,
                                                          "train_loss": math.nan, "epoch_loss": [0.0, 0.0]})
    diverged_at: Optional[int] = None  # the first step with a NaN/Inf loss
    stopped_at: Optional[int] = None  # the last step logged before it


def seed_config(cfg: DictConfig, index: int) -> DictConfig:
    """The config of model ``index`` of a seed batch: the config of the equivalent separate run
    (``seed + index``, ``trainer.num_seeds=1``)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg))
    OmegaConf.set_struct(out, OmegaConf.is_struct(cfg))
    with open_dict(out):
        out.seed = cfg.seed + index
        out.trainer.num_seeds = 1
    return out


def _segment_end(step: int, steps: int, every: int) -> int:
    """Where the segment starting at global ``step`` ends: the epoch's end or the next checkpoint."""
    epoch_end = (step // steps + 1) * steps
    return min(epoch_end, (step // every + 1) * every) if every else epoch_end


def fit(cfg: DictConfig, data: Dataset, tracker: Tracker, run_dir: Optional[Path] = None,
        resume: bool = False) -> FitResult:
    """Train. With ``run_dir``, snapshots and checkpoints are written there; with ``resume``, training
    continues from its last checkpoint (and the trackers are rewound to that step)."""
    return fit_seeds(cfg, data, [tracker], [run_dir], resume)[0]


def fit_seeds(cfg: DictConfig, data: Dataset, trackers: list[Tracker], run_dirs: list[Optional[Path]],
              resume: bool = False) -> list[FitResult]:
    """Train one model per tracker: ``trainer.num_seeds`` of them, seeds ``cfg.seed + i``, as one
    program; each result equals that of ``fit`` with that seed."""
    trainer, n = cfg.trainer, len(trackers)
    if n != trainer.num_seeds:
        raise ValueError(f"{n} trackers for trainer.num_seeds={trainer.num_seeds}")
    batched = n > 1
    cfgs = [seed_config(cfg, i) for i in range(n)] if batched else [cfg]
    if batched:  # each model's keys drawn from its own seed, as its separate run draws them
        init_key, order_key, state_key, eval_key = jax.vmap(lambda s: split_seed(s, 4))(jnp.array([c.seed for c in cfgs]))
    else:
        init_key, order_key, state_key, eval_key = split_seed(cfg.seed, 4)
    order = jax.vmap(epoch_key, in_axes=(0, None)) if batched else epoch_key
    pick = (lambda tree, i: jax.tree.map(lambda a: a[i], tree)) if batched else (lambda tree, i: tree)

    output = resolve_output(cfg.model.output, data.unit_range)
    steps = steps_per_epoch(data.num_train, trainer.batch_size, trainer.drop_last)
    total = trainer.epochs * steps
    tx, schedule = build_optimizer(cfg.optimizer, total)
    graphdef, state = create_train_state(lambda key: build_autoencoder(cfg, data.example_shape, output, key),
                                         tx, init_key, state_key)
    objective = build_objective(cfg.variant)
    feed, unroll = plan_feed(trainer, data, has_conv="conv" in (cfg.encoder.name, cfg.decoder.name))
    every = trainer.checkpoint_every if run_dirs[0] is not None else 0
    runs = [SeedRun(c, t, d, TrainRows(trainer.log_every or steps, schedule),
                    Checkpoints(d, trainer.checkpoint_keep) if every else None)
            for c, t, d in zip(cfgs, trackers, run_dirs)]

    # devices and processes (see parallel.py); a seed batch runs on one device
    parallel = ONE_DEVICE if batched else layout(trainer.parallel)
    state = parallel.place(state)
    test_chunks, test_weights = parallel.test_split(data.x_test, trainer.eval_batch_size)
    train_step = parallel.step(make_train_step(graphdef, objective, tx, axis_name=parallel.axis_name))
    if feed == "memory":
        x_train = parallel.hold(load_all(data))  # before the compile clock starts
    start = time.perf_counter()
    run_segment = (memory_runner(x_train, train_step, trainer, state, order_key, parallel, batched) if feed == "memory"
                   else stream_runner(data, train_step, trainer, state, order_key, unroll, parallel))
    evaluate = make_eval_fn(graphdef, objective, batched).lower(state.params, test_chunks, test_weights,
                                                                eval_key).compile()
    snapshots = None
    if run_dirs[0] is not None and cfg.snapshot.every > 0 and jax.process_index() == 0:
        built = nnx.merge(graphdef, state.params)  # the built model says its latent size and head
        for run in runs:
            run.snapshots = SnapshotRecorder(OmegaConf.to_object(cfg.snapshot), data, run.run_dir, run.tracker,
                                             seed=run.cfg.seed, label=cfg.variant.name, latent_dim=built.latent_dim,
                                             vae=built.head == "gaussian")
        snapshots = Snapshots([run.snapshots for run in runs], graphdef, state.params, objective.recon, batched)
    compile_s = time.perf_counter() - start

    def validation(params) -> list[dict[str, float]]:
        values = jax.device_get(evaluate(params, test_chunks, test_weights, eval_key))
        return [{f"val/{name}": float(v[i] if batched else v) for name, v in values.items()} for i in range(n)]

    def alive() -> list[int]:
        return [i for i, run in enumerate(runs) if run.diverged_at is None]

    step = 0
    if resume:
        step, state = _restore(runs, state, pick)
        for run in runs:
            run.tracker.rewind(step)
            if run.snapshots:
                run.snapshots.resume(step)
        log.info("resuming %s from the checkpoint of step %d (epoch %.4g)",
                 ", ".join(str(run.run_dir) for run in runs), step, step / steps)
    else:
        for run, val in zip(runs, validation(state.params)):
            run.host["val"], run.host["best"] = val, val["val/loss"]
            run.tracker.log({"step": 0, "epoch": 0, **val})
        if snapshots:
            snapshots.take(state.params, 0, 0)
    for run in runs:
        if run.snapshots:
            run.snapshots.start()

    def save(at: int) -> None:
        for i in alive():
            run = runs[i]
            if run.snapshots:
                run.snapshots.flush()  # the snapshot files up to this step belong with the checkpoint
            run.checkpoints.save(at, pick(state, i), {"loop": run.host, "rows": run.rows.state(), "epoch": at / steps})

    report_every = max(1, trainer.epochs // 10)
    label = f"{cfg.variant.name} z={cfg.model.latent_dim}" + (f" x{n} seeds" if batched else "")
    bar = progress_bar(trainer.epochs, trainer.progress, label)
    bar.update(step // steps)
    start, first = time.perf_counter(), step
    first_step_s = seconds_since_start()
    log.info("first training step %.2f s after the process started (compiling took %.2f s)", first_step_s, compile_s)
    with bar, StopSignals() as stop:
        while step < total and alive():
            epoch, lo = step // steps + 1, step % steps
            end = _segment_end(step, steps, every)
            state, metrics = run_segment(state, order(order_key, epoch), lo, lo + end - step)
            for i in alive():  # the previous snapshot's files and figures while the device trains
                if runs[i].snapshots:
                    runs[i].snapshots.flush()
            metrics = jax.device_get(metrics)
            vals = validation(state.params) if end % steps == 0 and (
                epoch % trainer.eval_every == 0 or epoch == trainer.epochs) else None
            for i in alive():
                _host_segment(runs[i], pick(metrics, i), vals and vals[i], step, end, steps, total, epoch)
            step = end
            if end % steps == 0:
                if snapshots and runs[0].snapshots.due(epoch, trainer.epochs) and alive():
                    snapshots.take(state.params, end, epoch, last=epoch == trainer.epochs, runs=alive())
                host = runs[(alive() or [0])[0]].host
                val_loss = host["val"].get("val/loss", math.nan)
                bar.set_postfix({"train/loss": f"{host['train_loss']:.4g}", "val/loss": f"{val_loss:.4g}"}, refresh=False)
                bar.update()
                if bar.disable and (epoch % report_every == 0 or epoch == trainer.epochs):
                    for i in alive():
                        log.info("epoch %d/%d  train/loss %.5f  val/loss %.5f%s", epoch, trainer.epochs,
                                 runs[i].host["train_loss"], runs[i].host["val"].get("val/loss", math.nan),
                                 f"  (seed {runs[i].cfg.seed})" if batched else "")
            requested = stop.agreed()  # the same answer in every process
            if every and (step % every == 0 or step == total or requested):
                save(step)
            if requested:
                for run in runs:
                    if run.snapshots:
                        run.snapshots.flush()
                where = runs[0].checkpoints.directory if every else None
                if batched and where is not None:
                    where = where.parent.parent
                raise Preempted(requested, step, str(where) if where else None)
    jax.block_until_ready(state)
    train_s = time.perf_counter() - start
    for run in runs:
        if run.snapshots:  # the last snapshot, the evolution figure, the explorer page: after training
            run.snapshots.finish(step if run.stopped_at is None else run.stopped_at)
        if run.checkpoints:
            run.checkpoints.close()

    trained = step - first
    shared = {
        "epochs": trainer.epochs,
        "num_params": count_params(pick(state, 0).params),
        "feed": feed + (" (unrolled)" if unroll else ""),
        "devices": parallel.size,
        "compile_time_s": round(compile_s, 3),
        "first_step_s": round(first_step_s, 3),  # from the process's start (aejax.startup)
        "train_time_s": round(train_s, 3),
        "examples_per_s": round(trained / steps * data.num_train / train_s, 1) if trained else 0.0,
    }
    if batched:
        shared["seed_batch"] = n  # models trained together; examples_per_s is per model
    if resume:
        shared["resumed_from_step"] = first
    return [_result(run, graphdef, pick(state, i), shared, step) for i, run in enumerate(runs)]


def _host_segment(run: SeedRun, metrics: dict[str, np.ndarray], val: Optional[dict[str, float]],
                  step: int, end: int, steps: int, total: int, epoch: int) -> None:
    """One run's bookkeeping after the segment of steps ``step+1..end``: the NaN/Inf check, rows,
    the epoch's training loss and validation, logged to its tracker."""
    finite = np.isfinite(metrics["loss"])
    if not finite.all():  # the state is spoilt: no rows, no checkpoint from here on
        run.diverged_at, run.stopped_at = step + int(np.argmin(finite)) + 1, step
        log.error("the loss is %s at step %d: training diverged; stopping (lower optimizer.lr?)%s",
                  metrics["loss"][np.argmin(finite)], run.diverged_at,
                  f" [seed {run.cfg.seed}; the other models of the batch go on]" if run.cfg.trainer.num_seeds > 1 else "")
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


def _restore(runs: list[SeedRun], state: TrainState, pick) -> tuple[int, TrainState]:
    """Every run's state and host bookkeeping from its checkpoints, at the newest step all have."""
    common = sorted(set.intersection(*(set(run.checkpoints.steps()) for run in runs)), reverse=True)
    if not common:
        found = "; ".join(f"{run.checkpoints.directory}: {run.checkpoints.steps() or 'none'}" for run in runs)
        raise CheckpointError(f"no checkpoint step common to all runs to resume from ({found})")
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
    stacked = states[0] if len(runs) == 1 else jax.tree.map(lambda *a: jnp.stack(a), *states)
    return at, stacked


def _result(run: SeedRun, graphdef: nnx.GraphDef, state: TrainState, shared: dict[str, Any], step: int) -> FitResult:
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
