"""A variant's training objective, composed from terms declared in config.

``objective(model, x, w, rng, step)`` returns per-example values ``[B]``: ``loss`` (the total
that is minimised), ``recon`` and each regularizer under its own name. The pieces:

1. an optional input corruption (``variant.corruption``; denoising),
2. the code: deterministic, or sampled from a Gaussian head with the reparameterization trick,
   (a model with ``train_code``, sparse dictionaries and codebooks, gives its training code and
   updates its state from the batch there),
3. the reconstruction loss against the clean input (``variant.recon``),
4. regularizers (``variant.terms``), each added with its weight.

So a denoising sparse autoencoder or a contractive VAE is a config, not a class. ``step`` is
the optimizer step in training and None in evaluation, where training devices (KL annealing,
free bits) are off and a clean-input ``mse`` is added, comparable across variants.

``code_size``: in a batched sweep (``aejax.batching``) a model's code is padded to its group's
largest; this is its own size (a traced value per model). Its Gaussian noise is then its
separate run's draw on its own units and zero on the padding (``gaussian_noise``), and the terms
see it (``Forward.code_size``), so the padded units stay exactly zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
from omegaconf import DictConfig

from aejax.models import Autoencoder
from aejax.variants.corruption import corrupt
from aejax.variants.losses import RECON_LOSSES, mse
from aejax.variants.terms import Forward, TermFn, weight_at


@dataclass(frozen=True)
class Objective:
    recon: str = "mse"
    corruption: Optional[DictConfig] = None
    terms: tuple[tuple[str, TermFn, DictConfig], ...] = ()  # (name, term, its settings with `weight`)
    code_size: Optional[jax.Array] = None  # the model's own code size when padded (a batched group)

    def __call__(self, model: Autoencoder, x: jax.Array, w: jax.Array, rng: jax.Array,
                 step: Optional[jax.Array] = None) -> dict[str, jax.Array]:
        training = step is not None
        corrupt_rng, sample_rng, term_rng = jax.random.split(rng, 3)
        x_in, mask = corrupt(self.corruption, x, corrupt_rng) if self.corruption is not None else (x, None)
        features = model.features(x_in)
        train_code = getattr(model, "train_code", None)  # models with state: batch-level codes, updates
        if training and train_code is not None:
            mean, logvar = train_code(features, w, jax.random.fold_in(sample_rng, 1)), None
        else:
            mean, logvar = model.code_params(features)
        z = mean if logvar is None else mean + jnp.exp(0.5 * logvar) * gaussian_noise(sample_rng, mean.shape,
                                                                                       self.code_size)
        recon = RECON_LOSSES[self.recon](x, model.decode_logits(z), model.activate, mask)

        out, total = {"recon": recon}, recon
        f = Forward(model, x, x_in, w, features, mean, logvar, self.code_size)
        for i, (name, term, cfg) in enumerate(self.terms):
            out[name] = term(f, cfg, jax.random.fold_in(term_rng, i), training)
            total = total + weight_at(cfg, step) * out[name]
        if not training:
            out["mse"] = mse(x, model.decode_logits(model.encode(x)), model.activate)
        out["loss"] = total
        return out


def gaussian_noise(rng: jax.Array, shape: tuple[int, int], code_size: Optional[jax.Array] = None) -> jax.Array:
    """``N(0, I)`` noise ``[B, K]`` for a code's samples. With ``code_size`` k <= K (traced) it is the
    draw ``normal(rng, (B, k))`` of the model's separate run in the first k units and zero after:
    with ``jax_threefry_partitionable`` (JAX's default) each value of a draw depends only on the
    key and its flat index, so value ``[b, j]`` is value ``b * k + j`` of one flat draw of ``B * K``
    (``tests/test_batched_vae.py`` checks this against the separate draw)."""
    if code_size is None:
        return jax.random.normal(rng, shape)
    batch, width = shape
    k = code_size.astype(jnp.int32)
    units = jnp.arange(width)
    flat = jax.random.normal(rng, (batch * width,))
    own = jnp.take(flat, jnp.arange(batch)[:, None] * k + units, mode="clip")
    return jnp.where(units < k, own, 0.0)
