"""Measure the data path on this machine: preparing Fashion-MNIST and reading it back.

Prints: preparation time from Debian's IDX files into a fresh cache, a no-op re-prepare, reading
both splits into memory, and streaming throughput (examples/s) of a full training epoch read
from the prepared cache through grain, for several reader thread counts. Usage:
    python scripts/bench_data.py [--source-dir /usr/share/datasets/fashion-mnist] [--batch 128]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import jax
import numpy as np

from aejax.data import mnist_family
from aejax.data.tfds_source import ImageRecords, read_all
from aejax.training.epoch import epoch_batches
from aejax.training.feed import StreamFeed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        start = time.perf_counter()
        mnist_family.prepare("fashion_mnist", data_dir=data_dir, source_dir=args.source_dir)
        prepare_s = time.perf_counter() - start
        start = time.perf_counter()
        mnist_family.prepare("fashion_mnist", data_dir=data_dir, source_dir=args.source_dir)
        again_ms = (time.perf_counter() - start) * 1e3

        sources = mnist_family.data_sources("fashion_mnist", data_dir=data_dir)
        start = time.perf_counter()
        read_all(sources["train"], "image", "label")
        read_all(sources["test"], "image", "label")
        load_s = time.perf_counter() - start

        records = ImageRecords(sources["train"])
        idx, w = (np.asarray(a) for a in epoch_batches(jax.random.key(0), len(records), args.batch, False))
        rates = {}
        for workers in (1, 2, 4, 8):
            times = []
            for _ in range(args.repeats):
                feed = StreamFeed(records, chunk=16, workers=workers, prefetch=4)
                start = time.perf_counter()
                for _chunk in feed.epoch(idx, w):
                    pass
                times.append(time.perf_counter() - start)
            rates[workers] = len(records) / statistics.median(times)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"prepare fashion_mnist from IDX files:  {prepare_s:.1f} s")
    print(f"prepare again (already prepared):      {again_ms:.1f} ms")
    print(f"read both splits into memory:          {load_s:.2f} s (70,000 examples)")
    for workers, rate in rates.items():
        print(f"stream one epoch, batch {args.batch}, {workers} reader threads: {rate:,.0f} examples/s")


if __name__ == "__main__":
    main()
