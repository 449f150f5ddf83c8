"""The VQ-VAE's bottleneck against numpy: nearest entries, the straight-through gradient, the EMA
codebook update and its restarts, the perplexity of known assignments, and a run's code metrics."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import aejax
from aejax.analysis.codes import perplexity
from aejax.models.mlp import MLPDecoder, MLPEncoder
from aejax.models.vq import EPS, VQAutoencoder

TINY = ["variant=vq_vae", "model.latent_dim=4", "variant.codebook_size=8", "encoder.hidden=[16]", "trainer.epochs=2",
        "logger.mode=disabled", "snapshot.every=0", "trainer.progress=off"]


def _model(restart_below=0.0, decay=0.9):
    rngs = nnx.Rngs(params=0)
    enc = MLPEncoder((6,), [5], jax.nn.relu, "none", rngs)
    dec = MLPDecoder(4, (6,), [5], jax.nn.relu, "none", rngs)
    return VQAutoencoder(enc, nnx.Linear(5, 4, rngs=rngs), dec, 4, "identity", codebook_size=5, code_dim=2,
                         decay=decay, restart_below=restart_below, rngs=rngs)


def _nearest(vectors, codebook):
    return np.array([np.argmin([np.sum((v - c) ** 2) for c in codebook]) for v in vectors])


def test_the_code_is_the_nearest_entries_with_a_straight_through_gradient():
    model = _model()
    h = jnp.asarray(np.random.default_rng(0).normal(size=(7, 5)), jnp.float32)
    z_e = np.asarray(model.pre_quantize(h), np.float64)
    book = np.asarray(model.codebook[...], np.float64)
    idx = _nearest(z_e.reshape(-1, 2), book)
    z = np.asarray(model.code_params(h)[0])
    np.testing.assert_allclose(z, book[idx].reshape(7, 4), atol=1e-6)
    # straight through: d/dh sum(c * z_q(h)) = d/dh sum(c * z_e(h))
    c = jnp.asarray(np.random.default_rng(1).normal(size=(7, 4)), jnp.float32)
    through = jax.grad(lambda h: jnp.sum(c * model.code_params(h)[0]))(h)
    plain = jax.grad(lambda h: jnp.sum(c * model.pre_quantize(h)))(h)
    np.testing.assert_allclose(through, plain, rtol=1e-6)
    assert np.abs(np.asarray(through)).sum() > 0


def test_the_ema_update_of_the_codebook_matches_numpy():
    model = _model(decay=0.9)
    h = jnp.asarray(np.random.default_rng(2).normal(size=(6, 5)), jnp.float32)
    w = jnp.array([1, 1, 1, 1, 0, 1], jnp.float32)  # row 4 is padding
    count0, sum0 = np.asarray(model.ema_count[...], np.float64), np.asarray(model.ema_sum[...], np.float64)
    vectors = np.asarray(model.pre_quantize(h), np.float64).reshape(-1, 2)
    idx = _nearest(vectors, np.asarray(model.codebook[...], np.float64))
    weights = np.repeat(np.asarray(w, np.float64), 2)
    n_k = np.array([weights[idx == k].sum() for k in range(5)])
    s_k = np.array([(weights[idx == k, None] * vectors[idx == k]).sum(axis=0) for k in range(5)])
    count = 0.9 * count0 + 0.1 * n_k
    total = 0.9 * sum0 + 0.1 * s_k
    smoothed = (count + EPS) / (count.sum() + 5 * EPS) * count.sum()
    model.train_code(h, w, jax.random.key(0))
    np.testing.assert_allclose(model.ema_count[...], count, rtol=1e-5)
    np.testing.assert_allclose(model.ema_sum[...], total, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.codebook[...], total / smoothed[:, None], rtol=1e-5, atol=1e-6)


def test_entries_used_too_little_restart_at_real_vectors_of_the_batch():
    model = _model(restart_below=1e9)  # every entry counts as dead
    h = jnp.asarray(np.random.default_rng(3).normal(size=(6, 5)), jnp.float32)
    w = jnp.array([1, 1, 0, 0, 0, 0], jnp.float32)
    real = np.asarray(model.pre_quantize(h)).reshape(6, 2, 2)[:2].reshape(-1, 2)
    model.train_code(h, w, jax.random.key(1))
    for entry in np.asarray(model.codebook[...]):
        assert np.min(np.abs(real - entry).sum(axis=1)) < 1e-6  # each entry is one of the real rows' vectors
    np.testing.assert_array_equal(model.ema_count[...], np.ones(5))


def test_perplexity_of_known_assignments():
    assert perplexity(np.array([0, 0, 1, 1]), 4) == pytest.approx(2.0)
    assert perplexity(np.arange(8), 8) == pytest.approx(8.0)
    assert perplexity(np.array([[3, 3], [5, 6]]), 8) == pytest.approx(2 ** 1.5)  # p = 1/2, 1/4, 1/4
    assert perplexity(np.zeros(10, int), 8) == pytest.approx(1.0)


def test_a_vq_run_reports_codebook_metrics_that_match_its_codes(tmp_path):
    run = aejax.train(TINY, run_dir=tmp_path / "r")
    from aejax.data import load_dataset

    data = load_dataset(aejax.compose(TINY).dataset)
    model = run.model
    idx = np.asarray(model.indices(model.pre_quantize(model.features(jnp.asarray(data.x_test)))))
    assert run.summary["test/codebook_perplexity"] == pytest.approx(perplexity(idx, 8), rel=1e-6)
    assert run.summary["test/codebook_usage"] == len(np.unique(idx)) / 8
    z = np.asarray(model.encode(jnp.asarray(data.x_test[:5])))  # codes are codebook entries
    book = np.asarray(model.codebook[...])
    assert all(np.min(np.abs(book - v).sum(axis=1)) < 1e-6 for v in z.reshape(-1, 2))


def test_a_code_dim_that_does_not_divide_the_code_is_refused(tmp_path):
    from aejax.errors import ConfigError

    with pytest.raises(ConfigError, match=r"variant\.code_dim"):
        aejax.train([*TINY, "variant.code_dim=3"], run_dir=tmp_path / "r")
