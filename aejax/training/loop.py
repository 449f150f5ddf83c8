"""The training loop: from a validated config and a dataset to a trained state and a summary.

Everything per step runs inside one compiled ``lax.scan`` per epoch; the host sees the
per-step metrics once per epoch (a few floats), turns them into logged rows and evaluates the
test split every ``trainer.eval_every`` epochs.
"""
from __future__ import annotations

import logging
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
from aejax.tracking import Tracker, progress_bar
from aejax.training.epoch import (epoch_batches, make_chunk_fn, make_epoch_fn, make_eval_fn, pad_to_chunks,
                                  steps_per_epoch)
from aejax.training.feed import StreamFeed, load_all, plan_feed
from aejax.training.optim import build_optimizer
from aejax.training.state import TrainState, count_params, create_train_state
from aejax.training.snapshots import SnapshotRecorder
from aejax.training.step import make_train_step
from aejax.variants import build_objective

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    graphdef: nnx.GraphDef
    state: TrainState
    summary: dict[str, Any]


class _TrainRows:
    """Turns per-step metrics into one row per ``every`` steps: count-weighted means."""

    def __init__(self, every: int, schedule):
        self.every, self.schedule = every, schedule
        self.sums: dict[str, float] = {}
        self.count = 0.0

    def add(self, metrics: dict[str, np.ndarray], first_step: int, last: bool) -> dict[int, dict[str, float]]:
        """Rows for the steps ending a window; with ``last``, the final partial window too."""
        rows = {}
        counts = metrics["count"]
        steps = np.arange(first_step - 1, first_step - 1 + len(counts))
        lrs = np.broadcast_to(np.asarray(self.schedule(steps)), steps.shape)  # one call; constant schedules give a scalar
        for i in range(len(counts)):
            for name, values in metrics.items():
                if name != "count":
                    self.sums[name] = self.sums.get(name, 0.0) + float(values[i]) * float(counts[i])
            self.count += float(counts[i])
            step = first_step + i
            if step % self.every == 0 or (last and i == len(counts) - 1):
                rows[step] = {f"train/{k}": v / self.count for k, v in self.sums.items()}
                rows[step]["train/lr"] = float(lrs[i])
                self.sums, self.count = {}, 0.0
        return rows


def _epoch_mean(metrics: dict[str, np.ndarray], name: str) -> float:
    counts = metrics["count"].astype(np.float64)
    return float(np.sum(metrics[name] * counts) / np.sum(counts))


def _memory_runner(x_train: jax.Array, train_step, trainer: DictConfig, state: TrainState, key: jax.Array):
    """Epochs over the training split held on the device: one compiled scan per epoch."""
    run = make_epoch_fn(train_step, trainer.batch_size, trainer.drop_last).lower(state, x_train, key).compile()
    return lambda state, key: run(state, x_train, key)


def _stream_runner(data: Dataset, train_step, trainer: DictConfig, state: TrainState, key: jax.Array,
                   unroll: bool = False):
    """Epochs streamed from the source: grain reads chunks of batches, a compiled scan runs each."""
    n, batch = data.num_train, trainer.batch_size
    chunk = trainer.unroll_steps if unroll else trainer.stream_chunk
    order = jax.jit(epoch_batches, static_argnums=(1, 2, 3))
    feed = StreamFeed(data.x_train, chunk, trainer.stream_workers, trainer.stream_prefetch)
    steps = steps_per_epoch(n, batch, trainer.drop_last)
    chunk_fn = make_chunk_fn(train_step, unroll)
    compiled = {}
    for k in {min(chunk, steps), steps % chunk} - {0}:  # full and last chunks
        xs = jax.ShapeDtypeStruct((k, batch // jax.process_count(), *data.example_shape), np.float32)
        ws = jax.ShapeDtypeStruct((k, batch // jax.process_count()), np.float32)
        compiled[k] = chunk_fn.lower(state, xs, ws).compile()

    def run(state, key):
        idx, weights = jax.device_get(order(key, n, batch, trainer.drop_last))
        metrics = []
        for xs, ws in feed.epoch(np.asarray(idx), np.asarray(weights)):
            state, m = compiled[len(xs)](state, jax.device_put(xs), jax.device_put(ws))
            metrics.append(m)
        return state, jax.tree_util.tree_map(lambda *parts: np.concatenate(parts), *jax.device_get(metrics))

    return run


def fit(cfg: DictConfig, data: Dataset, tracker: Tracker, run_dir: Optional[Path] = None) -> FitResult:
    """Train; with ``run_dir``, snapshots (``cfg.snapshot``) are written there and logged."""
    trainer = cfg.trainer
    init_key, order_key, state_key, eval_key = jax.random.split(jax.random.key(cfg.seed), 4)
    output = resolve_output(cfg.model.output, data.unit_range)
    steps = steps_per_epoch(data.num_train, trainer.batch_size, trainer.drop_last)
    tx, schedule = build_optimizer(cfg.optimizer, steps * trainer.epochs)
    graphdef, state = create_train_state(lambda key: build_autoencoder(cfg, data.example_shape, output, key),
                                         tx, init_key, state_key)
    objective = build_objective(cfg.variant)
    feed, unroll = plan_feed(trainer, data, has_conv="conv" in (cfg.encoder.name, cfg.decoder.name))

    test_chunks, test_weights = (jax.device_put(a) for a in pad_to_chunks(data.x_test, trainer.eval_batch_size))
    train_step = make_train_step(graphdef, objective, tx)
    if feed == "memory":
        x_train = jax.device_put(load_all(data))  # before the compile clock starts
    start = time.perf_counter()
    run_epoch = (_memory_runner(x_train, train_step, trainer, state, order_key) if feed == "memory"
                 else _stream_runner(data, train_step, trainer, state, order_key, unroll))
    evaluate = make_eval_fn(graphdef, objective).lower(state.params, test_chunks, test_weights, eval_key).compile()
    snapshots = (SnapshotRecorder(cfg, data, graphdef, state.params, run_dir, tracker)
                 if run_dir is not None and cfg.snapshot.every > 0 else None)
    compile_s = time.perf_counter() - start

    def validation(params) -> dict[str, float]:
        values = jax.device_get(evaluate(params, test_chunks, test_weights, eval_key))
        return {f"val/{name}": float(v) for name, v in values.items()}

    val = validation(state.params)
    tracker.log({"step": 0, "epoch": 0, **val})
    if snapshots:
        snapshots.start()
        snapshots.take(state.params, 0, 0)
    best, best_epoch = val["val/loss"], 0
    train_rows = _TrainRows(trainer.log_every or steps, schedule)
    report_every = max(1, trainer.epochs // 10)
    bar = progress_bar(trainer.epochs, trainer.progress, f"{cfg.variant.name} z={cfg.model.latent_dim}")
    start = time.perf_counter()
    with bar:
        for epoch in range(1, trainer.epochs + 1):
            first_step = (epoch - 1) * steps + 1
            state, metrics = run_epoch(state, jax.random.fold_in(order_key, epoch))
            if snapshots:  # the previous snapshot's files and figures while the device trains
                snapshots.flush()
            metrics = jax.device_get(metrics)
            rows = train_rows.add(metrics, first_step, last=epoch == trainer.epochs)
            last_step = epoch * steps
            if epoch % trainer.eval_every == 0 or epoch == trainer.epochs:
                val = validation(state.params)
                rows.setdefault(last_step, {}).update(val)
                if val["val/loss"] < best:
                    best, best_epoch = val["val/loss"], epoch
            for step in sorted(rows):
                tracker.log({"step": step, "epoch": epoch if step == last_step else step / steps, **rows[step]})
            if snapshots and snapshots.due(epoch, trainer.epochs):
                snapshots.take(state.params, last_step, epoch, last=epoch == trainer.epochs)
            train_loss = _epoch_mean(metrics, "loss")
            bar.set_postfix({"train/loss": f"{train_loss:.4g}", "val/loss": f"{val['val/loss']:.4g}"}, refresh=False)
            bar.update()
            if bar.disable and (epoch % report_every == 0 or epoch == trainer.epochs):
                log.info("epoch %d/%d  train/loss %.5f  val/loss %.5f", epoch, trainer.epochs, train_loss, val["val/loss"])
    jax.block_until_ready(state)
    train_s = time.perf_counter() - start
    if snapshots:  # the last snapshot, the evolution figure, the explorer page: after training
        snapshots.finish(trainer.epochs * steps)

    summary = {
        **val,
        "train/loss": train_loss,
        "val/loss_best": best,
        "val/loss_best_epoch": best_epoch,
        "epochs": trainer.epochs,
        "steps": trainer.epochs * steps,
        "num_params": count_params(state.params),
        "feed": feed + (" (unrolled)" if unroll else ""),
        "compile_time_s": round(compile_s, 3),
        "train_time_s": round(train_s, 3),
        "examples_per_s": round(trainer.epochs * data.num_train / train_s, 1),
    }
    if snapshots:
        summary["snapshot_host_time_s"] = round(snapshots.host_seconds, 3)
        summary["snapshots"] = len(snapshots.frames)
        summary["snapshot_figures"] = len(snapshots.figure_steps)
    return FitResult(graphdef, state, summary)
