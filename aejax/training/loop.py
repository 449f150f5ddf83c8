"""The training loop: from a validated config and a dataset to a trained state and a summary.

Training runs in segments: a whole epoch as one compiled ``lax.scan``, or a part of one when a
checkpoint falls inside it. After each segment the host gets its per-step metrics (a few
floats), checks them for NaN/Inf, logs rows, evaluates the test split every
``trainer.eval_every`` epochs, takes snapshots and saves a checkpoint every
``trainer.checkpoint_every`` steps. A resumed run restores the state and the host's bookkeeping
from the last checkpoint and continues with the same data order, so its numbers equal an
uninterrupted run's.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
from flax import nnx
from omegaconf import DictConfig

from aejax.data import Dataset
from aejax.models import build_autoencoder, resolve_output
from aejax.startup import seconds_since_start
from aejax.tracking import Tracker, progress_bar
from aejax.training.checkpoint import Checkpoints
from aejax.training.epoch import epoch_key, make_eval_fn, pad_to_chunks, steps_per_epoch
from aejax.training.feed import load_all, plan_feed
from aejax.training.optim import build_optimizer
from aejax.training.parallel import data_mesh, replicate, sharded_step, split_batches
from aejax.training.preemption import Preempted, StopSignals
from aejax.training.rows import TrainRows
from aejax.training.runners import memory_runner, stream_runner
from aejax.training.snapshots import SnapshotRecorder
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


def _segment_end(step: int, steps: int, every: int) -> int:
    """Where the segment starting at global ``step`` ends: the epoch's end or the next checkpoint."""
    epoch_end = (step // steps + 1) * steps
    return min(epoch_end, (step // every + 1) * every) if every else epoch_end


def fit(cfg: DictConfig, data: Dataset, tracker: Tracker, run_dir: Optional[Path] = None,
        resume: bool = False) -> FitResult:
    """Train. With ``run_dir``, snapshots and checkpoints are written there; with ``resume``, training
    continues from its last checkpoint (and the trackers are rewound to that step)."""
    trainer = cfg.trainer
    init_key, order_key, state_key, eval_key = split_seed(cfg.seed, 4)
    output = resolve_output(cfg.model.output, data.unit_range)
    steps = steps_per_epoch(data.num_train, trainer.batch_size, trainer.drop_last)
    total = trainer.epochs * steps
    tx, schedule = build_optimizer(cfg.optimizer, total)
    graphdef, state = create_train_state(lambda key: build_autoencoder(cfg, data.example_shape, output, key),
                                         tx, init_key, state_key)
    objective = build_objective(cfg.variant)
    feed, unroll = plan_feed(trainer, data, has_conv="conv" in (cfg.encoder.name, cfg.decoder.name))
    every = trainer.checkpoint_every if run_dir is not None else 0
    checkpoints = Checkpoints(run_dir, trainer.checkpoint_keep) if every else None

    mesh = data_mesh(trainer.parallel)
    state = replicate(state, mesh)
    test_chunks, test_weights = split_batches(
        pad_to_chunks(data.x_test, trainer.eval_batch_size, 1 if mesh is None else mesh.size), mesh, axis=1)
    train_step = sharded_step(make_train_step(graphdef, objective, tx), mesh)
    if feed == "memory":
        x_train = replicate(jax.device_put(load_all(data)), mesh)  # before the compile clock starts
    start = time.perf_counter()
    run_segment = (memory_runner(x_train, train_step, trainer, state, order_key) if feed == "memory"
                   else stream_runner(data, train_step, trainer, state, order_key, unroll,
                                      put=lambda a: split_batches(a, mesh, axis=1)))
    evaluate = make_eval_fn(graphdef, objective).lower(state.params, test_chunks, test_weights, eval_key).compile()
    snapshots = (SnapshotRecorder(cfg, data, graphdef, state.params, run_dir, tracker, put=lambda a: replicate(a, mesh))
                 if run_dir is not None and cfg.snapshot.every > 0 else None)
    compile_s = time.perf_counter() - start

    def validation(params) -> dict[str, float]:
        values = jax.device_get(evaluate(params, test_chunks, test_weights, eval_key))
        return {f"val/{name}": float(v) for name, v in values.items()}

    train_rows = TrainRows(trainer.log_every or steps, schedule)
    # the host's side of the loop, saved with every checkpoint
    host: dict[str, Any] = {"val": {}, "best": math.inf, "best_epoch": 0, "train_loss": math.nan,
                            "epoch_loss": [0.0, 0.0]}
    step = 0
    if resume:
        step, state, saved = checkpoints.restore(state)
        host = saved["loop"]
        train_rows.load(saved["rows"])
        tracker.rewind(step)
        if snapshots:
            snapshots.resume(step)
        log.info("resuming %s from the checkpoint of step %d (epoch %.4g)", run_dir, step, step / steps)
    else:
        host["val"] = validation(state.params)
        host["best"] = host["val"]["val/loss"]
        tracker.log({"step": 0, "epoch": 0, **host["val"]})
        if snapshots:
            snapshots.take(state.params, 0, 0)
    if snapshots:
        snapshots.start()

    def save(at: int) -> None:
        if snapshots:
            snapshots.flush()  # the snapshot files up to this step belong with the checkpoint
        checkpoints.save(at, state, {"loop": host, "rows": train_rows.state(), "epoch": at / steps})

    diverged_at = None
    report_every = max(1, trainer.epochs // 10)
    bar = progress_bar(trainer.epochs, trainer.progress, f"{cfg.variant.name} z={cfg.model.latent_dim}")
    bar.update(step // steps)
    start, first = time.perf_counter(), step
    first_step_s = seconds_since_start()
    log.info("first training step %.2f s after the process started (compiling took %.2f s)", first_step_s, compile_s)
    with bar, StopSignals() as stop:
        while step < total:
            epoch, lo = step // steps + 1, step % steps
            end = _segment_end(step, steps, every)
            state, metrics = run_segment(state, epoch_key(order_key, epoch), lo, lo + end - step)
            if snapshots:  # the previous snapshot's files and figures while the device trains
                snapshots.flush()
            metrics = jax.device_get(metrics)
            finite = np.isfinite(metrics["loss"])
            if not finite.all():  # the state is spoilt: no rows, no checkpoint from here on
                diverged_at = step + int(np.argmin(finite)) + 1
                log.error("the loss is %s at step %d: training diverged; stopping (lower optimizer.lr?)",
                          metrics["loss"][np.argmin(finite)], diverged_at)
                break
            rows = train_rows.add(metrics, step + 1, last=end == total)
            counts = metrics["count"].astype(np.float64)
            host["epoch_loss"][0] += float(np.sum(metrics["loss"] * counts))
            host["epoch_loss"][1] += float(np.sum(counts))
            step = end
            if end % steps == 0:  # an epoch ends
                host["train_loss"] = host["epoch_loss"][0] / host["epoch_loss"][1]
                host["epoch_loss"] = [0.0, 0.0]
                if epoch % trainer.eval_every == 0 or epoch == trainer.epochs:
                    host["val"] = validation(state.params)
                    rows.setdefault(end, {}).update(host["val"])
                    if host["val"]["val/loss"] < host["best"]:
                        host["best"], host["best_epoch"] = host["val"]["val/loss"], epoch
            for at in sorted(rows):
                tracker.log({"step": at, "epoch": at / steps if at % steps else at // steps, **rows[at]})
            if end % steps == 0:
                if snapshots and snapshots.due(epoch, trainer.epochs):
                    snapshots.take(state.params, end, epoch, last=epoch == trainer.epochs)
                val_loss = host["val"].get("val/loss", math.nan)
                bar.set_postfix({"train/loss": f"{host['train_loss']:.4g}", "val/loss": f"{val_loss:.4g}"}, refresh=False)
                bar.update()
                if bar.disable and (epoch % report_every == 0 or epoch == trainer.epochs):
                    log.info("epoch %d/%d  train/loss %.5f  val/loss %.5f", epoch, trainer.epochs,
                             host["train_loss"], val_loss)
            if checkpoints and (step % every == 0 or step == total or stop.requested):
                save(step)
            if stop.requested:
                if snapshots:
                    snapshots.flush()
                raise Preempted(stop.requested, step, str(checkpoints.directory) if checkpoints else None)
    jax.block_until_ready(state)
    train_s = time.perf_counter() - start
    if snapshots:  # the last snapshot, the evolution figure, the explorer page: after training
        snapshots.finish(step)
    if checkpoints:
        checkpoints.close()

    trained = step - first
    summary = {
        **host["val"],
        "train/loss": host["train_loss"],
        "val/loss_best": host["best"],
        "val/loss_best_epoch": host["best_epoch"],
        "epochs": trainer.epochs,
        "steps": step,
        "num_params": count_params(state.params),
        "feed": feed + (" (unrolled)" if unroll else ""),
        "devices": 1 if mesh is None else mesh.size,
        "compile_time_s": round(compile_s, 3),
        "first_step_s": round(first_step_s, 3),  # from the process's start (aejax.startup)
        "train_time_s": round(train_s, 3),
        "examples_per_s": round(trained / steps * data.num_train / train_s, 1) if trained else 0.0,
    }
    if resume:
        summary["resumed_from_step"] = first
    if diverged_at is not None:
        summary["diverged_at_step"] = diverged_at
        summary["last_checkpoint_step"] = (checkpoints.steps() or [None])[-1] if checkpoints else None
    if snapshots:
        summary["snapshot_host_time_s"] = round(snapshots.host_seconds, 3)
        summary["snapshots"] = len(snapshots.frames)
        summary["snapshot_figures"] = len(snapshots.figure_steps)
    return FitResult(graphdef, state, summary, "diverged" if diverged_at is not None else "finished")
