"""Sparse autoencoders against independent computations: TopK, BatchTopK, JumpReLU's
straight-through gradients, unit-norm decoder rows after every step, AuxK on dead latents only,
MMCS, the superposition data, and model state through training, checkpoints and refusals."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from omegaconf import OmegaConf

import aejax
from aejax.analysis.codes import max_cosines, mmcs
from aejax.errors import ConfigError
from aejax.models.sae import SparseAutoencoder, batch_topk_code, jump_relu, step_fn, topk_code
from aejax.training.checkpoint import Checkpoints
from aejax.training.constraints import constrained
from aejax.training.state import create_train_state
from aejax.training.step import make_train_step
from aejax.variants import Objective
from aejax.variants.codes import auxk

TINY = ["dataset=superposition", "dataset.num_features=32", "dataset.dim=16", "dataset.num_examples=1000",
        "dataset.p_active=0.06", "model.latent_dim=64", "trainer.epochs=2", "trainer.batch_size=100",
        "logger.mode=disabled", "snapshot.every=0", "trainer.progress=off"]


def test_topk_keeps_exactly_the_k_largest_of_each_example():
    pre = np.abs(np.random.default_rng(0).normal(size=(6, 20))).astype(np.float32) + 0.1
    z = np.asarray(topk_code(jnp.asarray(pre), 4))
    assert ((z != 0).sum(axis=1) == 4).all()
    for row, zrow in zip(pre, z):
        top = np.argsort(-row)[:4]
        assert set(np.flatnonzero(zrow)) == set(top)
        np.testing.assert_array_equal(zrow[top], row[top])


def test_batchtopk_keeps_k_per_example_on_average_over_the_real_rows():
    rng = np.random.default_rng(1)
    pre = rng.normal(size=(16, 32)).astype(np.float32) + 1.0
    w = np.r_[np.ones(12), np.zeros(4)].astype(np.float32)  # 4 rows of padding
    z, threshold = batch_topk_code(jnp.asarray(pre), 3, jnp.asarray(w))
    z = np.asarray(z)
    assert (z[12:] == 0).all() and (z[:12] != 0).sum() == 3 * 12  # mean L0 over the real rows = k
    kept = np.sort(np.maximum(pre[:12], 0).ravel())[::-1][: 3 * 12]  # the batch's largest, by numpy
    np.testing.assert_array_equal(np.sort(z[z != 0])[::-1], kept)
    assert float(threshold) == kept[-1]


def test_jumprelu_threshold_gradients_by_the_straight_through_rule():
    # bandwidth 0.02: values within 0.01 of their threshold fall in the rectangle kernel
    pre = jnp.array([[0.995, 1.005], [0.5, 2.0]])
    theta = jnp.array([1.0, 2.0])
    eps = 0.02
    # d/dtheta_j sum pre*H(pre-theta) = sum_i -(theta_j/eps) K((pre_ij - theta_j)/eps)
    # column 0: 0.995 is inside (u=-0.25), 0.5 outside -> -1/0.02 = -50; column 1: 2.0 inside (u=0) -> -2/0.02
    g_theta = jax.grad(lambda t: jnp.sum(jump_relu(pre, t, eps)))(theta)
    np.testing.assert_allclose(g_theta, [-50.0, -100.0], rtol=1e-6)
    g_pre = jax.grad(lambda p: jnp.sum(jump_relu(p, theta, eps)))(pre)
    np.testing.assert_array_equal(g_pre, [[0.0, 0.0], [0.0, 0.0]])  # no value above its threshold
    g_pre = jax.grad(lambda p: jnp.sum(jump_relu(p, jnp.array([0.9, 2.0]), eps)))(pre)
    np.testing.assert_array_equal(g_pre, [[1.0, 0.0], [0.0, 0.0]])
    # the L0 step: d/dtheta = sum_i -(1/eps) K(...), no gradient to the pre-activations
    g_theta = jax.grad(lambda t: jnp.sum(step_fn(pre, t, eps)))(theta)
    np.testing.assert_allclose(g_theta, [-50.0, -50.0], rtol=1e-6)
    assert not np.any(jax.grad(lambda p: jnp.sum(step_fn(p, theta, eps)))(pre))


def _sae(code="topk", latent=24, dim=8, **kw):
    return lambda key: SparseAutoencoder((dim,), latent, code, k=3, rngs=nnx.Rngs(params=key), **kw)


@pytest.mark.parametrize("code", ["topk", "batchtopk", "jumprelu"])
def test_decoder_rows_are_unit_norm_after_every_step(code):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(32, 8)), jnp.float32)
    w = jnp.ones(32)
    norms = {}
    for name, wrap in (("constrained", True), ("plain", False)):
        make = _sae(code, threshold=0.1)
        tx = optax.adam(0.05)
        if wrap:
            tx = constrained(tx, nnx.eval_shape(lambda: make(jax.random.key(0))))
        graphdef, state = create_train_state(make, tx, jax.random.key(0), jax.random.key(1))
        step = jax.jit(make_train_step(graphdef, Objective(), tx))
        norms[name] = []
        for _ in range(5):
            state, _ = step(state, x, w)
            norms[name].append(np.linalg.norm(np.asarray(state.params["decoder_kernel"][...]), axis=1))
    for n in norms["constrained"]:
        np.testing.assert_allclose(n, 1.0, atol=1e-5)
    assert max(np.abs(n - 1).max() for n in norms["plain"]) > 1e-2  # without the constraint they drift


def test_auxk_touches_only_dead_latents_and_matches_numpy():
    model = _sae(dead_window=100)(jax.random.key(3))
    dead = np.zeros(24, bool)
    dead[[2, 5, 11, 17]] = True
    model.since_fired[...] = jnp.where(jnp.asarray(dead), 500.0, 0.0)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(5, 8)), jnp.float32)
    cfg = OmegaConf.create({"weight": 1.0, "k": 2})
    graphdef, params, extra = nnx.split(model, nnx.Param, ...)

    def value(params):
        m = nnx.merge(graphdef, params, extra, copy=True)
        h = m.features(x)
        f = aejax.variants.terms.Forward(m, x, x, jnp.ones(5), h, m.code_params(h)[0], None)
        return auxk(f, cfg, jax.random.key(0), True)

    got = np.asarray(value(params))
    # numpy: the 2 largest pre-activations among the dead latents reconstruct the residual
    p = {k: np.asarray(v[...], np.float64) for k, v in params.items()}
    xn = np.asarray(x, np.float64)
    pre = (xn - p["pre_bias"]) @ p["encoder_kernel"] + p["encoder_bias"]
    z = np.zeros_like(pre)
    for i, row in enumerate(pre):
        top = np.argsort(-np.where(dead, row, -np.inf))[:2]
        z[i, top] = np.maximum(row[top], 0)
    keep = np.zeros_like(pre)
    for i, row in enumerate(pre):
        top = np.argsort(-row)[:3]
        keep[i, top] = np.maximum(row[top], 0)
    residual = xn - (keep @ p["decoder_kernel"] + p["pre_bias"])
    want = np.mean((z @ p["decoder_kernel"] - residual) ** 2, axis=1) / np.mean(residual**2, axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4)

    grads = jax.grad(lambda q: jnp.sum(value(q)))(params)
    enc = np.abs(np.asarray(grads["encoder_kernel"][...])).sum(axis=0)
    dec = np.abs(np.asarray(grads["decoder_kernel"][...])).sum(axis=1)
    assert not enc[~dead].any() and not dec[~dead].any() and not np.asarray(grads["encoder_bias"][...])[~dead].any()
    assert enc[dead].any() and dec[dead].any()


def test_mmcs_against_a_numpy_loop():
    rng = np.random.default_rng(5)
    true, learned = rng.normal(size=(7, 5)), rng.normal(size=(11, 5)) * 3
    want = [max(t @ d / np.linalg.norm(t) / np.linalg.norm(d) for d in learned) for t in true]
    np.testing.assert_allclose(max_cosines(true, learned), want, rtol=1e-12)
    assert mmcs(true, learned) == pytest.approx(np.mean(want), rel=1e-12)
    assert mmcs(true, np.r_[learned, 2 * true]) == pytest.approx(1.0)  # every true direction in the dictionary


def test_superposition_data_is_made_of_its_ground_truth_features():
    cfg = aejax.compose(TINY + ["dataset.noise=0"]).dataset
    from aejax.data import load_dataset
    from aejax.data.synthetic import superposition_arrays

    data = load_dataset(cfg)
    x, features = superposition_arrays(cfg)
    np.testing.assert_allclose(np.linalg.norm(data.ground_truth, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(data.ground_truth, features)
    assert data.num_train + len(data.x_test) == 1000 and data.y_test is None
    coef, *_ = np.linalg.lstsq(features.T.astype(np.float64), x.T.astype(np.float64), rcond=None)
    active = np.mean(np.abs(coef) > 1e-3)  # minimum-norm coefficients are not the sparse ones, so only
    assert 0 < active and np.allclose(coef.T @ features, x, atol=1e-4)  # check x lies in their span


def test_a_topk_run_reports_its_dictionary_metrics_and_keeps_its_state(tmp_path):
    run = aejax.train(["variant=topk_sae", "variant.k=4", *TINY, "variant.dead_window=300"], run_dir=tmp_path / "r")
    s = run.summary
    assert 0 < s["test/l0"] <= 4 and 0 < s["test/fvu"] < 1 and 0 <= s["test/dead_fraction"] < 1
    z = np.asarray(run.model.encode(np.zeros((2, 16), np.float32)))
    assert ((z != 0).sum(axis=1) <= 4).all()
    from aejax.data import load_dataset

    data = load_dataset(aejax.compose(TINY).dataset)
    assert s["test/mmcs"] == pytest.approx(mmcs(data.ground_truth, np.asarray(run.model.directions())), rel=1e-6)
    since = np.asarray(run.model.since_fired[...])  # the dead-latent counters are trained model state
    assert since.max() > 0 and since.min() == 0


def test_model_state_survives_a_checkpoint_round_trip(tmp_path):
    make = _sae("batchtopk")
    tx = optax.adam(1e-2)
    graphdef, state = create_train_state(make, tx, jax.random.key(0), jax.random.key(1))
    step = jax.jit(make_train_step(graphdef, Objective(), tx))
    x = jnp.asarray(np.random.default_rng(6).normal(size=(32, 8)), jnp.float32)
    for _ in range(3):
        state, _ = step(state, x, jnp.ones(32))
    assert float(state.extra["threshold"][...]) > 0
    ckpt = Checkpoints(tmp_path, 2)
    ckpt.save(3, state, {"note": 1})
    _, restored, _ = ckpt.restore(jax.tree.map(jnp.zeros_like, state), 3)
    ckpt.close()
    for a, b in zip(jax.tree.leaves(state.extra), jax.tree.leaves(restored.extra), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_seed_batch_of_saes_equals_its_separate_runs(tmp_path):
    args = ["variant=batchtopk_sae", "variant.k=4", *TINY, "eval.enabled=false"]
    batch = aejax.train([*args, "trainer.num_seeds=2"], run_dir=tmp_path / "b")
    alone = aejax.train([*args, "seed=1"], run_dir=tmp_path / "s")
    one = batch.seeds[1].model
    assert float(one.threshold[...]) > 0  # the model state of each model of the batch trained
    for got, want in ((one.threshold, alone.model.threshold), (one.since_fired, alone.model.since_fired),
                      (one.decoder_kernel, alone.model.decoder_kernel)):
        np.testing.assert_allclose(np.asarray(got[...]), np.asarray(want[...]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("override, key", [
    (["variant.k=0"], "variant.k"),
    (["variant.k=65"], "variant.k"),
    (["trainer.parallel=pmap", "trainer.batch_size=96"], "trainer.parallel"),
    (["+variant.terms.commitment.weight=1"], "variant.terms.commitment"),
    (["variant.head=gaussian"], "variant.head"),
])
def test_settings_a_sparse_autoencoder_cannot_take_are_refused(override, key, tmp_path):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        aejax.train(["variant=topk_sae", *TINY, *override], run_dir=tmp_path / "r")


def test_a_sharded_sae_run_updates_its_state_as_one_device(tmp_path):
    if len(jax.devices()) < 4:
        pytest.skip("needs the virtual CPU devices of conftest.py")
    args = ["variant=batchtopk_sae", "variant.k=4", *TINY, "eval.enabled=false", "trainer.batch_size=96"]
    one = aejax.train([*args, "trainer.parallel=none"], run_dir=tmp_path / "one")
    many = aejax.train([*args, "trainer.parallel=sharded"], run_dir=tmp_path / "many")
    assert many.summary["devices"] > 1
    assert many.summary["val/loss"] == pytest.approx(one.summary["val/loss"], rel=1e-5)
    for name in ("threshold", "since_fired", "decoder_kernel"):
        np.testing.assert_allclose(np.asarray(getattr(many.model, name)[...]), np.asarray(getattr(one.model, name)[...]),
                                   rtol=1e-5, atol=1e-6)


def test_an_npz_of_ones_own_activations_with_features_is_scored_against_them(tmp_path):
    from aejax.data.synthetic import superposition_arrays
    from aejax.errors import DataError

    x, features = superposition_arrays(aejax.compose(TINY).dataset)
    np.savez(tmp_path / "acts.npz", x_train=x[:800], x_test=x[800:], features=features)
    rest = [a for a in TINY if not a.startswith("dataset")]
    args = ["variant=topk_sae", "variant.k=4", *rest, "dataset=array", f"dataset.path={tmp_path / 'acts.npz'}"]
    run = aejax.train(args, run_dir=tmp_path / "r")
    assert run.summary["test/mmcs"] == pytest.approx(mmcs(features, np.asarray(run.model.directions())), rel=1e-6)
    np.savez(tmp_path / "bad.npz", x_train=x[:800], x_test=x[800:], features=features[:, :5])
    with pytest.raises(DataError, match="features"):
        aejax.train([*args[:-1], f"dataset.path={tmp_path / 'bad.npz'}"], run_dir=tmp_path / "bad")


def test_a_checkpoint_written_before_model_state_existed_still_restores(tmp_path):
    from flax import struct

    from aejax.training.state import TrainState

    @struct.dataclass
    class Before:  # TrainState as earlier aejax wrote it, without `extra`
        step: jax.Array
        params: dict
        opt_state: tuple
        rng: jax.Array

    ckpt = Checkpoints(tmp_path, 2)
    ckpt.save(3, Before(jnp.int32(3), {"w": jnp.arange(3.0)}, (), jax.random.key(0)), {"note": 1})
    ckpt.close()
    like = TrainState(jnp.int32(0), {"w": jnp.zeros(3)}, (), jax.random.key(1))
    ckpt = Checkpoints(tmp_path, 2)
    step, state, host = ckpt.restore(like, 3)
    ckpt.close()
    assert step == 3 and host == {"note": 1} and not jax.tree.leaves(state.extra)
    np.testing.assert_array_equal(state.params["w"], [0.0, 1.0, 2.0])
