"""Multi-host training for real: two ``python -m aejax`` processes on 127.0.0.1, each with two
virtual CPU devices, joined by ``jax.distributed`` (gloo collectives), against one process.

Process 1 gets its own ``hydra.run.dir``: everything aejax writes must land in process 0's.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close_1e5, checkpoint_arrays, compose_config, offline_env

# 2 epochs of 12 steps of 128 (the 12th with 29 real examples), checkpoints at 20 and 24,
# snapshots at steps 0 and 24, the loss of every step in metrics.jsonl
RUN = ("trainer.epochs=2", "trainer.checkpoint_every=20", "trainer.log_every=1", "snapshot.every=2",
       "snapshot.probe_size=64", "trainer.progress=off")
TIMEOUT = 240  # seconds for a two-process session; about 30 on two busy cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_two(tmp_path: Path, name: str, *overrides: str, timeout: int = 120, meet: bool = True) -> list[subprocess.Popen]:
    """Start ``python -m aejax overrides`` as processes 0 and 1 of one run (``hydra.run.dir`` under
    ``tmp_path/name/p<id>``); with ``meet=False`` each is told another coordinator port, so they never meet."""
    env = {**offline_env(), "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    port = _free_port()
    return [subprocess.Popen([sys.executable, "-m", "aejax", *overrides,
                              f"distributed.coordinator=127.0.0.1:{port if meet else _free_port()}",
                              "distributed.num_processes=2", f"distributed.process_id={pid}",
                              f"distributed.timeout={timeout}", f"hydra.run.dir={tmp_path / name / f'p{pid}'}"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for pid in (0, 1)]


def _wait(procs: list[subprocess.Popen]) -> list[subprocess.CompletedProcess]:
    """Both processes' results; a hung peer is killed, so that the failure shows and nothing lingers."""
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def _two_processes(tmp_path: Path, name: str, *overrides: str) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """Train with ``overrides`` in two processes; returns process 0's hydra.run.dir and both results."""
    results = _wait(_start_two(tmp_path, name, *overrides))
    for pid, result in enumerate(results):
        assert result.returncode == 0, f"process {pid} exited with {result.returncode}:\n{result.stderr[-3000:]}"
    return tmp_path / name / "p0", results


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """One process (this one, one device, the memory feed) and two processes with 2 devices each
    (the stream feed: each reads its own columns of every batch), with the same global batch;
    the SIGTERM test below covers the memory feed in two processes."""
    from aejax.experiment import run

    tmp = tmp_path_factory.mktemp("multihost")
    one = tmp / "one"
    run(compose_config(*RUN, "logger.mode=disabled", "trainer.parallel=none"), one)
    two, results = _two_processes(tmp, "two", *RUN, "trainer.feed=stream")  # each process reads its columns
    return one, two, results


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _assert_same_training(run_dir: Path, one: Path) -> None:
    rows, reference = _rows(run_dir), _rows(one)
    assert [r["step"] for r in rows] == [r["step"] for r in reference] == list(range(25))  # each step once
    for key in ("train/loss", "val/loss"):
        np.testing.assert_allclose([r.get(key, np.nan) for r in rows], [r.get(key, np.nan) for r in reference],
                                   rtol=1e-5)
    for a, b in zip(checkpoint_arrays(one, 24), checkpoint_arrays(run_dir, 24), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_two_processes_train_as_one_and_only_process_0_writes(sessions):
    one, two, results = sessions
    _assert_same_training(two, one)
    s1, s2 = _summary(one), _summary(two)
    assert (s2["status"], s2["devices"], s2["feed"], s1["devices"]) == ("finished", 4, "stream", 1)
    for key in ("val/loss", "train/loss", "test/mse", "test/pca_mse", "test/probe_accuracy"):
        np.testing.assert_allclose(s2[key], s1[key], rtol=1e-5)
    with np.load(one / "snapshots" / "step_0000024.npz") as a, np.load(two / "snapshots" / "step_0000024.npz") as b:
        assert_close_1e5(b["z"], a["z"])
        assert_close_1e5(b["grad"], a["grad"])
    # process 0 wrote the run dir, one W&B run and the checkpoints (process 1 took part in them)
    assert {"config.yaml", "metrics.jsonl", "summary.json", "snapshots", "media", "checkpoints", "wandb"} <= {
        p.name for p in two.iterdir()}
    assert len(list((two / "wandb").glob("offline-run-*"))) == 1
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["20", "24"]
    # process 1's own hydra.run.dir holds only what Hydra writes before aejax starts
    assert {p.name for p in (two.parent / "p1").iterdir()} <= {".hydra", "aejax.log"}
    assert "run dir:" in results[0].stdout and "run dir:" not in results[1].stdout


def test_one_process_resumes_the_checkpoint_of_two(sessions, tmp_path):
    """The two processes' checkpoint of step 20 (inside epoch 2), resumed by one process with one
    device (``distributed.*`` may change on resume): the uninterrupted numbers."""
    from aejax.experiment import run

    one, two, _ = sessions
    shutil.copytree(two, tmp_path / "alone")
    shutil.rmtree(tmp_path / "alone" / "checkpoints" / "24")
    run(compose_config(*RUN, "trainer.feed=stream", "logger.mode=disabled", f"trainer.resume={tmp_path / 'alone'}"),
        tmp_path / "unused")
    assert _summary(tmp_path / "alone")["resumed_from_step"] == 20
    _assert_same_training(tmp_path / "alone", one)


def test_distributed_settings_are_checked_before_anything_starts():
    from aejax.errors import ConfigError

    cases = {
        ("distributed.coordinator=127.0.0.1:1234",): "distributed.num_processes: coordinator, num_processes and "
                                                     "process_id go together",
        ("distributed.coordinator=localhost", "distributed.num_processes=2", "distributed.process_id=0"):
            "distributed.coordinator: expected HOST:PORT of process 0",
        ("distributed.coordinator=h:1", "distributed.num_processes=2", "distributed.process_id=2"):
            "distributed.process_id: must be in 0..1",
        ("distributed.mode=off", "distributed.process_id=1"): "distributed.mode: off, but distributed.process_id is set",
        ("distributed.mode=sometimes",): "distributed.mode: must be one of auto, on, off",
    }
    for overrides, message in cases.items():
        with pytest.raises(ConfigError) as err:
            compose_config(*overrides)
        assert message in str(err.value)


def test_several_processes_need_the_sharded_mesh_and_say_so(tmp_path):
    """``trainer.parallel=pmap`` (or none) with two processes: exit 2 in both, before training."""
    results = _wait(_start_two(tmp_path, "pmap", "trainer.parallel=pmap", "logger.mode=disabled"))
    assert [r.returncode for r in results] == [2, 2]
    for err in (r.stderr for r in results):
        assert ("trainer.parallel: pmap trains on one process's devices; the 2 processes of distributed.* train one "
                "model over all their devices with trainer.parallel=sharded (or auto)") in err
    assert not (tmp_path / "pmap" / "p0" / "checkpoints").exists() and not (tmp_path / "pmap" / "p0" / "summary.json").exists()


def test_a_process_left_alone_stops_within_the_timeout(tmp_path):
    """Process 1 whose coordinator never starts: exit 4 with what to do. Process 0 whose peer
    never comes: JAX aborts it after the timeout (exit 134), after aejax said what it waits for."""
    procs = _start_two(tmp_path, "alone", "logger.mode=disabled", timeout=5, meet=False)
    (out0, err0), (_, err1) = [(r.stdout, r.stderr) for r in _wait(procs)]
    assert procs[1].returncode == 4, err1[-2000:]
    assert "could not join the other processes through 127.0.0.1:" in err1
    assert "within distributed.timeout=5 s" in err1 and "start process 0 (distributed.process_id=0)" in err1
    assert procs[0].returncode in (-6, 134), err0[-2000:]  # SIGABRT from JAX's coordination service
    assert "process 0 of 2: joining through 127.0.0.1:" in out0 + err0 and "DEADLINE_EXCEEDED" in err0
    assert not any((tmp_path / "alone" / f"p{pid}" / "summary.json").exists() for pid in (0, 1))


def test_sigterm_to_one_process_stops_both_and_two_processes_resume_to_the_same_numbers(tmp_path):
    """The processes agree on a stop request once per segment: SIGTERM to process 1 alone stops
    both after the same epoch, with one checkpoint, exit 75; two processes resume it (process 1
    from another hydra.run.dir) and end with one uninterrupted process's numbers."""
    import signal
    import time

    from aejax.experiment import run

    long = ("trainer.epochs=20", "trainer.checkpoint_every=100000", "trainer.progress=off", "snapshot.every=0",
            "eval.enabled=false")
    reference = tmp_path / "one"
    run(compose_config(*long, "logger.mode=disabled", "trainer.parallel=none"), reference)

    procs = _start_two(tmp_path, "stopped", *long, "logger.mode=disabled")
    run_dir = tmp_path / "stopped" / "p0"
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ((run_dir / "metrics.jsonl").is_file() and len((run_dir / "metrics.jsonl").read_text().splitlines()) >= 3):
            assert time.monotonic() < deadline and procs[0].poll() is None, "training did not start"
            time.sleep(0.1)  # two epochs trained
        procs[1].send_signal(signal.SIGTERM)
    finally:
        results = _wait(procs)
    errors = [r.stderr for r in results]
    assert [r.returncode for r in results] == [75, 75], errors[0][-2000:]
    summary = _summary(run_dir)
    step = summary["preempted_at_step"]
    assert summary["status"] == "preempted" and 0 < step < 20 * 12 and step % 12 == 0
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == [str(step)]
    for err in errors:
        assert f"stopped by SIGTERM after step {step}; checkpoint of step {step}" in err

    _two_processes(tmp_path, "resumed", *long, "logger.mode=disabled", f"trainer.resume={run_dir}")
    assert (_summary(run_dir)["status"], _summary(run_dir)["resumed_from_step"]) == ("finished", step)
    assert [r["step"] for r in _rows(run_dir)] == [r["step"] for r in _rows(reference)]  # each epoch once
    np.testing.assert_allclose([r["train/loss"] for r in _rows(run_dir)[1:]],
                               [r["train/loss"] for r in _rows(reference)[1:]], rtol=1e-5)
    for a, b in zip(checkpoint_arrays(reference, 240), checkpoint_arrays(run_dir, 240), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
