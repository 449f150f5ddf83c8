"""Sparse dictionaries and discrete codes: the variant keys that pick them, and their terms.

``variant.code`` picks the bottleneck: ``dense`` (the autoencoder's linear code, the default),
``topk`` / ``batchtopk`` / ``jumprelu`` (a sparse autoencoder, ``aejax.models.sae``: its own linear
encoder and decoder, ``model.latent_dim`` latents) or ``vq`` (a codebook, ``aejax.models.vq``, between
the configured encoder and decoder). Their terms, added like any other under ``variant.terms``:

- ``auxk``: OpenAI's auxiliary loss. The ``k`` largest pre-activations among the dead latents
  reconstruct the main reconstruction's residual (``x - x_hat``, no gradient); the value is that
  error normalised by the residual's mean square, per example (0 when no latent is dead). Only
  dead latents get gradients from it.
- ``l0``: active latents per example, with the straight-through gradient to JumpReLU's thresholds.
- ``commitment``: ``mean (z_e - sg(z_q))^2`` per value of the code, the VQ-VAE's commitment loss;
  its ``weight`` is beta.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from omegaconf import DictConfig

from aejax.errors import ConfigError
from aejax.models.sae import SPARSE_CODES, step_fn
from aejax.variants.losses import flat
from aejax.variants.terms import TERMS, Forward

CODES = ("dense", *SPARSE_CODES, "vq")


@dataclass
class CodeConfig:
    """The variant's bottleneck (its keys sit in ``variant`` next to recon, head and terms)."""
    code: str = "dense"  # dense | topk | batchtopk | jumprelu | vq
    k: int = 0  # topk/batchtopk: active latents per example (batchtopk: on average over the batch)
    dead_window: int = 10_000  # sparse codes: a latent silent for this many training examples is dead
    threshold_decay: float = 0.99  # batchtopk: EMA decay of the inference threshold
    bandwidth: float = 1e-3  # jumprelu: width of the straight-through kernel
    threshold: float = 1e-3  # jumprelu: initial threshold of every latent
    codebook_size: int = 0  # vq: codebook entries
    code_dim: int = 0  # vq: values per code vector (model.latent_dim / code_dim vectors per example)
    ema_decay: float = 0.99  # vq: EMA decay of the codebook
    restart_below: float = 1.0  # vq: restart an entry whose average assignments per batch fall below this


@dataclass
class AuxKConfig:
    weight: float = 1 / 32
    k: int = 0  # dead latents used per example; 0: half the input's values (OpenAI's k_aux = d/2)


@dataclass
class L0Config:
    weight: float = 1e-3


@dataclass
class CommitmentConfig:
    weight: float = 0.25  # beta


@TERMS.register("auxk", AuxKConfig)
def auxk(f: Forward, cfg: DictConfig, rng: jax.Array, training: bool) -> jax.Array:
    model = f.model
    dead = model.dead()
    pre = jnp.where(dead, model.pre_activation(f.features), -jnp.inf)
    k = min(cfg.k or max(1, flat(f.x).shape[1] // 2), pre.shape[1])
    values, idx = jax.lax.top_k(pre, k)
    rows = jnp.arange(pre.shape[0])[:, None]
    z = jnp.zeros_like(pre).at[rows, idx].set(jnp.where(jnp.isfinite(values), jax.nn.relu(values), 0.0))
    residual = jax.lax.stop_gradient(flat(f.x) - flat(model.decode_logits(f.mean)))
    error = jnp.mean(jnp.square(z @ model.directions() - residual), axis=1)
    scale = jnp.maximum(jnp.mean(jnp.square(residual), axis=1), 1e-12)
    return jnp.where(jnp.any(dead), error / scale, 0.0)


@TERMS.register("l0", L0Config)
def l0(f: Forward, cfg: DictConfig, rng: jax.Array, training: bool) -> jax.Array:
    model = f.model
    theta = jnp.exp(model.log_threshold[...])
    return jnp.sum(step_fn(model.pre_activation(f.features), theta, model.bandwidth), axis=1)


@TERMS.register("commitment", CommitmentConfig)
def commitment(f: Forward, cfg: DictConfig, rng: jax.Array, training: bool) -> jax.Array:
    z_e = f.model.pre_quantize(f.features)
    return jnp.mean(jnp.square(z_e - f.model.quantize(z_e)), axis=1)


def check_code(variant: DictConfig, cfg: DictConfig) -> None:
    """The code's keys against each other and the model (before anything is built)."""
    v, code, n = variant, variant.code, cfg.model.latent_dim
    if code not in CODES:
        raise ConfigError("variant.code", f"must be one of {', '.join(CODES)}; got {code!r}")
    needs = {"auxk": ("topk", "batchtopk", "jumprelu"), "l0": ("jumprelu",), "commitment": ("vq",)}
    for term, codes in needs.items():
        if term in v.terms and "_target_" not in v.terms[term] and code not in codes:
            raise ConfigError(f"variant.terms.{term}", f"needs variant.code={' or '.join(codes)}, got {code}")
    if "auxk" in v.terms and v.terms.auxk.k < 0:
        raise ConfigError("variant.terms.auxk.k", f"must be >= 0 (0: half the input's values), got {v.terms.auxk.k}")
    if code == "dense":
        return
    if v.head != "deterministic":
        raise ConfigError("variant.head", f"variant.code={code} needs a deterministic head, got {v.head}")
    if code in ("topk", "batchtopk") and not 0 < v.k <= n:
        raise ConfigError("variant.k", f"must be in [1, model.latent_dim={n}] for variant.code={code}, got {v.k}")
    if code in SPARSE_CODES:
        if v.dead_window <= 0:
            raise ConfigError("variant.dead_window", f"must be > 0 (training examples), got {v.dead_window}")
        if not 0 <= v.threshold_decay < 1:
            raise ConfigError("variant.threshold_decay", f"must be in [0, 1), got {v.threshold_decay}")
        for key in ("bandwidth", "threshold"):
            if v[key] <= 0:
                raise ConfigError(f"variant.{key}", f"must be > 0, got {v[key]}")
    if code == "vq":
        for key in ("codebook_size", "code_dim"):
            if v[key] <= 0:
                raise ConfigError(f"variant.{key}", f"must be > 0 for variant.code=vq, got {v[key]}")
        if n % v.code_dim:
            raise ConfigError("variant.code_dim", f"must divide model.latent_dim={n} (the code is latent_dim / "
                                                  f"code_dim vectors), got {v.code_dim}")
        if not 0 <= v.ema_decay < 1:
            raise ConfigError("variant.ema_decay", f"must be in [0, 1), got {v.ema_decay}")
        if v.restart_below < 0:
            raise ConfigError("variant.restart_below", f"must be >= 0, got {v.restart_below}")
