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


def test_masked_losses_average_the_masked_values_only(batch):
    x, logits = batch
    rng = np.random.default_rng(2)
    mask = (rng.uniform(size=x.shape) < 0.3).astype(np.float32)
    mask[0] = 0.0  # an example with nothing masked counts as 0, not NaN
    p = _sigmoid(logits.astype(np.float64))
    per_value = {"mse": (p - x) ** 2, "bce": -(x * np.log(p) + (1 - x) * np.log(1 - p))}
    for name, fn in (("mse", mse), ("bce", bce)):
        expected = (per_value[name] * mask).reshape(5, -1).sum(1) / np.maximum(mask.reshape(5, -1).sum(1), 1)
        got = fn(jnp.asarray(x), jnp.asarray(logits), jax.nn.sigmoid, jnp.asarray(mask))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
        assert got[0] == 0.0
    # one mask for the whole batch broadcasts over the examples
    shared = mask[1:2]
    expected = (per_value["mse"] * shared).reshape(5, -1).sum(1) / shared.sum()
    np.testing.assert_allclose(mse(jnp.asarray(x), jnp.asarray(logits), jax.nn.sigmoid, jnp.asarray(shared)),
                               expected, rtol=1e-5)


def test_losses_of_a_reshaped_decoder_output_under_jit_match_numpy():
    """The training path: a dense decoder's ``[B, 784]`` output reshaped to images inside a compiled
    step, against images; the flat views must give the same per-example values as numpy."""
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(256, 28, 28, 1)).astype(np.float32)
    h = rng.normal(size=(256, 32)).astype(np.float32)
    w = rng.normal(scale=0.5, size=(32, 784)).astype(np.float32)

    @jax.jit
    def losses(x, h, w):
        logits = (h @ w).reshape(x.shape)
        return mse(x, logits, jax.nn.sigmoid), bce(x, logits, None)

    got_mse, got_bce = losses(x, h, w)
    logits = (h.astype(np.float64) @ w).reshape(x.shape)
    p = _sigmoid(logits)
    np.testing.assert_allclose(got_mse, ((p - x) ** 2).reshape(256, -1).mean(1), rtol=2e-5)
    np.testing.assert_allclose(got_bce, -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(256, -1).mean(1),
                               rtol=2e-5)
