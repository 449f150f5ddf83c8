"""What a seed batch buys: N models as one vmapped program against one model, in one process.

Trains with ``aejax.training.loop.fit_seeds`` (the code ``trainer.num_seeds=N`` runs), no
snapshots, end-of-run evaluation or checkpoints, and prints per N the median seconds of an epoch
for all N models (after a warm-up epoch; an epoch includes its validation pass), the examples/s
per model and in all, and the time against N separate runs (N times one model's epoch). The N
take turns, a whole run each, for ``--rounds`` rounds, so that a busy machine slows them alike.

Usage: python scripts/bench_seeds.py [--seeds 1 2 4 8] [--epochs 5] [--dataset digits|fashion_mnist] [overrides...]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import jax
from hydra import compose, initialize_config_dir

from aejax.cli import config_dir
from aejax.config import validate
from aejax.data import load_dataset
from aejax.tracking.local import LocalTracker
from aejax.assemble import assemble
from aejax.training.loop import fit_seeds


def compose_config(*overrides: str):
    """The config ``aejax-train <overrides>`` would run."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return validate(compose("config", overrides=list(overrides)))


class EpochClock:
    """A tracker that notes when each epoch's row arrives: the loop logs once per epoch."""

    def __init__(self, tracker: LocalTracker):
        self.tracker, self.times = tracker, []

    def log(self, row):
        self.tracker.log(row)
        if row["step"]:
            self.times.append(time.perf_counter())

    def __getattr__(self, name):
        return getattr(self.tracker, name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    overrides = [f"dataset={args.dataset}", f"trainer.epochs={args.epochs}", "eval.enabled=false", "snapshot.every=0",
                 "logger.mode=disabled", "trainer.progress=off", *args.overrides]
    data = load_dataset(compose_config(*overrides).dataset)
    epoch_s: dict[int, list[float]] = {n: [] for n in args.seeds}
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "aejax-bench-seeds"
    for r in range(args.rounds):
        for n in args.seeds:
            cfg = compose_config(*overrides, f"trainer.num_seeds={n}")
            clocks = [EpochClock(LocalTracker(tmp / f"{n}-{r}-{i}", {})) for i in range(n)]
            fit_seeds(assemble(cfg, data).parts, data, clocks, [None] * n)
            times = clocks[0].times
            epoch_s[n] += [b - a for a, b in zip(times, times[1:])]  # the first epoch's row ends the warm-up
            print(f"round {r}, {n} models: {statistics.median(epoch_s[n]):.3f} s per epoch so far", flush=True)

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{jax.default_backend()} ({jax.devices()[0].device_kind}); {data.name}, {data.num_train} examples, "
          f"{' '.join(args.overrides) or 'default model'}")
    one = statistics.median(epoch_s[min(args.seeds)]) / min(args.seeds)
    print("| models | epoch, all models | examples/s per model | examples/s in all | against separate runs |")
    print("|---|---|---|---|---|")
    for n in args.seeds:
        t = statistics.median(epoch_s[n])
        print(f"| {n} | {t:.3f} s ({min(epoch_s[n]):.3f}-{max(epoch_s[n]):.3f}) | {data.num_train / t:,.0f} | "
              f"{n * data.num_train / t:,.0f} | {n * one / t:.2f}x |")


if __name__ == "__main__":
    main()
