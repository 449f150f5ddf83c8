"""Checkpoints, resume after kill -9 and SIGTERM, divergence, a full disk, and secrets."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import offline_env, tmpfs, wandb_server_refusing_keys
from interrupted import checkpoint_steps, final_params, rows, start, wait_for_checkpoint
from interrupted import small_state as _state  # also imported by the FULL_DISK script below

from aejax.errors import EXIT_DIVERGED
from aejax.training.checkpoint import CheckpointError, Checkpoints
from aejax.training.preemption import EXIT_PREEMPTED
from aejax.tracking.wandb_file import iter_records

# 40 epochs of 12 steps, a checkpoint after each epoch: long enough to be interrupted
RUN = ("trainer.epochs=40", "trainer.checkpoint_every=12", "trainer.checkpoint_keep=3", "eval.enabled=false",
       "snapshot.every=10", "snapshot.probe_size=64", "trainer.progress=off", "logger.mode=offline")


def _start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    return start(run_dir, *overrides, run=RUN)










@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    proc = _start(run_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return run_dir


def _wait_for_wandb(run_dir: Path, proc: subprocess.Popen) -> None:
    """Until the session's offline W&B file exists (W&B opens in the background while the run
    trains, so a fast run can pass its first checkpoints before it is open)."""
    deadline = time.monotonic() + 120
    while not list((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        assert proc.poll() is None and time.monotonic() < deadline, "W&B did not open in time"
        time.sleep(0.02)


def _history_steps(file: Path) -> list[int]:
    """The steps of the history rows an offline W&B file holds (a killed session's file is cut short)."""
    return [int(json.loads(item.value_json)) for r in iter_records(file, partial=True)
            if r.WhichOneof("record_type") == "history"
            for item in r.history.item if (item.key or "/".join(item.nested_key)) == "_step"]


def _resume_and_compare(run_dir: Path, reference: Path, checkpoint: int) -> None:
    """Resume ``run_dir``, whose newest checkpoint is that of step ``checkpoint``: training goes on
    from there (nothing before it is trained or logged again) and ends with the reference's numbers."""
    session = run_dir.parent / "resume-session"
    proc = subprocess.run([sys.executable, "-m", "aejax", f"trainer.resume={run_dir}", *RUN,
                           f"hydra.run.dir={session}"],
                          cwd=run_dir.parent, env=offline_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from_step"] == checkpoint and summary["steps"] == 480
    assert f"from the checkpoint of step {checkpoint} (epoch {checkpoint // 12})" in (session / "aejax.log").read_text()
    got, expected = rows(run_dir), rows(reference)
    assert [r["step"] for r in got] == [r["step"] for r in expected]  # no step twice, none missing
    assert got == expected  # bit-identical losses
    assert summary["status"] == "finished" and summary["val/loss"] == json.loads(
        (reference / "summary.json").read_text())["val/loss"]
    for a, b in zip(final_params(run_dir), final_params(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    # the snapshots are the reference's too (the later ones were taken again)
    for ours in sorted((run_dir / "snapshots").glob("step_*.npz")):
        with np.load(ours) as a, np.load(reference / "snapshots" / ours.name) as b:
            np.testing.assert_array_equal(a["z"], b["z"])
    assert sorted(p.name for p in (run_dir / "snapshots").iterdir()) == sorted(
        p.name for p in (reference / "snapshots").iterdir())
    # the W&B run goes on under the same id: one offline file per session
    files = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    ids = set()
    for file in files:
        ids |= {r.run.run_id for r in iter_records(file, partial=True)  # the killed session's file is cut short
                if r.WhichOneof("record_type") == "run"}
    assert len(files) == 2 and len(ids) == 1 and ids == {summary["wandb_id"]}
    # the resumed session logged only the steps after the checkpoint: none was trained twice
    resumed = _history_steps(max(files, key=lambda f: f.parent.name))  # offline-run-<date>_<time>-<id>
    assert resumed == [r["step"] for r in expected if r["step"] > checkpoint]


def test_kill_9_then_resume_equals_the_uninterrupted_run(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    wait_for_checkpoint(run_dir, proc, at_least=36)
    _wait_for_wandb(run_dir, proc)  # the killed session's W&B run exists, so that the resumed one continues it
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    _resume_and_compare(run_dir, uninterrupted, checkpoint=checkpoint_steps(run_dir)[-1])


def test_sigterm_saves_a_checkpoint_and_exits_with_the_documented_code(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    wait_for_checkpoint(run_dir, proc, at_least=24)
    _wait_for_wandb(run_dir, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED == 75, err
    summary = json.loads((run_dir / "summary.json").read_text())
    steps = checkpoint_steps(run_dir)
    assert summary["status"] == "preempted" and steps[-1] == summary["preempted_at_step"] < 480
    assert rows(run_dir)[-1]["step"] == steps[-1] and "trainer.resume=" in err
    _resume_and_compare(run_dir, uninterrupted, checkpoint=steps[-1])


def test_a_diverging_run_is_marked_and_keeps_its_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "aejax", f"hydra.run.dir={run_dir}", "dataset=layers3d",
                           "optimizer=sgd", "optimizer.lr=2.0", "trainer.epochs=6", "trainer.checkpoint_every=4",
                           "snapshot.every=0", "eval.enabled=false", "logger.mode=offline"],
                          cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=300)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert proc.returncode == EXIT_DIVERGED == 5
    assert summary["status"] == "diverged" and "diverged" in proc.stderr
    bad, good = summary["diverged_at_step"], summary["last_checkpoint_step"]
    assert good < bad and checkpoint_steps(run_dir)[-1] == good
    assert all(np.isfinite(leaf).all() for leaf in final_params(run_dir))  # the kept state is sound
    assert all(r["step"] < bad for r in rows(run_dir))  # no rows from the spoilt state
    wandb_summary = [r.summary for r in iter_records(next((run_dir / "wandb").glob("offline-run-*/run-*.wandb")))
                     if r.WhichOneof("record_type") == "summary"]
    assert any(item.key == "status" and json.loads(item.value_json) == "diverged"
               for s in wandb_summary for item in s.update)





def test_a_damaged_checkpoint_falls_back_to_the_one_before_and_says_so(tmp_path, caplog):
    checkpoints = Checkpoints(tmp_path, keep=3)
    checkpoints.save(10, _state(1.0), {"note": "ten"})
    checkpoints.save(20, _state(2.0), {"note": "twenty"})
    for file in (tmp_path / "checkpoints" / "20").rglob("*"):
        if file.is_file():
            file.write_bytes(b"\x00garbage")
    step, state, host = Checkpoints(tmp_path, keep=3).restore(_state(0.0))
    assert step == 10 and host == {"note": "ten"} and np.array_equal(state.params["w"], _state(1.0).params["w"])
    assert jax.random.key_data(state.rng).tolist() == jax.random.key_data(jax.random.key(7)).tolist()
    assert "step 20" in caplog.text and "cannot be read" in caplog.text
    for file in (tmp_path / "checkpoints" / "10").rglob("*"):
        if file.is_file():
            file.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no readable checkpoint .* Delete the folder"):
        Checkpoints(tmp_path, keep=3).restore(_state(0.0))


FULL_DISK = """
import resource, sys, jax, jax.numpy as jnp
sys.path.insert(0, {tests!r})
from test_reliability import _state
from aejax.training.checkpoint import Checkpoints, CheckpointError
checkpoints = Checkpoints({root!r}, keep=3)
checkpoints.save(10, _state(1.0), {{}})
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))  # from here no file may grow past 2 KiB
try:
    checkpoints.save(20, _state(2.0), {{}})
except CheckpointError as e:
    print("ERROR:", e)
"""


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path):
    """A write that fails mid-checkpoint (here: a file size limit, as a full disk does with ENOSPC)."""
    script = FULL_DISK.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "ERROR: could not write the checkpoint of step 20" in out.stdout, out.stderr
    assert "the checkpoint of step 10 is intact" in out.stdout
    checkpoints = Checkpoints(tmp_path, keep=3)  # a new manager cleans up the unfinished write
    assert checkpoints.steps() == [10]
    step, state, _ = checkpoints.restore(_state(0.0))
    assert step == 10 and np.array_equal(state.params["w"], _state(1.0).params["w"])


def test_the_wandb_key_is_never_written_down(tmp_path):
    key = "0123456789abcdef0123456789abcdef" + "s3cr3t00"
    env = {**offline_env(), "WANDB_API_KEY": key}
    env.pop("WANDB_MODE")  # auto: online with the key, the server refuses, offline fallback
    import socket

    with socket.socket() as s:  # a port on 127.0.0.1 that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env["WANDB_BASE_URL"] = f"http://127.0.0.1:{port}"
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "aejax", f"hydra.run.dir={run_dir}", "trainer.epochs=2",
                           "logger.init_timeout=5", "eval.enabled=false", "snapshot.every=0"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "logging offline instead" in proc.stderr + (run_dir / "aejax.log").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    leaks = [str(p) for p in run_dir.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert not leaks and key not in proc.stdout + proc.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB disk that really fills up."""
    with tmpfs(tmp_path / "disk", "4m") as mount:
        yield mount


def test_a_full_disk_gives_a_clear_error_and_keeps_the_previous_checkpoint(small_disk):
    checkpoints = Checkpoints(small_disk, keep=3)
    checkpoints.save(10, _state(1.0), {})
    with open(small_disk / "filler", "wb", buffering=0) as f:  # fill the disk up to the last few bytes
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    with pytest.raises(CheckpointError, match="the disk is full.*the checkpoint of step 10 is intact"):
        checkpoints.save(20, _state(2.0), {})
    (small_disk / "filler").unlink()
    step, state, _ = Checkpoints(small_disk, keep=3).restore(_state(0.0))
    assert step == 10 and np.array_equal(state.params["w"], _state(1.0).params["w"])


def test_invalid_wandb_credentials_fall_back_to_offline_and_train(tmp_path):
    """A W&B server on 127.0.0.1 that refuses the key (HTTP 401 for everything)."""
    with wandb_server_refusing_keys() as url:
        env = {**offline_env(), "WANDB_API_KEY": "f" * 40, "WANDB_BASE_URL": url}
        env.pop("WANDB_MODE")
        run_dir = tmp_path / "run"
        proc = subprocess.run([sys.executable, "-m", "aejax", f"hydra.run.dir={run_dir}", "trainer.epochs=2",
                               "logger.init_timeout=20", "eval.enabled=false", "snapshot.every=0"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "W&B online init failed (invalid api key); logging offline instead" in (run_dir / "aejax.log").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def test_ctrl_c_saves_a_checkpoint_and_exits_with_the_documented_code(tmp_path):
    """SIGINT (Ctrl-C) as SIGTERM: the running segment ends, a checkpoint, exit 75, status preempted."""
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    wait_for_checkpoint(run_dir, proc, at_least=12)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err
    summary = json.loads((run_dir / "summary.json").read_text())
    step = summary["preempted_at_step"]
    assert summary["status"] == "preempted" and checkpoint_steps(run_dir)[-1] == step < 480
    assert f"stopped by SIGINT after step {step}; checkpoint of step {step}" in err
    assert f"trainer.resume={run_dir}" in err


SECOND_CTRL_C = """
import os, signal, time
from aejax.training.preemption import StopSignals
previous = signal.getsignal(signal.SIGINT)
with StopSignals() as stop:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)  # Python runs the handler between two instructions: here
    print("after the first:", stop.requested, flush=True)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        print("the second was ignored", flush=True)
    except KeyboardInterrupt:
        print("the second raised KeyboardInterrupt", flush=True)
print("handler restored:", signal.getsignal(signal.SIGINT) is previous)
"""


def test_a_second_ctrl_c_stops_at_once():
    """The first SIGINT only asks the loop to stop after its segment (and says so); the second
    raises KeyboardInterrupt at once. Real signals, in a process of its own."""
    out = subprocess.run([sys.executable, "-c", SECOND_CTRL_C], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["after the first: SIGINT", "the second raised KeyboardInterrupt",
                                       "handler restored: True"]
    assert "SIGINT received: stopping after the running segment, with a checkpoint" in out.stderr
