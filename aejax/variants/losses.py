"""Reconstruction losses, per example: the mean over the values of each example.

Averaging these over a batch gives the mean per value and example, as PyTorch's ``MSELoss``
and the mean BCE of the reference material, so losses compare across datasets.
BCE takes logits (``optax.sigmoid_binary_cross_entropy``) for numerical stability.
An optional 0/1 ``mask`` of the input's shape (or broadcastable to it) restricts the mean to the
masked values (masked-autoencoder style losses on hidden patches only).

Both sides are compared as ``[B, values]`` views (``flat``), not in the data's shape: a decoder
that reshapes its ``[B, 784]`` output to ``[B, 28, 28, 1]`` gets from XLA:CPU a layout with the unit
channel outermost, and an elementwise op against the input in that shape first copies it (a
strided loop, ~10% of a training step of the bowtie MLP). On flat views the reshape is free.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax


def flat(a: jax.Array) -> jax.Array:
    """``[B, ...] -> [B, values]``: one row per example."""
    return a.reshape(a.shape[0], -1)


def _per_example_mean(values: jax.Array, mask: Optional[jax.Array], shape: tuple[int, ...]) -> jax.Array:
    """The mean of each row of ``values`` ``[B, V]``; with ``mask`` (broadcastable to ``shape``, the
    examples' own shape) the mean over the masked values only."""
    if mask is None:
        return values.mean(axis=1)
    mask = flat(jnp.broadcast_to(mask, shape))
    return jnp.sum(values * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def mse(x: jax.Array, logits: jax.Array, activate: Callable[[jax.Array], jax.Array],
        mask: Optional[jax.Array] = None) -> jax.Array:
    return _per_example_mean(jnp.square(activate(flat(logits)) - flat(x)), mask, x.shape)


def bce(x: jax.Array, logits: jax.Array, activate: Callable[[jax.Array], jax.Array],
        mask: Optional[jax.Array] = None) -> jax.Array:
    del activate  # always a sigmoid, folded into the logits form
    return _per_example_mean(optax.sigmoid_binary_cross_entropy(flat(logits), flat(x)), mask, x.shape)


RECON_LOSSES: dict[str, Callable[..., jax.Array]] = {"mse": mse, "bce": bce}
