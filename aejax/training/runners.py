"""Runners: how a segment of an epoch (steps ``lo..hi-1`` of its order) reaches the device.

``run(state, key, lo, hi) -> (state, metrics)`` with per-step metrics as device arrays of
``hi - lo`` rows. A whole epoch is one compiled scan; a segment that stops inside an epoch
(for a checkpoint) is one compiled loop with traced bounds, so any segment needs no new compile.
"""
from __future__ import annotations

import jax
import numpy as np
from omegaconf import DictConfig

from aejax.data import Dataset
from aejax.training.epoch import epoch_batches, make_chunk_fn, make_epoch_fn, steps_per_epoch
from aejax.training.feed import StreamFeed
from aejax.training.state import TrainState


def memory_runner(x_train: jax.Array, train_step, trainer: DictConfig, state: TrainState, key: jax.Array,
                  batched: bool = False):
    """The training split held on the device: a compiled scan per epoch, a loop per segment;
    ``batched``: a seed batch (see ``make_epoch_fn``), metrics ``[n, hi - lo]``."""
    epoch = make_epoch_fn(train_step, trainer.batch_size, trainer.drop_last, batched)
    steps = steps_per_epoch(x_train.shape[0], trainer.batch_size, trainer.drop_last)
    whole = epoch.lower(state, x_train, key).compile()
    bound = jax.ShapeDtypeStruct((), np.int32)
    part = None

    def run(state, key, lo: int, hi: int):
        nonlocal part
        if (lo, hi) == (0, steps):
            return whole(state, x_train, key)
        if part is None:  # compiled on first use: most runs never stop inside an epoch
            part = epoch.lower(state, x_train, key, bound, bound).compile()
        state, metrics = part(state, x_train, key, np.int32(lo), np.int32(hi))
        return state, jax.tree.map(lambda m: m[..., lo:hi], metrics)

    return run


def stream_runner(data: Dataset, train_step, trainer: DictConfig, state: TrainState, key: jax.Array,
                  unroll: bool = False, put=jax.device_put):
    """Batches streamed from the source: grain reads chunks of batches, a compiled scan runs each;
    ``put`` places a chunk on the device(s)."""
    n, batch = data.num_train, trainer.batch_size
    chunk = trainer.unroll_steps if unroll else trainer.stream_chunk
    order = jax.jit(epoch_batches, static_argnums=(1, 2, 3))
    feed = StreamFeed(data.x_train, chunk, trainer.stream_workers, trainer.stream_prefetch)
    chunk_fn = make_chunk_fn(train_step, unroll)
    compiled = {}

    def compiled_for(k: int):  # chunk lengths: full ones, and whatever a segment ends with
        if k not in compiled:
            xs = np.zeros((k, batch // jax.process_count(), *data.example_shape), np.float32)
            ws = np.zeros((k, batch // jax.process_count()), np.float32)
            compiled[k] = chunk_fn.lower(state, *put((xs, ws))).compile()  # with the batches' placement
        return compiled[k]

    steps = steps_per_epoch(n, batch, trainer.drop_last)
    for k in {min(chunk, steps), steps % chunk} - {0}:  # an epoch's chunk lengths, compiled ahead
        compiled_for(k)

    def run(state, key, lo: int, hi: int):
        idx, weights = jax.device_get(order(key, n, batch, trainer.drop_last))
        metrics = []
        for xs, ws in feed.epoch(np.asarray(idx)[lo:hi], np.asarray(weights)[lo:hi]):
            state, m = compiled_for(len(xs))(state, *put((xs, ws)))
            metrics.append(m)
        return state, jax.tree.map(lambda *parts: jax.numpy.concatenate(parts), *metrics)

    return run
