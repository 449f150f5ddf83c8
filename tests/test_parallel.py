"""The train step is data-parallel as written: on 8 CPU devices it gives one device's numbers.

conftest.py sets XLA_FLAGS=--xla_force_host_platform_device_count=8 before JAX starts.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (DEVICE_COUNT_FLAG, USER_XLA_FLAGS, assert_close_1e5, checkpoint_arrays, compose_config,
                      with_device_count)
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aejax.assemble import build_model, build_objective, build_optimizer
from aejax.data import load_dataset
from aejax.training.state import create_train_state
from aejax.training.step import make_train_step

N = 8


@pytest.fixture(scope="module")
def setup():
    if jax.device_count() < N:
        pytest.skip(f"needs {N} devices; run with XLA_FLAGS=--xla_force_host_platform_device_count={N}")
    cfg = compose_config("logger.mode=disabled")
    data = load_dataset(cfg.dataset)
    tx, _ = build_optimizer(cfg.optimizer, 100)
    graphdef, state = create_train_state(lambda k: build_model(cfg, data.example_shape, "sigmoid", k),
                                         tx, jax.random.key(0), jax.random.key(1))
    objective = build_objective(cfg.variant)
    # three batches of 128; the last has only 100 real examples, so some devices hold padding only
    x = jnp.asarray(data.x_train[: 3 * 128].reshape(3, 128, 8, 8, 1))
    w = jnp.ones((3, 128)).at[2, 100:].set(0.0)
    return graphdef, objective, tx, state, x, w


def _single_device(setup):
    graphdef, objective, tx, state, x, w = setup
    step = jax.jit(make_train_step(graphdef, objective, tx))
    losses = []
    for i in range(3):
        state, m = step(state, x[i], w[i])
        losses.append(float(m["loss"]))
    return state, losses


def _assert_same(state_a, losses_a, state_b, losses_b):
    np.testing.assert_allclose(losses_a, losses_b, rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(state_a.params), jax.tree_util.tree_leaves(state_b.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_pmap_step_matches_one_device(setup):
    graphdef, objective, tx, state, x, w = setup
    ref_state, ref_losses = _single_device(setup)

    step = jax.pmap(make_train_step(graphdef, objective, tx, axis_name="data"), axis_name="data")
    replicated = jax.tree_util.tree_map(lambda a: jnp.stack([a] * N), state)
    losses = []
    for i in range(3):
        replicated, m = step(replicated, x[i].reshape(N, 16, 8, 8, 1), w[i].reshape(N, 16))
        assert np.all(np.asarray(m["loss"]) == np.asarray(m["loss"])[0])  # every device agrees
        assert float(m["count"][0]) == float(w[i].sum())
        losses.append(float(m["loss"][0]))
    params = jax.tree_util.tree_leaves(replicated.params)
    assert all(np.array_equal(np.asarray(p)[0], np.asarray(p)[-1]) for p in params)  # still replicated
    _assert_same(jax.tree_util.tree_map(lambda a: a[0], replicated), losses, ref_state, ref_losses)


def test_jit_with_a_sharded_batch_matches_one_device(setup):
    graphdef, objective, tx, state, x, w = setup
    ref_state, ref_losses = _single_device(setup)

    mesh = Mesh(np.array(jax.devices()[:N]), ("data",))
    step = jax.jit(make_train_step(graphdef, objective, tx))
    state = jax.device_put(state, NamedSharding(mesh, P()))
    losses = []
    for i in range(3):
        xb = jax.device_put(x[i], NamedSharding(mesh, P("data")))
        wb = jax.device_put(w[i], NamedSharding(mesh, P("data")))
        assert len(xb.addressable_shards) == N
        state, m = step(state, xb, wb)
        losses.append(float(m["loss"]))
    _assert_same(state, losses, ref_state, ref_losses)


RUN = ("logger.mode=disabled", "trainer.epochs=3", "trainer.checkpoint_every=20", "trainer.log_every=1",
       "snapshot.every=1", "snapshot.probe_size=64", "trainer.progress=off")


def _run(tmp_path, name, *overrides):
    from aejax.experiment import run

    run_dir = tmp_path / name
    run(compose_config(*RUN, *overrides), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The reference: one device, 3 epochs of 12 steps (the 12th has 29 of 128 real examples)."""
    return _run(tmp_path_factory.mktemp("parallel"), "one", "trainer.parallel=none")


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def _step_losses(run_dir):
    return [row["train/loss"] for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "train/loss" in row]


def _assert_matches_one_device(run_dir, one, devices):
    s1, sn = _summary(one), _summary(run_dir)
    assert (s1["devices"], sn["devices"]) == (1, devices)
    for key in ("val/loss", "train/loss", "test/mse", "test/pca_mse"):
        np.testing.assert_allclose(sn[key], s1[key], rtol=1e-5)
    losses = _step_losses(run_dir)
    assert len(losses) == 36  # log_every=1: every step's loss, masked partial batches included
    np.testing.assert_allclose(losses, _step_losses(one), rtol=1e-5)
    # checkpoints inside an epoch (every 20 steps of 12-step epochs) and at the end: the same parameters
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["20", "36"]
    for a, b in zip(checkpoint_arrays(one, 36), checkpoint_arrays(run_dir, 36), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    for name in ("step_0000012.npz", "step_0000036.npz"):
        with np.load(one / "snapshots" / name) as a, np.load(run_dir / "snapshots" / name) as b:
            assert_close_1e5(b["z"], a["z"])
            assert_close_1e5(b["grad"], a["grad"])


def test_sharded_training_evaluation_snapshots_and_checkpoints_match_one_device(tmp_path, one_device):
    if jax.device_count() < N:
        pytest.skip(f"needs {N} devices")
    _assert_matches_one_device(_run(tmp_path, "many", "trainer.parallel=sharded"), one_device, N)


@pytest.mark.parametrize("feed", ["memory", "stream"])
def test_pmap_training_evaluation_snapshots_and_checkpoints_match_one_device(tmp_path, one_device, feed):
    if jax.device_count() < N:
        pytest.skip(f"needs {N} devices")
    run_dir = _run(tmp_path, "pmap", "trainer.parallel=pmap", f"trainer.feed={feed}")
    assert _summary(run_dir)["feed"] == feed
    _assert_matches_one_device(run_dir, one_device, N)


def test_a_pmap_run_resumes_from_its_checkpoint_to_the_same_numbers(tmp_path):
    """The checkpoint of step 20 (inside epoch 2) of a pmap run, resumed under pmap: the same
    parameters and rows as the uninterrupted run, to the bit."""
    if jax.device_count() < N:
        pytest.skip(f"needs {N} devices")
    import shutil

    from aejax.experiment import run

    whole = _run(tmp_path, "whole", "trainer.parallel=pmap", "snapshot.every=0", "eval.enabled=false")
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "checkpoints" / "36")  # as if stopped after the checkpoint of step 20
    run(compose_config(*RUN, "trainer.parallel=pmap", "snapshot.every=0", "eval.enabled=false",
                       f"trainer.resume={cut}"), tmp_path / "elsewhere")
    assert _summary(cut)["resumed_from_step"] == 20
    for a, b in zip(checkpoint_arrays(whole, 36), checkpoint_arrays(cut, 36), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _step_losses(cut) == _step_losses(whole)


@pytest.mark.parametrize("parallel", ["sharded", "pmap"])
def test_a_batch_that_does_not_split_over_the_devices_is_refused(tmp_path, parallel):
    if jax.device_count() < N:
        pytest.skip(f"needs {N} devices")
    from aejax.errors import ConfigError
    from aejax.experiment import run

    with pytest.raises(ConfigError, match=f"trainer.batch_size: 100 does not split evenly over the 8 devices of "
                                          f"trainer.parallel={parallel}: use a multiple of 8 .*trainer.batch_size=104"):
        run(compose_config("logger.mode=disabled", f"trainer.parallel={parallel}", "trainer.batch_size=100"), tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything was compiled or written


def test_auto_uses_virtual_cpu_devices_only_when_asked_for():
    if jax.device_count() < N:
        pytest.skip(f"needs {N} devices")
    from aejax.training.parallel import layout

    assert layout("auto").size == 1 and layout("none").size == 1
    assert (layout("sharded").name, layout("sharded").size) == ("sharded", N)
    assert (layout("pmap").name, layout("pmap").size) == ("pmap", N)


def test_the_device_count_flag_is_added_to_the_users_xla_flags():
    """conftest adds 8 host devices to an XLA_FLAGS that is already set, so the tests above run
    (a count the user set is kept); this session has them."""
    assert with_device_count("") == "--xla_force_host_platform_device_count=8"
    assert with_device_count("--xla_dump_to=/tmp/x") == "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=8"
    assert with_device_count("--xla_force_host_platform_device_count=2") == "--xla_force_host_platform_device_count=2"
    if DEVICE_COUNT_FLAG not in USER_XLA_FLAGS:  # nobody chose another count: the 8-device tests above ran
        assert jax.device_count() == N
