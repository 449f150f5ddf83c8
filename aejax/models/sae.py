"""Sparse autoencoders: an overcomplete linear dictionary with a sparsifying activation.

``x -> h = x - b_pre -> pre = h W_enc + b_enc -> z = act(pre) -> x_hat = z W_dec + b_pre``, with
``latent_dim`` latents (the dictionary size) and the rows of ``W_dec`` (the dictionary's directions)
at unit norm (``UnitNorm``). ``b_pre`` starts at the data mean; ``W_enc`` starts as ``W_dec``
transposed (as OpenAI's sparse_autoencoder). The activations:

- ``topk``: the k largest pre-activations of each example, ReLU'd, the others 0 (Gao et al. 2024).
- ``batchtopk``: in training the ``k * examples`` largest of the whole batch (k per example on
  average, Bussmann et al. 2024); the mean smallest kept activation is tracked (an EMA) and used
  as a threshold at inference, so an example's code does not depend on its batch.
- ``jumprelu``: ``pre * H(pre - theta)`` with a learned threshold per latent (``theta = exp(log_theta)``)
  trained by straight-through estimators with a rectangle kernel of width ``bandwidth``
  (Rajamanoharan et al. 2024); its L0 penalty is the ``l0`` term.

Each latent's examples since it last fired are counted (``since_fired``, a ``Statistic``); a latent
silent for ``dead_window`` examples is dead, and the ``auxk`` term trains the dead ones on the
residual. The model follows the autoencoder's contract (features, code_params, encode, decode...),
so evaluation, snapshots and the explorer use it as any other.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aejax.models.autoencoder import Coding
from aejax.models.variables import Statistic, UnitNorm

SPARSE_CODES = ("topk", "batchtopk", "jumprelu")


def topk_code(pre: jax.Array, k: int) -> jax.Array:
    """Exactly the ``k`` largest pre-activations of each row kept (then ReLU'd), the others 0."""
    values, idx = jax.lax.top_k(pre, k)
    rows = jnp.arange(pre.shape[0])[:, None]
    return jnp.zeros_like(pre).at[rows, idx].set(jax.nn.relu(values))


def batch_topk_code(pre: jax.Array, k: int, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The ``k * sum(w)`` largest ReLU'd pre-activations of the real rows (``w > 0``) of the batch
    kept, the others 0; and the smallest value kept (the threshold this batch implies)."""
    acts = jax.nn.relu(pre) * (w[:, None] > 0)
    ordered = jax.lax.top_k(acts.ravel(), min(k * pre.shape[0], acts.size))[0]  # not a full sort: 5x faster on CPU
    keep = jnp.clip(jnp.round(k * jnp.sum(w > 0)).astype(jnp.int32), 1, ordered.shape[0])
    threshold = ordered[keep - 1]
    z = jnp.where((acts >= threshold) & (acts > 0), acts, 0.0)
    return z, threshold


def _rectangle(u: jax.Array) -> jax.Array:
    return ((u > -0.5) & (u < 0.5)).astype(u.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def jump_relu(pre: jax.Array, theta: jax.Array, bandwidth: float) -> jax.Array:
    """``pre * H(pre - theta)``; d/dtheta by the straight-through rule ``-(theta/eps) K((pre-theta)/eps)``."""
    return pre * (pre > theta)


def _jump_relu_fwd(pre, theta, bandwidth):
    return jump_relu(pre, theta, bandwidth), (pre, theta)


def _jump_relu_bwd(bandwidth, saved, g):
    pre, theta = saved
    d_pre = g * (pre > theta)
    d_theta = -(theta / bandwidth) * _rectangle((pre - theta) / bandwidth) * g
    return d_pre, jnp.sum(d_theta.reshape(-1, theta.shape[-1]), axis=0)


jump_relu.defvjp(_jump_relu_fwd, _jump_relu_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def step_fn(pre: jax.Array, theta: jax.Array, bandwidth: float) -> jax.Array:
    """``H(pre - theta)``; d/dtheta by the straight-through rule ``-(1/eps) K((pre-theta)/eps)``, d/dpre 0."""
    return (pre > theta).astype(pre.dtype)


def _step_fwd(pre, theta, bandwidth):
    return step_fn(pre, theta, bandwidth), (pre, theta)


def _step_bwd(bandwidth, saved, g):
    pre, theta = saved
    d_theta = -(1.0 / bandwidth) * _rectangle((pre - theta) / bandwidth) * g
    return jnp.zeros_like(pre), jnp.sum(d_theta.reshape(-1, theta.shape[-1]), axis=0)


step_fn.defvjp(_step_fwd, _step_bwd)


class SparseAutoencoder(Coding, nnx.Module):
    head = "deterministic"

    def __init__(self, example_shape: tuple[int, ...], latent_dim: int, code: str, *, k: int = 0,
                 dead_window: int = 10_000, threshold_decay: float = 0.99, bandwidth: float = 1e-3,
                 threshold: float = 1e-3, data_mean: Optional[np.ndarray] = None, output: str = "identity",
                 rngs: nnx.Rngs):
        if code not in SPARSE_CODES:
            raise ValueError(f"code must be one of {SPARSE_CODES}, got {code!r}")
        d = math.prod(example_shape)
        self.example_shape, self.latent_dim, self.code, self.k = tuple(example_shape), latent_dim, code, k
        self.dead_window, self.threshold_decay, self.bandwidth, self.output = dead_window, threshold_decay, bandwidth, output
        directions = jax.random.normal(rngs.params(), (latent_dim, d))
        directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
        mean = jnp.zeros(d) if data_mean is None else jnp.asarray(data_mean, jnp.float32).reshape(d)
        self.pre_bias = nnx.Param(mean)
        self.encoder_kernel = nnx.Param(directions.T)
        self.encoder_bias = nnx.Param(jnp.zeros(latent_dim))
        self.decoder_kernel = UnitNorm(directions)  # [latent_dim, d]: row j is latent j's direction
        self.since_fired = Statistic(jnp.zeros(latent_dim))  # examples since each latent last fired
        if code == "batchtopk":
            self.threshold = Statistic(jnp.zeros(()))
        if code == "jumprelu":
            self.log_threshold = nnx.Param(jnp.full(latent_dim, math.log(threshold)))

    # the autoencoder contract
    def features(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0], -1) - self.pre_bias[...]

    def pre_activation(self, h: jax.Array) -> jax.Array:
        return h @ self.encoder_kernel[...] + self.encoder_bias[...]

    def code_params(self, h: jax.Array) -> tuple[jax.Array, None]:
        """The code at inference: per example, independent of the batch."""
        pre = self.pre_activation(h)
        if self.code == "topk":
            return topk_code(pre, self.k), None
        if self.code == "batchtopk":
            acts = jax.nn.relu(pre)
            return jnp.where(acts > self.threshold[...], acts, 0.0), None
        return jump_relu(pre, jnp.exp(self.log_threshold[...]), self.bandwidth), None

    def train_code(self, h: jax.Array, w: jax.Array, rng: jax.Array) -> jax.Array:
        """The code in training (BatchTopK: over the batch), updating the dead-latent counters and
        BatchTopK's threshold from the real rows (``w > 0``)."""
        del rng
        if self.code == "batchtopk":
            z, kept_min = batch_topk_code(self.pre_activation(h), self.k, w)
            old = self.threshold[...]
            self.threshold[...] = jax.lax.stop_gradient(
                jnp.where(old > 0, self.threshold_decay * old + (1 - self.threshold_decay) * kept_min, kept_min))
        else:
            z = self.code_params(h)[0]
        fired = jnp.any((z > 0) & (w[:, None] > 0), axis=0)
        self.since_fired[...] = jnp.where(fired, 0.0, self.since_fired[...] + jnp.sum(w > 0))
        return z

    def dead(self) -> jax.Array:
        """Latents silent for ``dead_window`` training examples or more, ``[latent_dim]`` bool."""
        return self.since_fired[...] >= self.dead_window

    def directions(self) -> jax.Array:
        """The dictionary: unit-norm decoder directions, ``[latent_dim, values]``."""
        return self.decoder_kernel[...]

    def decode_logits(self, z: jax.Array) -> jax.Array:
        out = z @ self.decoder_kernel[...] + self.pre_bias[...]
        return out.reshape(z.shape[0], *self.example_shape)
