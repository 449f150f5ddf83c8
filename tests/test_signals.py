"""SIGHUP (a closed terminal, a lost SSH session) and SIGUSR1 (SLURM's warning before the time limit)
preempt a run as SIGTERM does: a checkpoint, ``status: preempted``, exit 75, and a resume that
gives the uninterrupted run's numbers. SIGHUP used to kill the run at once, leaving it ``running``."""
import signal

import pytest
from conftest import offline_env  # noqa: F401  (conftest first: the CPU devices)
from interrupted import (RUN, assert_same_run, checkpoint_steps, reference_run, rows, start, summary, train,
                         wait_for_checkpoint)

from aejax.training.preemption import EXIT_PREEMPTED


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory, *RUN)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1])
def test_a_hangup_or_slurms_warning_preempts_with_a_checkpoint(tmp_path, reference, sig):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_checkpoint(run_dir, proc, at_least=24)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err
    s, steps = summary(run_dir), checkpoint_steps(run_dir)
    assert s["status"] == "preempted" and steps[-1] == s["preempted_at_step"] < 480
    assert f"stopped by {sig.name}" in err and rows(run_dir)[-1]["step"] == steps[-1]
    out = train(f"hydra.run.dir={run_dir}", *RUN, "trainer.resume=true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert_same_run(run_dir, reference)
