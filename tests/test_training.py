"""The training core: batching, the masked step, evaluation, optimizers, learning, determinism."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from conftest import compose_config
from sklearn.decomposition import PCA

from aejax.assemble import build_model, build_objective, build_optimizer
from aejax.data import load_dataset
from aejax.experiment import run
from aejax.training.epoch import epoch_batches, make_eval_fn, pad_to_chunks, steps_per_epoch
from aejax.training.state import create_train_state
from aejax.training.step import make_train_step


def _setup(*overrides):
    cfg = compose_config(*overrides, "logger.mode=disabled")
    data = load_dataset(cfg.dataset)
    tx, _ = build_optimizer(cfg.optimizer, 100)
    graphdef, state = create_train_state(lambda k: build_model(cfg, data.example_shape, "sigmoid", k),
                                         tx, jax.random.key(0), jax.random.key(1))
    return cfg, data, tx, graphdef, state


@pytest.mark.parametrize("n,batch,drop_last", [(1437, 128, False), (1437, 128, True), (256, 128, False), (5, 2, False)])
def test_an_epoch_visits_every_example_once(n, batch, drop_last):
    idx, w = map(np.asarray, epoch_batches(jax.random.key(3), n, batch, drop_last))
    steps = steps_per_epoch(n, batch, drop_last)
    assert idx.shape == w.shape == (steps, batch)
    real = idx[w == 1]
    assert len(real) == (n // batch * batch if drop_last else n)
    assert len(set(real.tolist())) == len(real)  # no example twice with weight 1
    assert w.sum() == len(real) and set(np.unique(w)) <= {0.0, 1.0}


def test_padded_batch_step_equals_the_step_on_the_real_examples_alone():
    # plain SGD with lr 1: the parameter change is exactly the gradient
    cfg, data, tx, graphdef, state = _setup("optimizer=sgd", "optimizer.momentum=0", "optimizer.lr=1")
    step = jax.jit(make_train_step(graphdef, build_objective(cfg.variant), tx))
    x = jnp.asarray(data.x_train[:128])
    w = jnp.asarray((np.arange(128) < 29).astype(np.float32))
    padded, m_padded = step(state, x, w)
    alone, m_alone = step(state, x[:29], jnp.ones(29))
    np.testing.assert_allclose(m_padded["loss"], m_alone["loss"], rtol=1e-6)
    assert float(m_padded["count"]) == 29.0
    before = jax.tree_util.tree_leaves(state.params)
    for p0, a, b in zip(before, jax.tree_util.tree_leaves(padded.params), jax.tree_util.tree_leaves(alone.params)):
        np.testing.assert_allclose(a - p0, b - p0, rtol=1e-4, atol=1e-7)  # a few ulps of p0


def test_evaluation_over_padded_chunks_is_the_mean_over_the_split():
    cfg, data, tx, graphdef, state = _setup()
    objective = build_objective(cfg.variant)
    chunks, weights = pad_to_chunks(data.x_test, 128)  # 360 = 2 * 128 + 104
    assert chunks.shape[:2] == (3, 128) and weights.sum() == 360
    got = make_eval_fn(graphdef, objective)(state.params, chunks, weights, jax.random.key(0))
    recon = nnx.merge(graphdef, state.params)(jnp.asarray(data.x_test))
    np.testing.assert_allclose(got["loss"], np.mean((np.asarray(recon) - data.x_test) ** 2), rtol=1e-5)


def test_sgd_update_is_minus_lr_times_gradient_and_schedules_follow_their_formulas():
    cfg = compose_config("optimizer=sgd", "optimizer.momentum=0", "optimizer.lr=0.5", "logger.mode=disabled")
    tx, _ = build_optimizer(cfg.optimizer, 10)
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.2, 0.4])}
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(optax.apply_updates(params, updates)["w"], [0.9, -2.2], rtol=1e-6)

    cos = compose_config("optimizer.schedule=cosine", "optimizer.warmup_steps=10", "optimizer.lr=1e-2",
                         "logger.mode=disabled").optimizer
    _, schedule = build_optimizer(cos, 110)
    assert float(schedule(5)) == pytest.approx(0.5e-2)  # halfway through the linear warm-up
    assert float(schedule(10 + 25)) == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 25 / 100)), rel=1e-5)
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-9)


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(tmp_path):
    args = ("trainer.epochs=3", "logger.mode=disabled", "trainer.progress=off")
    runs = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        runs[name] = run(compose_config(*args, f"seed={seed}"), tmp_path / name)
    assert runs["a"] == runs["b"]
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    assert runs["c"] != runs["a"]
    assert [r["val/loss"] for r in _metrics(tmp_path / "c")] != [r["val/loss"] for r in _metrics(tmp_path / "a")]


def _pca_test_mse(data, k):
    pca = PCA(k).fit(data.x_train.reshape(len(data.x_train), -1))
    x = data.x_test.reshape(len(data.x_test), -1)
    return float(np.mean((pca.inverse_transform(pca.transform(x)) - x) ** 2))


def test_a_linear_autoencoder_on_line2d_reaches_the_pca_error(tmp_path):
    cfg = compose_config("dataset=line2d", "encoder=linear", "decoder=linear", "model.latent_dim=1",
                         "optimizer.lr=1e-2", "trainer.epochs=60", "trainer.batch_size=64",
                         "logger.mode=disabled", "trainer.progress=off")
    val = run(cfg, tmp_path)
    pca = _pca_test_mse(load_dataset(cfg.dataset), 1)
    assert pca == pytest.approx(0.1 ** 2 / 2, rel=0.15)  # the noise off the line, per coordinate
    assert val == pytest.approx(pca, rel=0.03)


def test_an_mlp_flattens_layers3d_far_better_than_pca(tmp_path):
    cfg = compose_config("dataset=layers3d", "optimizer.lr=1e-2", "trainer.epochs=60", "trainer.batch_size=64",
                         "logger.mode=disabled", "trainer.progress=off")
    run(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["val/loss_best"] < 0.25 * _pca_test_mse(load_dataset(cfg.dataset), 2)


def test_log_every_rows_are_count_weighted_means_of_the_steps(tmp_path):
    args = ("trainer.epochs=2", "logger.mode=disabled", "trainer.progress=off", "trainer.eval_every=2")
    run(compose_config(*args, "trainer.log_every=1"), tmp_path / "each")
    run(compose_config(*args, "trainer.log_every=5"), tmp_path / "five")
    each = {r["step"]: r for r in _metrics(tmp_path / "each") if "train/loss" in r}
    five = _metrics(tmp_path / "five")
    assert [r["step"] for r in five] == [0, 5, 10, 15, 20, 24]  # 12 steps per epoch; eval at the end
    assert [r["epoch"] for r in five] == [0, 5 / 12, 10 / 12, 15 / 12, 20 / 12, 2]
    assert "val/loss" in five[-1]  # the last row also flushes the partial window of steps 21-24
    # steps 1-12 hold 128 examples each, except step 12 (1437 = 11 * 128 + 29)
    counts = {s: (29 if s % 12 == 0 else 128) for s in range(1, 25)}
    windows = {5: range(1, 6), 10: range(6, 11), 15: range(11, 16), 20: range(16, 21), 24: range(21, 25)}
    for row in five[1:]:
        window = windows[row["step"]]
        expected = sum(each[s]["train/loss"] * counts[s] for s in window) / sum(counts[s] for s in window)
        assert row["train/loss"] == pytest.approx(expected, rel=1e-6)
