"""Reconstruction losses, per example: the mean over all values of each example.

Averaging these over a batch gives the mean per value and example, as PyTorch's ``MSELoss``
and the mean BCE of the reference material, so losses compare across datasets.
BCE takes logits (``optax.sigmoid_binary_cross_entropy``) for numerical stability.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax


def _per_example_mean(values: jax.Array) -> jax.Array:
    return values.reshape(values.shape[0], -1).mean(axis=1)


def mse(x: jax.Array, logits: jax.Array, activate: Callable[[jax.Array], jax.Array]) -> jax.Array:
    return _per_example_mean(jnp.square(activate(logits) - x))


def bce(x: jax.Array, logits: jax.Array, activate: Callable[[jax.Array], jax.Array]) -> jax.Array:
    del activate  # always a sigmoid, folded into the logits form
    return _per_example_mean(optax.sigmoid_binary_cross_entropy(logits, x))


RECON_LOSSES: dict[str, Callable[..., jax.Array]] = {"mse": mse, "bce": bce}
