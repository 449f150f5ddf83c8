"""Reconstruction losses, per example: the mean over the values of each example.

Averaging these over a batch gives the mean per value and example, as PyTorch's ``MSELoss``
and the mean BCE of the reference material, so losses compare across datasets.
BCE takes logits (``optax.sigmoid_binary_cross_entropy``) for numerical stability.
An optional 0/1 ``mask`` of the same shape restricts the mean to the masked values
(masked-autoencoder style losses on hidden patches only).
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax


def _per_example_mean(values: jax.Array, mask: Optional[jax.Array]) -> jax.Array:
    values = values.reshape(values.shape[0], -1)
    if mask is None:
        return values.mean(axis=1)
    mask = jnp.broadcast_to(mask, values.shape[:1] + mask.shape[1:]).reshape(values.shape[0], -1)
    return jnp.sum(values * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def mse(x: jax.Array, logits: jax.Array, activate: Callable[[jax.Array], jax.Array],
        mask: Optional[jax.Array] = None) -> jax.Array:
    return _per_example_mean(jnp.square(activate(logits) - x), mask)


def bce(x: jax.Array, logits: jax.Array, activate: Callable[[jax.Array], jax.Array],
        mask: Optional[jax.Array] = None) -> jax.Array:
    del activate  # always a sigmoid, folded into the logits form
    return _per_example_mean(optax.sigmoid_binary_cross_entropy(logits, x), mask)


RECON_LOSSES: dict[str, Callable[..., jax.Array]] = {"mse": mse, "bce": bce}
