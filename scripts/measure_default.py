"""Measure the default experiment as a user runs it: `aejax-train` in a fresh process.

Prints the wall time of the whole command (imports, compile, 100 epochs, W&B offline files)
and the final test MSE for several seeds, beside 2-component PCA on the same split.
Usage: python scripts/measure_default.py [--seeds 5] [--mode offline]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from sklearn.decomposition import PCA

from aejax.data import load_dataset
from aejax.data.digits import DigitsConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--mode", default="offline", help="logger.mode for the runs")
    args = parser.parse_args()

    env = {**os.environ, "WANDB_SILENT": "true"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            run_dir = Path(tmp) / f"s{seed}"
            start = time.perf_counter()
            subprocess.run(["aejax-train", f"seed={seed}", f"logger.mode={args.mode}", f"hydra.run.dir={run_dir}"],
                           check=True, env=env, cwd=tmp, capture_output=True)
            wall = time.perf_counter() - start
            summary = json.loads((run_dir / "summary.json").read_text())
            rows.append((seed, wall, summary))
            print(f"seed {seed}: wall {wall:5.2f} s  compile {summary['compile_time_s']:.2f} s  "
                  f"train {summary['train_time_s']:.2f} s  val/loss {summary['val/loss']:.4f}", flush=True)

    data = load_dataset(OmegaConf.structured(DigitsConfig()))
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    pca = PCA(2).fit(flat(data.x_train))
    pca_mse = float(np.mean((pca.inverse_transform(pca.transform(flat(data.x_test))) - flat(data.x_test)) ** 2))

    walls = [w for _, w, _ in rows]
    losses = [s["val/loss"] for _, _, s in rows]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"aejax-train (default, logger.mode={args.mode}), {args.seeds} seeds:")
    print(f"  wall time   median {statistics.median(walls):.1f} s (range {min(walls):.1f}-{max(walls):.1f})")
    print(f"  compile     median {statistics.median(s['compile_time_s'] for _, _, s in rows):.2f} s")
    print(f"  training    median {statistics.median(s['train_time_s'] for _, _, s in rows):.2f} s "
          f"({statistics.median(s['examples_per_s'] for _, _, s in rows):,.0f} examples/s)")
    print(f"  test MSE    median {statistics.median(losses):.4f} (range {min(losses):.4f}-{max(losses):.4f})")
    print(f"  PCA, 2 components, same split: {pca_mse:.4f}")


if __name__ == "__main__":
    sys.exit(main())
