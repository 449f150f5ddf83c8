"""Wall time of a sweep through the basic launcher and through ``hydra/launcher=aejax_batched``,
side by side, with every job's final ``val/loss`` compared between the two.

Each launcher runs the whole multirun as ``aejax-train -m`` does (its own process: compile,
data, training, evaluation, snapshots and files included; W&B off), taking turns for
``--rounds`` rounds so that a busy machine slows both alike; the load average is printed with it.

Usage: python scripts/bench_batched.py [--rounds 1] [overrides...]
  default grid (12 jobs on digits): model.latent_dim=2,4,8 seed=0,1 optimizer.lr=1e-3,3e-3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = ["model.latent_dim=2,4,8", "seed=0,1", "optimizer.lr=1e-3,3e-3"]
LAUNCHERS = {"basic": [], "aejax_batched": ["hydra/launcher=aejax_batched"]}


def sweep(launcher: list[str], overrides: list[str], where: Path) -> float:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "aejax", "-m", *launcher, *overrides, "logger.mode=disabled",
                          "trainer.progress=off", f"hydra.sweep.dir={where}"], env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"the sweep failed:\n{out.stderr[-3000:]}")
    return took


def losses(where: Path) -> dict[str, float]:
    return {p.parent.name: json.loads(p.read_text())["val/loss"] for p in sorted(where.glob("*/summary.json"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args, overrides = parser.parse_known_args()
    overrides = overrides or GRID
    times: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, launcher in LAUNCHERS.items():
                times[name].append(sweep(launcher, overrides, Path(tmp) / f"{name}{r}"))
                print(f"round {r + 1}: {name} {times[name][-1]:.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
        basic, batched = losses(Path(tmp) / "basic0"), losses(Path(tmp) / "aejax_batched0")
    worst = max(abs(batched[j] - basic[j]) / abs(basic[j]) for j in basic)
    b, g = statistics.median(times["basic"]), statistics.median(times["aejax_batched"])
    print(f"\n{len(basic)} jobs: {' '.join(overrides)}")
    print(f"| launcher | wall time (median of {args.rounds}) |\n|---|---|")
    print(f"| basic | {b:.1f} s |\n| aejax_batched | {g:.1f} s ({g / b:.2f}x) |")
    print(f"largest relative difference of a job's val/loss between the two: {worst:.1e}")
    print(f"load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
