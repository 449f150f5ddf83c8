"""Reconstruction losses against numpy, per example and as batch means."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.variants.losses import bce, mse


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5, 8, 8, 1)).astype(np.float32)
    logits = rng.normal(scale=3.0, size=(5, 8, 8, 1)).astype(np.float32)
    return x, logits


def test_mse_is_the_mean_squared_error_per_example(batch):
    x, logits = batch
    expected = ((_sigmoid(logits.astype(np.float64)) - x) ** 2).reshape(5, -1).mean(axis=1)
    got = mse(jnp.asarray(x), jnp.asarray(logits), jax.nn.sigmoid)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # identity output: plain MSE on the logits, the batch mean as torch's MSELoss(reduction="mean")
    np.testing.assert_allclose(mse(jnp.asarray(x), jnp.asarray(logits), lambda v: v).mean(),
                               ((logits.astype(np.float64) - x) ** 2).mean(), rtol=1e-5)


def test_bce_matches_the_textbook_formula_and_is_stable_for_large_logits(batch):
    x, logits = batch
    p = _sigmoid(logits.astype(np.float64))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(5, -1).mean(axis=1)
    np.testing.assert_allclose(bce(jnp.asarray(x), jnp.asarray(logits), None), expected, rtol=1e-5)
    extreme = jnp.array([[200.0, -200.0]])
    np.testing.assert_allclose(bce(jnp.array([[0.0, 1.0]]), extreme, None), [200.0], rtol=1e-6)


def test_bce_of_a_half_prediction_is_ln2_per_pixel():
    x = jnp.asarray(np.random.default_rng(1).integers(0, 2, size=(3, 784)).astype(np.float32))
    np.testing.assert_allclose(bce(x, jnp.zeros_like(x), None), [math.log(2)] * 3, rtol=1e-6)
    assert math.log(2) == pytest.approx(0.693, abs=5e-4)
