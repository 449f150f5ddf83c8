"""The VQ-VAE's bottleneck: the code quantised to its nearest entries of a codebook.

The encoder and bottleneck give ``z_e`` ``[B, latent_dim]``, read as ``latent_dim / code_dim``
vectors of ``code_dim`` values (one code each, like the positions of a conv VQ-VAE's grid); each is
replaced by its nearest codebook entry (squared Euclidean distance). Gradients pass straight
through the quantisation to the encoder (``z_e + stop_gradient(z_q - z_e)``, van den Oord et al.
2017); the ``commitment`` term pulls ``z_e`` towards its entries (weight beta).

The codebook is not trained by gradients: it is model state (``Statistic``) updated in training by
exponential moving averages of the assignment counts and of the sums of the vectors assigned
(Razavi et al. 2019), with Laplace smoothing; an entry whose average count falls below
``restart_below`` (assignments per batch) is restarted at a random vector of the batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from aejax.models.autoencoder import Autoencoder
from aejax.models.variables import Statistic

EPS = 1e-5


def nearest(vectors: jax.Array, codebook: jax.Array) -> jax.Array:
    """Index of the nearest codebook entry of each vector, ``[..., D] -> [...]``."""
    d2 = (jnp.sum(vectors**2, -1, keepdims=True) - 2 * vectors @ codebook.T + jnp.sum(codebook**2, -1))
    return jnp.argmin(d2, axis=-1)


def ema_update(count: jax.Array, total: jax.Array, vectors: jax.Array, idx: jax.Array, weights: jax.Array,
               decay: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One EMA step from ``vectors`` ``[N, D]`` assigned ``idx`` ``[N]`` with ``weights`` ``[N]``:
    ``(count, sum, codebook)``, the codebook ``sum / smoothed count`` (Laplace smoothing)."""
    onehot = jax.nn.one_hot(idx, count.shape[0]) * weights[:, None]  # [N, K]
    count = decay * count + (1 - decay) * jnp.sum(onehot, axis=0)
    total = decay * total + (1 - decay) * onehot.T @ vectors
    n = jnp.sum(count)
    smoothed = (count + EPS) / (n + count.shape[0] * EPS) * n
    return count, total, total / smoothed[:, None]


class VQAutoencoder(Autoencoder):
    def __init__(self, encoder: nnx.Module, bottleneck: nnx.Linear, decoder: nnx.Module, latent_dim: int,
                 output: str, *, codebook_size: int, code_dim: int, decay: float = 0.99, restart_below: float = 1.0,
                 rngs: nnx.Rngs):
        if latent_dim % code_dim:
            raise ValueError(f"latent_dim {latent_dim} is not a multiple of code_dim {code_dim}")
        super().__init__(encoder, bottleneck, decoder, latent_dim, "deterministic", output)
        self.codebook_size, self.code_dim, self.decay, self.restart_below = codebook_size, code_dim, decay, restart_below
        entries = jax.random.normal(rngs.params(), (codebook_size, code_dim))
        self.codebook = Statistic(entries)
        self.ema_count = Statistic(jnp.ones(codebook_size))
        self.ema_sum = Statistic(entries)

    def pre_quantize(self, h: jax.Array) -> jax.Array:
        """``z_e``: the bottleneck's output before quantisation, ``[B, latent_dim]``."""
        return self.bottleneck(h).astype(jnp.float32)

    def indices(self, z_e: jax.Array) -> jax.Array:
        """The codebook entry of each of an example's vectors, ``[B, latent_dim / code_dim]``."""
        return nearest(z_e.reshape(z_e.shape[0], -1, self.code_dim), self.codebook[...])

    def quantize(self, z_e: jax.Array) -> jax.Array:
        """``z_q`` (the nearest entries), in ``z_e``'s shape; no gradient."""
        return jax.lax.stop_gradient(self.codebook[...][self.indices(z_e)].reshape(z_e.shape))

    def code_params(self, h: jax.Array) -> tuple[jax.Array, None]:
        z_e = self.pre_quantize(h)
        return z_e + jax.lax.stop_gradient(self.quantize(z_e) - z_e), None  # straight-through

    def train_code(self, h: jax.Array, w: jax.Array, rng: jax.Array) -> jax.Array:
        """The code in training, after which the codebook takes its EMA step on this batch's real
        rows (and its dead entries restart at random vectors of the batch)."""
        z_e = self.pre_quantize(h)
        z = z_e + jax.lax.stop_gradient(self.quantize(z_e) - z_e)
        vectors = jax.lax.stop_gradient(z_e).reshape(-1, self.code_dim)
        weights = jnp.repeat(w, self.latent_dim // self.code_dim)
        count, total, codebook = ema_update(self.ema_count[...], self.ema_sum[...], vectors,
                                            self.indices(z_e).reshape(-1), weights, self.decay)
        dead = count < self.restart_below
        pick = jax.random.choice(rng, vectors.shape[0], (self.codebook_size,), p=weights / jnp.sum(weights))
        fresh = vectors[pick]
        self.ema_count[...] = jnp.where(dead, 1.0, count)
        self.ema_sum[...] = jnp.where(dead[:, None], fresh, total)
        self.codebook[...] = jnp.where(dead[:, None], fresh, codebook)
        return z
