"""Resumable, fault-tolerant sweeps (docs/bad-input.md, "Sweeps").

A preempted multirun used to neither list its unfinished jobs nor resume (running it again
retrained every job), and one killed joblib worker aborted the whole sweep, healthy jobs included,
leaving them ``running``. Now a preempted sweep prints its unfinished jobs and the command that
continues it; that command (``trainer.resume=true`` into the same ``hydra.sweep.dir``) leaves
finished jobs untouched, resumes the others from their checkpoints and runs those never started;
a killed joblib worker fails only its own job.
"""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

from conftest import offline_env
from interrupted import RUN, checkpoint_steps, summary


def _sweep(sweep, *extra, cwd, values="2,3"):
    return subprocess.Popen([sys.executable, "-m", "aejax", "-m", f"model.latent_dim={values}", *RUN, *extra,
                             f"hydra.sweep.dir={sweep}"], cwd=cwd, env=offline_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait(job, at_least, proc):
    deadline = time.monotonic() + 240
    while not (checkpoint_steps(job) and checkpoint_steps(job)[-1] >= at_least):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)


def _resume_command(stderr):
    (line,) = [line for line in stderr.splitlines() if "continue " in line and "aejax-train --multirun" in line]
    args = shlex.split(line.split(": ", 1)[1])
    assert args[:2] == ["aejax-train", "--multirun"] and args[-1] == "trainer.resume=true"
    return [sys.executable, "-m", "aejax", *args[1:]]


def _files(job):
    return {p.relative_to(job): p.read_bytes() for p in sorted(job.rglob("*"))
            if p.is_file() and p.name != "aejax.log" and ".hydra" not in p.parts}


def test_a_preempted_sweep_says_what_is_left_and_its_resume_finishes_it(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _sweep(sweep, cwd=tmp_path)
    _wait(sweep / "0", 24, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert f"the sweep in {sweep} was preempted; unfinished jobs:\n  0: preempted" in err
    assert not (sweep / "1").exists()  # never started
    stopped_at = summary(sweep / "0")["preempted_at_step"]

    command = _resume_command(err)
    out = subprocess.run(command, cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"2 jobs finished in {sweep}" in out.stderr
    assert summary(sweep / "0")["resumed_from_step"] == stopped_at and summary(sweep / "0")["steps"] == 480
    assert summary(sweep / "1")["status"] == "finished" and "resumed_from_step" not in summary(sweep / "1")

    before = {job: _files(sweep / job) for job in ("0", "1")}
    again = subprocess.run(command, cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"2 jobs finished in {sweep}" in again.stderr, again.stderr
    assert {job: _files(sweep / job) for job in ("0", "1")} == before  # finished jobs untouched


def test_a_killed_joblib_worker_fails_only_its_job_and_the_resume_completes_it(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _sweep(sweep, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=tmp_path, values="2,3,4")
    _wait(sweep / "0", 24, proc)
    worker = json.loads((sweep / "0" / ".aejax.lock").read_text())["pid"]  # the process that owns job 0
    os.kill(worker, signal.SIGKILL)  # as the out-of-memory killer does
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    s = summary(sweep / "0")
    assert s["status"] == "failed" and "worker process died" in s["error"] and "SIGKILL" in s["error"]
    assert [summary(sweep / job)["status"] for job in ("1", "2")] == ["finished", "finished"]
    assert "1 of 3 jobs did not finish" in err and "0: failed" in err
    finished = {job: _files(sweep / job) for job in ("1", "2")}

    out = subprocess.run(_resume_command(err), cwd=tmp_path, env=offline_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert summary(sweep / "0")["status"] == "finished" and summary(sweep / "0")["resumed_from_step"] >= 24
    assert {job: _files(sweep / job) for job in ("1", "2")} == finished
