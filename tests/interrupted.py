"""Helpers of the tests that interrupt, damage and resume real runs (a small net on digits)."""
from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from conftest import offline_env

# 40 epochs of 12 steps, a checkpoint after each: long enough to be interrupted, a few seconds in all
RUN = ("trainer.epochs=40", "trainer.checkpoint_every=12", "trainer.checkpoint_keep=3", "eval.enabled=false",
       "snapshot.every=0", "trainer.progress=off", "logger.mode=disabled", "encoder.hidden=[16]", "decoder.hidden=[16]")


def train(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aejax", *args], cwd=cwd, env=env or offline_env(),
                          capture_output=True, text=True, timeout=300)


def start(run_dir: Path, *overrides: str, run: tuple[str, ...] = RUN) -> subprocess.Popen:
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "aejax", f"hydra.run.dir={run_dir}", *run, *overrides],
                            cwd=run_dir.parent, env=offline_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def checkpoint_steps(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, at_least: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        steps = checkpoint_steps(run_dir)
        if steps and max(steps) >= at_least:
            return
        assert proc.poll() is None, f"the run ended before step {at_least}: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError("no checkpoint in time")


def final_params(run_dir: Path) -> list[np.ndarray]:
    step = checkpoint_steps(run_dir)[-1]
    tree = ocp.PyTreeCheckpointer().restore(run_dir / "checkpoints" / str(step) / "state")
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def garble(checkpoint: Path) -> Path:
    """Flip a few bytes in the middle of the largest array file of a checkpoint (its size unchanged):
    orbax restores it without an error, as other numbers."""
    files = [p for p in (checkpoint / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    big = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(big.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 4):
        data[offset] ^= 0xFF
    big.write_bytes(bytes(data))
    return big


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """The run's metrics, final state and val/loss are the reference's, bit for bit."""
    ours, theirs = rows(run_dir), rows(reference)
    assert [r["step"] for r in ours] == [r["step"] for r in theirs]  # no step twice, none missing
    assert ours == theirs
    assert summary(run_dir)["status"] == "finished"
    assert summary(run_dir)["val/loss"] == summary(reference)["val/loss"]
    for a, b in zip(final_params(run_dir), final_params(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def small_state(value: float):
    """A small TrainState to checkpoint (random weights: constant ones would compress to nothing)."""
    from aejax.training.state import TrainState

    params = {"w": value + jax.random.normal(jax.random.key(0), (64, 32)), "b": jnp.zeros(32)}
    return TrainState(step=jnp.int32(3), params=params, opt_state=(jnp.ones(3),), rng=jax.random.key(7))


def reference_run(tmp_path_factory, *overrides: str) -> Path:
    """An uninterrupted run with ``overrides``, to compare interrupted ones with."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    out = train(f"hydra.run.dir={run_dir}", *overrides, cwd=run_dir.parent)
    assert out.returncode == 0, out.stderr
    return run_dir


def preempt_sweep(args: list[str], sweep: Path, last_job: str, cwd: Path, env: dict | None = None) -> list[str]:
    """Start the multirun ``aejax -m *args`` into ``sweep``, SIGTERM it once job ``last_job`` has a
    checkpoint at step 24 or later, check that it stopped as preempted (exit 75), and return the
    command it prints to continue it (``aejax-train ... trainer.resume=true``, split)."""
    proc = subprocess.Popen([sys.executable, "-m", "aejax", "-m", *args, f"hydra.sweep.dir={sweep}"], cwd=cwd,
                            env=env or offline_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (checkpoint_steps(sweep / last_job) and checkpoint_steps(sweep / last_job)[-1] >= 24):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    (line,) = [line for line in err.splitlines() if line.startswith("continue it with: ")]
    command = shlex.split(line.split(": ", 1)[1])
    assert command[-1] == "trainer.resume=true"
    return command
