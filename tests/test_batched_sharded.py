"""A batched sweep's group under ``trainer.parallel=sharded``: its models spread over the devices
(``aejax.training.parallel.Models``), every job still equal to its basic-launcher run; a group
that the devices do not divide is padded with copies of its last model; a preempted sharded
group resumes as if it had not stopped.

conftest.py gives the suite 8 virtual CPU devices; the runs with 2 or 3 devices set their own
XLA_FLAGS."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DEVICE_COUNT_FLAG, USER_XLA_FLAGS, compose_config, offline_env, run_cli
from interrupted import RUN, final_params, preempt_sweep, rows, summary
from jax.sharding import PartitionSpec as P

from aejax.assemble import build_model, build_objective, build_optimizer
from aejax.data import load_dataset
from aejax.training.epoch import epoch_fn, epoch_key, over_models
from aejax.training.parallel import MODELS, ONE_DEVICE, Models, layout
from aejax.training.runners import memory_runner
from aejax.training.state import create_train_state, split_seed
from aejax.training.step import make_train_step

GRID = ("model.latent_dim=2,3", "seed=0,1", "optimizer.lr=1e-3,5e-3")
# a batch of 96 splits evenly over 8 devices and over 3 (each job must be valid as its separate sharded run)
SMALL = ("encoder.hidden=[16]", "decoder.hidden=[16]", "trainer.epochs=2", "trainer.batch_size=96", "snapshot.every=1",
         "snapshot.images=false", "eval.probe_examples=300", "logger.mode=disabled", "trainer.progress=off",
         "trainer.parallel=sharded")
BATCHED = "hydra/launcher=aejax_batched"


def _env(devices: int) -> dict:
    """The CLI's environment with ``devices`` virtual CPU devices."""
    flags = " ".join(f for f in USER_XLA_FLAGS.split() if not f.startswith(DEVICE_COUNT_FLAG))
    return {**offline_env(), "XLA_FLAGS": f"{flags} {DEVICE_COUNT_FLAG}={devices}".strip()}


def _cli(*args, cwd, devices: int):
    return subprocess.run([sys.executable, "-m", "aejax", *args], cwd=cwd, env=_env(devices), capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("n, d, used, per", [(8, 8, 8, 1), (12, 8, 6, 2), (9, 8, 5, 2), (3, 2, 2, 2), (2, 8, 2, 1),
                                             (13, 2, 2, 7)])
def test_a_group_takes_the_fewest_devices_that_give_each_the_fewest_models(n, d, used, per):
    if jax.device_count() < d:
        pytest.skip(f"needs {d} devices")
    spread = Models(n, jax.devices()[:d])
    assert (spread.size, spread.padded // spread.size, spread.padded) == (used, per, per * used)
    assert spread.padded - n < per  # fewer copies than models on a device: no device holds copies alone


def test_layout_of_a_group_spreads_its_models_only_when_sharded():
    assert isinstance(layout("sharded", 3), Models) and layout("sharded", 3).size == 3
    assert layout("none", 3) is ONE_DEVICE and layout("auto", 3) is ONE_DEVICE  # auto: no virtual CPU devices
    assert layout("sharded").name == "sharded" and not isinstance(layout("sharded"), Models)  # one run: the batch split


@pytest.fixture(scope="module")
def models_program():
    """Five digits models trained for an epoch and a half as a group spread over 3 devices (2 each, one
    copy of the last) and on one device, through the loop's memory runner."""
    if jax.device_count() < 3:
        pytest.skip("needs 3 devices")
    cfg = compose_config("logger.mode=disabled", "encoder.hidden=[16]", "decoder.hidden=[16]", "trainer.batch_size=96")
    data = load_dataset(cfg.dataset)
    tx, _ = build_optimizer(cfg.optimizer, 100)
    n = 5
    keys = jax.vmap(lambda s: split_seed(s, 4))(jnp.arange(n))
    graphdef, state = create_train_state(lambda k: build_model(cfg, data.example_shape, "sigmoid", k), tx,
                                         keys[0], keys[2])
    step = make_train_step(graphdef, build_objective(cfg.variant), tx)
    trainer = compose_config("trainer.batch_size=96").trainer
    out = {}
    for name, where in (("one", ONE_DEVICE), ("spread", Models(n, jax.devices()[:3]))):
        placed, order = where.place(jax.tree.map(jnp.copy, state)), where.place(keys[1])  # the runner donates it
        epoch = where.compile(over_models(epoch_fn(where.step(step), 96, False)), (0, None, 0, None, None))
        program = epoch.lower(where.spread_shapes(placed), where.hold(data.x_train), order, None, None).compile().as_text()
        run = memory_runner(where.hold(data.x_train), where.step(step), trainer, placed, order, where, batched=True)
        placed, m1 = run(placed, jax.vmap(epoch_key, in_axes=(0, None))(order, 1), 0, 15)
        placed, m2 = run(placed, jax.vmap(epoch_key, in_axes=(0, None))(order, 2), 0, 7)  # a segment: the loop
        out[name] = (where, placed, (m1, m2), program)
    return n, out


def test_a_spread_group_is_split_over_the_devices_inside_its_program(models_program):
    n, out = models_program
    where, state, _, program = out["spread"]
    for leaf in jax.tree.leaves(state):  # after training segments: still split, two models on each device
        assert leaf.sharding.spec == P(MODELS) and len(leaf.sharding.device_set) == 3
        assert [s.data.shape[0] for s in leaf.addressable_shards] == [2, 2, 2]
    # the compiled epoch holds two models per device and never talks across devices
    assert "_spmd" in program and "f32[2,64,16]" in program
    for collective in ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter"):
        assert collective not in program
    assert "all-reduce" not in out["one"][3]


def test_a_spread_group_trains_as_on_one_device_and_its_copy_as_its_last_model(models_program):
    n, out = models_program
    _, one, one_metrics, _ = out["one"]
    _, spread, spread_metrics, _ = out["spread"]
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(spread.params), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert b.shape[0] == n + 1
        np.testing.assert_allclose(b[:n], a, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(b[n], b[n - 1])  # the padding: a copy of the last model, trained alike
    for m1, m2 in zip(one_metrics, spread_metrics):
        np.testing.assert_allclose(np.asarray(m2["loss"])[:n], np.asarray(m1["loss"]), rtol=1e-5)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded_grid")
    basic = run_cli("-m", *GRID, *SMALL, f"hydra.sweep.dir={root / 'basic'}", cwd=root)
    eight = run_cli("-m", BATCHED, *GRID, *SMALL, f"hydra.sweep.dir={root / 'eight'}", cwd=root)
    three = _cli("-m", BATCHED, *GRID, *SMALL, f"hydra.sweep.dir={root / 'three'}", cwd=root, devices=3)
    return root, basic, eight, three


@pytest.mark.parametrize("which, devices, per, copies", [("eight", 8, 1, 0), ("three", 3, 3, 1)])
def test_every_job_of_a_sharded_batched_grid_equals_its_basic_launcher_run(grid, which, devices, per, copies):
    root, basic, *runs = grid
    batched = dict(zip(("eight", "three"), runs))[which]
    assert basic.returncode == 0 and batched.returncode == 0, basic.stderr + batched.stderr
    assert "jobs #0, #1, #2, #3, #4, #5, #6, #7 train as one program of 8 models" in batched.stderr
    said = f"the group's 8 models are spread over {devices} devices, {per} on each"
    said += f" (padded with {copies} copy/copies of the last model, discarded)" if copies else ""
    assert said in (root / which / "0" / "aejax.log").read_text()
    for job in map(str, range(8)):
        ours, theirs = root / which / job, root / "basic" / job
        s, t = summary(ours), summary(theirs)
        assert s["status"] == t["status"] == "finished" and s["batched_group"] == 8
        assert (s["devices"], s["models_per_device"], t["devices"]) == (devices, per, 8)  # the basic run splits its batch
        for key in ("val/loss", "train/loss", "val/loss_best", "test/mse", "test/pca_mse"):
            np.testing.assert_allclose(s[key], t[key], rtol=1e-5, atol=1e-6, err_msg=f"job {job}: {key}")
        a, b = rows(ours), rows(theirs)
        assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 15, 30]
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            np.testing.assert_allclose([x[k] for k in sorted(x)], [y[k] for k in sorted(y)], rtol=1e-5, atol=1e-6)
        # its checkpoint holds its own (unpadded) state, read back as the basic run's is
        for x, y in zip(final_params(ours), final_params(theirs), strict=True):
            assert x.shape == y.shape
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5, err_msg=f"job {job}: final state")
        with np.load(ours / "snapshots" / "step_0000030.npz") as x, np.load(theirs / "snapshots" / "step_0000030.npz") as y:
            np.testing.assert_allclose(x["z"], y["z"], rtol=1e-5, atol=1e-5, err_msg=f"job {job}: codes")


def test_pmap_jobs_run_alone_and_say_why(tmp_path):
    result = run_cli("-m", BATCHED, "optimizer.lr=1e-3,5e-3", "trainer.parallel=pmap", "trainer.epochs=1",
                     "encoder.hidden=[16]", "decoder.hidden=[16]", "snapshot.every=0", "eval.enabled=false",
                     "logger.mode=disabled", "trainer.progress=off", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "job 0 runs alone: trainer.parallel=pmap" in result.stdout + result.stderr
    assert "train as one program" not in result.stderr
    assert summary(tmp_path / "sweep" / "1")["devices"] == 8 and "batched_group" not in summary(tmp_path / "sweep" / "1")


def test_a_preempted_sharded_group_resumes_as_if_never_stopped(tmp_path):
    """Three models over 2 devices (2 on each, one copy): preempted, resumed with the printed command, equal
    to the same group never stopped."""
    sweep, args = tmp_path / "sweep", ("model.latent_dim=2,3,4", "trainer.parallel=sharded", *RUN)
    command = preempt_sweep([BATCHED, *args], sweep, "2", tmp_path, env=_env(2))
    stopped = summary(sweep / "0")["preempted_at_step"]
    assert stopped < 480
    out = _cli(*command[1:], cwd=tmp_path, devices=2)
    assert out.returncode == 0, out.stderr
    assert "train as one program of 3 models" in out.stderr and "3 jobs finished" in out.stderr
    whole = _cli("-m", BATCHED, *args, f"hydra.sweep.dir={tmp_path / 'whole'}", cwd=tmp_path, devices=2)
    assert whole.returncode == 0, whole.stderr
    for j in map(str, range(3)):
        s, t = summary(sweep / j), summary(tmp_path / "whole" / j)
        assert s["resumed_from_step"] == stopped and s["steps"] == t["steps"] == 480
        assert (s["devices"], s["models_per_device"]) == (t["devices"], t["models_per_device"]) == (2, 2)
        assert s["val/loss"] == t["val/loss"], f"job {j}"
        assert rows(sweep / j) == rows(tmp_path / "whole" / j)
        for x, y in zip(final_params(sweep / j), final_params(tmp_path / "whole" / j), strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"job {j}: final state")


def test_a_seed_batch_spread_over_the_devices_equals_it_on_one_and_resumes(tmp_path):
    """``trainer.num_seeds=3 trainer.parallel=sharded`` on 2 devices (2 models on each, one copy of
    the last): every seed's rows, summary, snapshots and final state are the one-device batch's; a
    preempted one resumes to the rows and state, bit for bit, of the same batch never stopped."""
    import signal

    from interrupted import wait_for_checkpoint

    args = ("trainer.num_seeds=3", "trainer.epochs=40", "trainer.checkpoint_every=12", "trainer.checkpoint_keep=3",
            "eval.enabled=false", "snapshot.every=10", "snapshot.images=false", "trainer.progress=off",
            "logger.mode=disabled", "encoder.hidden=[16]", "decoder.hidden=[16]")
    for name, parallel in (("one", "none"), ("whole", "sharded")):
        out = _cli(*args, f"trainer.parallel={parallel}", f"hydra.run.dir={tmp_path / name}", cwd=tmp_path, devices=2)
        assert out.returncode == 0, out.stderr
    assert "the seed batch's 3 models are spread over 2 devices, 2 on each" in out.stdout + out.stderr
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "aejax", *args, "trainer.parallel=sharded", f"hydra.run.dir={cut}"],
                            cwd=tmp_path, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(cut / "seed_2", proc, 24)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 75, proc.communicate()
    stopped = summary(cut / "seed_0")["preempted_at_step"]
    out = _cli(*args, "trainer.parallel=sharded", f"hydra.run.dir={cut}", "trainer.resume=true", cwd=tmp_path, devices=2)
    assert out.returncode == 0, out.stderr
    for seed in range(3):
        run, one, whole = (tmp_path / name / f"seed_{seed}" for name in ("cut", "one", "whole"))
        s, t = summary(whole), summary(one)
        assert (s["devices"], s["models_per_device"], s["seed_batch"]) == (2, 2, 3) and t["devices"] == 1
        assert s["val/loss"] == pytest.approx(t["val/loss"], rel=1e-5) and s["steps"] == t["steps"] == 480
        for x, y in zip(rows(whole), rows(one), strict=True):
            assert x.keys() == y.keys() and x["step"] == y["step"]
            np.testing.assert_allclose([x[k] for k in sorted(x)], [y[k] for k in sorted(y)], rtol=1e-5, err_msg=str(seed))
        for x, y in zip(final_params(whole), final_params(one), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"seed {seed}: final state")
        snaps = sorted(p.name for p in (one / "snapshots").glob("step_*.npz"))
        assert len(snaps) == 5 and sorted(p.name for p in (whole / "snapshots").glob("step_*.npz")) == snaps
        for name in snaps:
            with np.load(whole / "snapshots" / name) as a, np.load(one / "snapshots" / name) as b:
                np.testing.assert_allclose(a["z"], b["z"], rtol=1e-5, atol=1e-6, err_msg=f"seed {seed}: {name}")
        # preempted and resumed: the batch never stopped, exactly
        assert summary(run)["resumed_from_step"] == stopped < 480
        assert rows(run) == rows(whole)
        for x, y in zip(final_params(run), final_params(whole), strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"seed {seed}: resumed state")
