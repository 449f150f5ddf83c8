"""A run directory has one owner (docs/bad-input.md, "Run directories").

A fresh run into a finished run's directory used to replace its checkpoints, metrics and summary;
two runs started at once into one directory both wrote it. Now the directory is locked while a run
writes it, a fresh run into one that holds a run is refused (exit 2) with nothing changed, and
``trainer.overwrite=true`` replaces it on purpose.
"""
import os
import signal
import subprocess
import sys

from conftest import offline_env, run_cli
from interrupted import RUN, start, summary, wait_for_checkpoint

from aejax.rundir import LOCK
from aejax.runlock import RunLock

SHORT = ("trainer.epochs=2", "trainer.checkpoint_every=12", "eval.enabled=false", "snapshot.every=0",
         "trainer.progress=off", "logger.mode=disabled", "encoder.hidden=[16]", "decoder.hidden=[16]")


def _files(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "aejax.log" and ".hydra" not in p.parts}


def test_a_fresh_run_into_a_finished_runs_directory_is_refused_and_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(f"hydra.run.dir={run_dir}", *SHORT, cwd=tmp_path).returncode == 0
    before = _files(run_dir)
    out = run_cli(f"hydra.run.dir={run_dir}", *SHORT, "seed=1", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"hydra.run.dir: {run_dir} holds a run (status: finished); nothing was changed" in out.stderr
    assert "trainer.resume=true" in out.stderr and "hydra.run.dir=NEW_DIR" in out.stderr
    assert "trainer.overwrite=true" in out.stderr
    assert _files(run_dir) == before and not (run_dir / LOCK).exists()
    # a resume of the finished run has nothing to do and changes nothing either
    out = run_cli(f"hydra.run.dir={run_dir}", *SHORT, "trainer.resume=true", cwd=tmp_path)
    assert out.returncode == 0 and "finished already; nothing to resume" in out.stderr, out.stderr
    assert _files(run_dir) == before


def test_overwrite_replaces_the_run_on_purpose(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(f"hydra.run.dir={run_dir}", *SHORT, "trainer.epochs=3", cwd=tmp_path).returncode == 0
    assert (run_dir / "checkpoints" / "36").is_dir()
    out = run_cli(f"hydra.run.dir={run_dir}", *SHORT, "trainer.overwrite=true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    s = summary(run_dir)
    assert s["status"] == "finished" and s["epochs"] == 2 and "resumed_from_step" not in s
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["12", "24"]  # not the old run's 36
    out = run_cli(f"hydra.run.dir={run_dir}", *SHORT, "trainer.overwrite=true", "trainer.resume=true", cwd=tmp_path)
    assert out.returncode == 2 and "trainer.overwrite: true deletes the run" in out.stderr


def test_a_second_run_into_a_directory_in_use_is_refused_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    first = start(run_dir)  # 40 epochs: still training when the second starts
    try:
        wait_for_checkpoint(run_dir, first, at_least=12)
        before = (run_dir / "summary.json").read_text()
        out = run_cli(f"hydra.run.dir={run_dir}", *RUN, "trainer.resume=true", cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert f"is in use by another run (pid {first.pid} on " in out.stderr and "wait for it to end" in out.stderr
        assert summary(run_dir)["status"] in ("running", "finished") and before
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 75 and summary(run_dir)["status"] == "preempted"
    assert not (run_dir / LOCK).exists()  # released on exit


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from aejax.runlock import RunLock; "
                               f"RunLock({str(run_dir)!r}).acquire(); print('locked', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True, env=offline_env())
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()  # SIGKILL: the lock file stays, naming a dead process
    holder.wait()
    assert str(holder.pid) in (run_dir / LOCK).read_text()
    with RunLock(run_dir):
        assert str(os.getpid()) in (run_dir / LOCK).read_text()
    out = run_cli(f"hydra.run.dir={run_dir}", *SHORT, cwd=tmp_path)
    assert out.returncode == 0 and summary(run_dir)["status"] == "finished", out.stderr
