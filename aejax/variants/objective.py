"""A variant's training objective: what the loss of one example is.

An objective maps ``(model, x, rng)`` to a dict of per-example values ``[B]``: ``loss`` (the
total that is minimised) and each of its terms under its own name (``recon``, ...). The
training step reduces them to weighted means, so every term is logged beside the total and
a per-example loss is always at hand (for latent snapshots, anomaly scores).

Vanilla is reconstruction only. Later variants compose further terms (input corruption,
regularizers on the code) into the same structure instead of adding a class per combination.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
from omegaconf import DictConfig

from aejax.models import Autoencoder
from aejax.variants.losses import RECON_LOSSES


@dataclass(frozen=True)
class Objective:
    recon: str = "mse"

    def __call__(self, model: Autoencoder, x: jax.Array, rng: jax.Array) -> dict[str, jax.Array]:
        del rng  # no stochastic term in a vanilla autoencoder
        z = model.encode(x)
        recon = RECON_LOSSES[self.recon](x, model.decode_logits(z), model.activate)
        return {"loss": recon, "recon": recon}


def build_objective(cfg: DictConfig) -> Objective:
    return Objective(recon=cfg.recon)
