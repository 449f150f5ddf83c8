"""``hydra/launcher=aejax_batched`` through the real CLI: every job of a grid over
``model.latent_dim x seed x optimizer.lr`` trained as one program equals its basic-launcher run
(rows, parameters, snapshots, summary, .hydra files); a diverging model leaves its group going;
jobs that cannot be batched run alone; a preempted batched sweep resumes as if it had not stopped."""
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import offline_env, run_cli
from interrupted import RUN, final_params, preempt_sweep, rows, summary

from aejax.sweep import sweep_group
from aejax.tracking.wandb_file import read_run

GRID = ("model.latent_dim=2,3", "seed=0,1", "optimizer.lr=1e-3,5e-3")
SMALL = ("encoder.hidden=[16]", "decoder.hidden=[16]", "trainer.epochs=2", "snapshot.every=1", "snapshot.images=false",
         "eval.probe_examples=300", "logger.mode=disabled", "trainer.progress=off")
BATCHED = "hydra/launcher=aejax_batched"


def _close(a, b, what, atol=1e-6):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol, err_msg=what)


def _same_state(a, b, what):
    """Parameters and optimizer state to 1e-5: float32 sums in another order (padded, vmapped, a traced
    learning rate) move single values by a few 1e-6, which Adam's moments carry on."""
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        _close(x, y, what, atol=1e-5)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    batched = run_cli("-m", BATCHED, *GRID, *SMALL, f"hydra.sweep.dir={root / 'batched'}", cwd=root)
    basic = run_cli("-m", *GRID, *SMALL, f"hydra.sweep.dir={root / 'basic'}", cwd=root)
    return root, batched, basic


def test_every_job_of_a_batched_grid_equals_its_basic_launcher_run(grid):
    root, batched, basic = grid
    assert batched.returncode == 0 and basic.returncode == 0, batched.stderr + basic.stderr
    assert "jobs #0, #1, #2, #3, #4, #5, #6, #7 train as one program of 8 models" in batched.stderr
    assert "8 jobs finished" in batched.stderr
    seen = set()
    for job in map(str, range(8)):
        ours, theirs = root / "batched" / job, root / "basic" / job
        s, t = summary(ours), summary(theirs)
        assert s["status"] == "finished" and s["batched_group"] == 8 and "batched_group" not in t
        for key in ("val/loss", "train/loss", "val/loss_best", "test/mse", "test/pca_mse"):
            _close(s[key], t[key], f"job {job}: {key}")
        assert s["num_params"] == t["num_params"] and s["steps"] == t["steps"] == 24
        a, b = rows(ours), rows(theirs)
        assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) == 3
        for x, y in zip(a, b):
            assert x.keys() == y.keys()  # train/lr is the job's own
            _close([x[k] for k in sorted(x)], [y[k] for k in sorted(y)], f"job {job}, step {x['step']}")
        _same_state(final_params(ours), final_params(theirs), f"job {job}: final state")  # its own (unpadded) state
        for step in ("step_0000000", "step_0000024"):
            with np.load(ours / "snapshots" / f"{step}.npz") as x, np.load(theirs / "snapshots" / f"{step}.npz") as y:
                assert x["z"].shape == y["z"].shape
                # codes pass through the whole encoder: float32 sums in another order, to 1e-5
                _close(x["z"], y["z"], f"job {job}: {step} codes", atol=1e-5)
        for name in ("config.yaml", ".hydra/config.yaml", ".hydra/overrides.yaml"):
            x, y = (yaml.safe_load((d / name).read_text()) for d in (ours, theirs))
            if name == "config.yaml":  # each sweep is its own W&B group
                assert x["logger"].pop("group") == sweep_group(root / "batched")
                assert y["logger"].pop("group") == sweep_group(root / "basic")
            assert x == y, name
        cfg = yaml.safe_load((ours / "config.yaml").read_text())
        seen.add((cfg["model"]["latent_dim"], cfg["seed"], cfg["optimizer"]["lr"]))
    assert len(seen) == 8
    losses = {summary(root / "batched" / str(j))["val/loss"] for j in range(8)}
    assert len(losses) == 8  # eight different models


def test_a_diverging_model_leaves_its_group_going_and_unbatchable_jobs_run_alone(tmp_path):
    sweep = tmp_path / "sweep"
    # lr=100 with SGD and a linear output diverges within the first epoch; feed=stream cannot be batched
    result = run_cli("-m", BATCHED, "optimizer=sgd", "optimizer.lr=0.05,100", "trainer.feed=memory,stream",
                     "model.output=identity", "encoder.hidden=[16]", "decoder.hidden=[16]", "trainer.epochs=2",
                     "snapshot.every=0", "eval.enabled=false", "logger.mode=offline", "trainer.progress=off",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # a job did not finish
    assert "jobs #0, #2 train as one program of 2 models" in result.stderr
    assert "job 1 runs alone: trainer.feed=stream" in result.stdout + result.stderr
    assert "2 of 4 jobs did not finish" in result.stderr
    s = [summary(sweep / str(j)) for j in range(4)]
    assert [x["status"] for x in s] == ["finished", "finished", "diverged", "diverged"]
    assert s[0]["batched_group"] == 2 and "batched_group" not in s[1]
    assert s[0]["steps"] == s[1]["steps"] == 24
    _close(s[0]["val/loss"], s[1]["val/loss"], "the batched job against the same job run alone")
    assert s[2]["diverged_at_step"] == s[3]["diverged_at_step"]
    for j in range(4):  # its own W&B run in the sweep's group
        wb = read_run(sweep / str(j))
        assert wb.group == sweep_group(sweep) and wb.config["optimizer"]["lr"] == (0.05 if j < 2 else 100)
        assert wb.exit_code == (0 if j < 2 else 1)
    assert [wb.name for wb in map(read_run, (sweep / "0", sweep / "2"))] == ["vanilla-z2-s0-lr=0.05-feed=memory",
                                                                             "vanilla-z2-s0-lr=100-feed=memory"]


def test_a_preempted_batched_sweep_resumes_as_if_never_stopped(tmp_path):
    sweep, args = tmp_path / "sweep", ("model.latent_dim=2,3", "optimizer.lr=1e-3,3e-3", *RUN)
    command = preempt_sweep([BATCHED, *args], sweep, "3", tmp_path)
    assert all(summary(sweep / str(j))["status"] == "preempted" for j in range(4))
    stopped = summary(sweep / "0")["preempted_at_step"]
    assert stopped < 480
    assert BATCHED in command
    out = subprocess.run([sys.executable, "-m", "aejax", *command[1:]], cwd=tmp_path, env=offline_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "train as one program of 4 models" in out.stderr and "4 jobs finished" in out.stderr
    # the same batched sweep, not interrupted (the grid test above compares batched with basic)
    whole = subprocess.run([sys.executable, "-m", "aejax", "-m", BATCHED, *args, f"hydra.sweep.dir={tmp_path / 'whole'}"],
                           cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    for j in map(str, range(4)):
        s, t = summary(sweep / j), summary(tmp_path / "whole" / j)
        assert s["resumed_from_step"] == stopped and s["steps"] == t["steps"] == 480
        assert s["val/loss"] == t["val/loss"], f"job {j}"
        assert rows(sweep / j) == rows(tmp_path / "whole" / j)
        for x, y in zip(final_params(sweep / j), final_params(tmp_path / "whole" / j), strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"job {j}: final state")
