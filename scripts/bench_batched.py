"""Wall time of a sweep through the basic launcher and through ``hydra/launcher=aejax_batched``,
side by side, with every job's final ``val/loss`` compared between the two.

Each launcher runs the whole multirun as ``aejax-train -m`` does (its own process: compile,
data, training, evaluation, snapshots and files included; W&B off), taking turns for
``--rounds`` rounds so that a busy machine slows both alike; the load average is printed with it.

With ``--sharded D`` it compares the batched launcher with itself instead: the group on one device
(``trainer.parallel=none``) against the group's models spread over ``D`` virtual CPU devices
(``trainer.parallel=sharded``), both processes started with
``XLA_FLAGS=--xla_force_host_platform_device_count=D``; it prints the groups' training time
(``train_time_s``) beside the wall time, since the host's work is the same in both.

Usage: python scripts/bench_batched.py [--rounds 1] [--sharded D] [overrides...]
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


def sweep(launcher: list[str], overrides: list[str], where: Path, devices: int = 0) -> float:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    if devices:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "aejax", "-m", *launcher, *overrides, "logger.mode=disabled",
                          "trainer.progress=off", f"hydra.sweep.dir={where}"], env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"the sweep failed:\n{out.stderr[-3000:]}")
    return took


def losses(where: Path, key: str = "val/loss") -> dict[str, float]:
    return {p.parent.name: json.loads(p.read_text())[key] for p in sorted(where.glob("*/summary.json"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sharded", type=int, default=0, metavar="D",
                        help="compare the batched group on one device with its models spread over D devices")
    args, overrides = parser.parse_known_args()
    overrides = overrides or GRID
    launchers = LAUNCHERS if not args.sharded else {
        "one device": [*LAUNCHERS["aejax_batched"], "trainer.parallel=none"],
        f"sharded over {args.sharded}": [*LAUNCHERS["aejax_batched"], "trainer.parallel=sharded"]}
    (first, second), times = launchers, {name: [] for name in launchers}
    trained: dict[str, list[float]] = {name: [] for name in launchers}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, launcher in launchers.items():
                times[name].append(sweep(launcher, overrides, Path(tmp) / f"{name}{r}", args.sharded))
                trained[name].append(max(losses(Path(tmp) / f"{name}{r}", "train_time_s").values()))
                print(f"round {r + 1}: {name} {times[name][-1]:.1f} s, training {trained[name][-1]:.2f} s "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
        a, b = losses(Path(tmp) / f"{first}0"), losses(Path(tmp) / f"{second}0")
    worst = max(abs(b[j] - a[j]) / abs(a[j]) for j in a)
    t1, t2 = statistics.median(times[first]), statistics.median(times[second])
    s1, s2 = statistics.median(trained[first]), statistics.median(trained[second])
    print(f"\n{len(a)} jobs: {' '.join(overrides)}")
    print(f"| launcher | wall time (median of {args.rounds}) | training (the longest job's train_time_s) |\n|---|---|---|")
    print(f"| {first} | {t1:.1f} s | {s1:.2f} s |\n| {second} | {t2:.1f} s ({t2 / t1:.2f}x) | {s2:.2f} s ({s2 / s1:.2f}x) |")
    print(f"largest relative difference of a job's val/loss between the two: {worst:.1e}")
    print(f"load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
