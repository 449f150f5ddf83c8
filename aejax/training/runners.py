"""Runners: how a segment of an epoch (steps ``lo..hi-1`` of its order) reaches the device.

``run(state, key, lo, hi) -> (state, metrics)`` with per-step metrics as device arrays of
``hi - lo`` rows. A whole epoch is one compiled scan; a segment that stops inside an epoch
(for a checkpoint) is one compiled loop with traced bounds, so any segment needs no new compile.
The ``Layout`` (``parallel.py``) says where the data go and how the segment's function is
compiled; the loop's state and metrics are the same in every layout.
"""
from __future__ import annotations

import jax
import numpy as np
from omegaconf import DictConfig

from aejax.data import Dataset
from aejax.training.epoch import chunk_fn, epoch_batches, epoch_fn, over_models, steps_per_epoch
from aejax.training.feed import StreamFeed
from aejax.training.parallel import ONE_DEVICE, Layout
from aejax.training.state import TrainState


def memory_runner(x_train: jax.Array, train_step, trainer: DictConfig, state: TrainState, key: jax.Array,
                  layout: Layout = ONE_DEVICE, batched: bool = False):
    """The training split held on the device (``layout.hold``): a compiled scan per epoch, a loop per
    segment; ``batched``: a seed batch on one device (``over_models``), metrics ``[models, hi - lo]``."""
    epoch = epoch_fn(train_step, trainer.batch_size, trainer.drop_last, layout.columns)
    epoch = layout.compile(over_models(epoch) if batched else epoch, in_axes=(0, 0, None, None, None))
    steps = steps_per_epoch(data_size(x_train, layout), trainer.batch_size, trainer.drop_last)
    whole = epoch.lower(layout.spread_shapes(state), x_train, key, None, None).compile()
    bound = jax.ShapeDtypeStruct((), np.int32)
    part = None

    def run(state, key, lo: int, hi: int):
        nonlocal part
        state = layout.spread(state)
        if (lo, hi) == (0, steps):
            return layout.gather(whole(state, x_train, key, None, None))
        if part is None:  # compiled on first use: most runs never stop inside an epoch
            part = epoch.lower(state, x_train, key, bound, bound).compile()
        state, metrics = layout.gather(part(state, x_train, key, np.int32(lo), np.int32(hi)))
        return state, jax.tree.map(lambda m: m[..., lo:hi], metrics)

    return run


def data_size(x_train: jax.Array, layout: Layout) -> int:
    """Training examples in the held split (under pmap it has a leading device axis)."""
    return x_train.shape[1] if layout.axis_name else x_train.shape[0]


def stream_runner(data: Dataset, train_step, trainer: DictConfig, state: TrainState, key: jax.Array,
                  unroll: bool = False, layout: Layout = ONE_DEVICE):
    """Batches streamed from the source: grain reads chunks of batches (this process's columns),
    ``layout.put_batches`` places them, a compiled scan runs each."""
    n, batch = data.num_train, trainer.batch_size
    chunk = trainer.unroll_steps if unroll else trainer.stream_chunk
    order = jax.jit(epoch_batches, static_argnums=(1, 2, 3))
    feed = StreamFeed(data.x_train, chunk, trainer.stream_workers, trainer.stream_prefetch)
    run_chunk = layout.compile(chunk_fn(train_step, unroll), in_axes=(0, 0, 0))
    shapes = layout.spread_shapes(state)
    compiled = {}

    def compiled_for(k: int):  # chunk lengths: full ones, and whatever a segment ends with
        if k not in compiled:
            xs = np.zeros((k, batch // jax.process_count(), *data.example_shape), np.float32)
            ws = np.zeros((k, batch // jax.process_count()), np.float32)
            compiled[k] = run_chunk.lower(shapes, *layout.put_batches((xs, ws))).compile()  # with the batches' placement
        return compiled[k]

    steps = steps_per_epoch(n, batch, trainer.drop_last)
    for k in {min(chunk, steps), steps % chunk} - {0}:  # an epoch's chunk lengths, compiled ahead
        compiled_for(k)

    def run(state, key, lo: int, hi: int):
        idx, weights = jax.device_get(order(key, n, batch, trainer.drop_last))
        state, metrics = layout.spread(state), []
        for xs, ws in feed.epoch(np.asarray(idx)[lo:hi], np.asarray(weights)[lo:hi]):
            state, m = compiled_for(len(xs))(state, *layout.put_batches((xs, ws)))
            metrics.append(layout.gather(m))
        return layout.gather(state), jax.tree.map(lambda *parts: jax.numpy.concatenate(parts), *metrics)

    return run
