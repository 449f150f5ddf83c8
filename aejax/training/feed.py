"""How training batches reach the device.

- ``memory``: the whole training split is put on the device once; an epoch is one compiled
  ``lax.scan`` that gathers its batches there (the fast path for datasets that fit).
- ``stream``: the split stays in its source (a TFDS data source, or any ``ArraySource``); grain
  reads each batch with worker threads and prefetching, ``chunk`` batches are stacked and sent
  to the device at once, and a compiled scan runs over them.

Both use the same per-epoch order (``epoch_batches`` with the same key), so for a given seed
they see the same examples in the same order. ``auto`` streams only what does not fit a budget
of device memory. With several processes (multi-host), each reads its own columns of the global
batch.
"""
from __future__ import annotations

from typing import Iterator

import jax
import numpy as np

from aejax.data import Dataset

FEEDS = ("auto", "memory", "stream")
CPU_BUDGET = 2 * 2**30  # host RAM is the limit on CPU; stay well below it


def memory_budget(fraction: float = 0.25) -> int:
    """The bytes of training data worth keeping on the device: a fraction of its memory."""
    stats = jax.local_devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    return int(limit * fraction) if limit else CPU_BUDGET


def choose_feed(mode: str, data: Dataset, budget: int | None = None) -> str:
    if mode != "auto":
        return mode
    return "memory" if data.train_bytes <= (budget or memory_budget()) else "stream"


def plan_feed(trainer, data: Dataset, has_conv: bool, backend: str | None = None) -> tuple[str, bool]:
    """``(feed, unroll)``. XLA:CPU runs convolutions inside a compiled loop (``lax.scan``) about 4x
    slower than outside one, so ``unroll=auto`` turns on for nets holding XLA convolutions on CPU
    (``has_conv``; the built-in conv layers compute with matmuls on CPU and hold none): the stream feed then
    runs chunks of ``unroll_steps`` steps compiled without a loop (and ``feed=auto`` picks it).
    A seed batch always uses the memory feed."""
    if trainer.num_seeds > 1:  # a seed batch: every model reads its own order from device memory
        return "memory", False
    backend = backend or jax.default_backend()
    unroll = trainer.unroll == "on" or (trainer.unroll == "auto" and has_conv and backend == "cpu")
    feed = "stream" if unroll and trainer.feed == "auto" else choose_feed(trainer.feed, data)
    return feed, unroll and feed == "stream"


def load_all(data: Dataset) -> np.ndarray:
    """The training split as one array (reads a streamed source completely)."""
    if isinstance(data.x_train, np.ndarray):
        return data.x_train
    return data.x_train[np.arange(data.num_train)]


class StreamFeed:
    """Yields ``(x, w)`` chunks of ``[k, batch, ...]`` in a given epoch order, read by grain threads."""

    def __init__(self, source, chunk: int, workers: int, prefetch: int):
        import grain  # only the stream feed needs it (~0.2 s to import)

        self.source, self.chunk = source, chunk
        self.options = grain.ReadOptions(num_threads=workers, prefetch_buffer_size=prefetch)
        self.process, self.processes = jax.process_index(), jax.process_count()

    def _local(self, idx: np.ndarray) -> np.ndarray:
        """This process's columns of the global batches (all of them with one process)."""
        per = idx.shape[1] // self.processes
        return idx[:, self.process * per:(self.process + 1) * per]

    def epoch(self, idx: np.ndarray, weights: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        idx, weights = self._local(idx), self._local(weights)
        steps = len(idx)
        starts = list(range(0, steps, self.chunk))
        source = self.source

        def read(start: int) -> tuple[np.ndarray, np.ndarray]:
            block = idx[start:start + self.chunk]
            x = source[block.reshape(-1)]
            return x.reshape(*block.shape, *x.shape[1:]), weights[start:start + self.chunk]

        import grain

        yield from grain.MapDataset.source(starts).map(read).to_iter_dataset(self.options)
