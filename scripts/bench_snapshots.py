"""What latent snapshots cost: training wall time with a snapshot every epoch against none.

Runs `aejax-train` on Fashion-MNIST (28x28) in fresh processes, alternating
`snapshot.every=1` and `snapshot.every=0` (W&B offline, so tables, images and histograms
are written for real), and prints the medians of the training loop's wall time (which holds
the snapshots' host work: fetching, npz files, figures, W&B logging) and the overhead.
Usage: python scripts/bench_snapshots.py [--repeats 3] [--epochs 10] [--data-dir DIR] [extra overrides...]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=None, help="prepared TFDS cache (default: TFDS's)")
    parser.add_argument("overrides", nargs="*", help="extra aejax-train overrides, e.g. snapshot.probe_size=1024")
    args = parser.parse_args()

    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    common = ["dataset=fashion_mnist", f"trainer.epochs={args.epochs}", "eval.enabled=false", "logger.mode=offline",
              *([f"dataset.data_dir={args.data_dir}"] if args.data_dir else []), *args.overrides]
    results: dict[int, list[dict]] = {0: [], 1: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for every in (1, 0):
                run_dir = Path(tmp) / f"every{every}-{r}"
                start = time.perf_counter()
                subprocess.run(["aejax-train", *common, f"snapshot.every={every}", f"hydra.run.dir={run_dir}"],
                               check=True, env=env, cwd=tmp, capture_output=True)
                summary = json.loads((run_dir / "summary.json").read_text())
                summary["wall_s"] = time.perf_counter() - start
                if every:
                    summary["snapshots"] = len(list((run_dir / "snapshots").glob("step_*.npz")))
                    summary["disk_mb"] = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file()) / 2**20
                results[every].append(summary)
                print(f"repeat {r} every={every}: train {summary['train_time_s']:.2f} s, wall {summary['wall_s']:.1f} s"
                      + (f", snapshot host work {summary['snapshot_host_time_s']:.2f} s, "
                         f"{summary['snapshot_figures']} with figures" if every else ""), flush=True)

    med = {e: statistics.median(s["train_time_s"] for s in results[e]) for e in results}
    pairs = [on["train_time_s"] / off["train_time_s"] - 1 for on, off in zip(results[1], results[0])]
    wall = {e: statistics.median(s["wall_s"] for s in results[e]) for e in results}
    on = results[1][0]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"Fashion-MNIST, default MLP, {args.epochs} epochs, {on['steps']} steps, "
          f"{on['snapshots']} snapshots of {' '.join(args.overrides) or 'the default probe set'}:")
    print(f"  training wall time, no snapshots:      median {med[0]:.2f} s")
    print(f"  training wall time, snapshot each epoch: median {med[1]:.2f} s  (+{100 * (med[1] / med[0] - 1):.1f}%; "
          f"per back-to-back pair: median {100 * statistics.median(pairs):+.1f}%, range {100 * min(pairs):+.1f} to {100 * max(pairs):+.1f}%)")
    print(f"  snapshots with figures: {statistics.median(s['snapshot_figures'] for s in results[1]):.0f} of {on['snapshots']} "
          f"(snapshot.figure_budget; the arrays, npz files and W&B tables are written at every snapshot)")
    print(f"  host time in snapshots: median {statistics.median(s['snapshot_host_time_s'] for s in results[1]):.2f} s "
          f"(overlaps the device's next epoch)")
    print(f"  whole command: median {wall[0]:.1f} s vs {wall[1]:.1f} s; run dir with snapshots {on['disk_mb']:.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
