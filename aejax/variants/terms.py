"""Regularizer terms. Each maps one forward pass to a per-example value ``[B]``.

A term is declared under ``variant.terms.<name>`` with a ``weight``; the objective adds
``weight * value`` to the reconstruction loss and logs ``value`` as ``train/<name>``. Terms:

- ``l1``: mean |z| over the code's units (sparse codes).
- ``kl_sparsity``: sum over hidden units j of KL(rho || rho_hat_j), rho_hat_j the batch-mean
  activation of unit j of the encoder's last hidden layer (needs sigmoid activations).
- ``contractive``: squared Frobenius norm of the encoder's Jacobian dz/dx at each input; exact
  (``jacrev``/``jacfwd``, min(inputs, code) passes) or the unbiased estimate E_v ||J v||^2, v ~ N(0, I).
- ``kl``: KL(q(z|x) || N(0, I)) of a Gaussian head, in nats divided by the values per example, so
  that with BCE ``recon + kl`` is the negative ELBO per value; ``weight`` is beta. Optional linear
  annealing of beta over ``anneal_steps`` and free bits (nats per unit and example) in training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from omegaconf import DictConfig

from aejax.errors import ConfigError
from aejax.models import Autoencoder
from aejax.models.contract import forward_mode
from aejax.registry import Registry


@dataclass(frozen=True)
class Forward:
    """What one forward pass computed, for the terms to read."""

    model: Autoencoder
    x: jax.Array  # the clean input
    x_in: jax.Array  # what the encoder saw (corrupted for denoising)
    w: jax.Array  # example weights, 0 for padding
    features: jax.Array  # the encoder's last hidden activations
    mean: jax.Array  # the code, or the posterior mean of a Gaussian head
    logvar: Optional[jax.Array]  # the posterior log-variance, None for a deterministic head
    code_size: Optional[jax.Array] = None  # the model's own units when its code is padded (a batched group)


TermFn = Callable[[Forward, DictConfig, jax.Array, bool], jax.Array]
TERMS: Registry[TermFn] = Registry("term")


@dataclass
class TargetTermConfig:
    """The keys aejax reads from a term of one's own (``variant.terms.<name>._target_``)."""
    weight: float = 1.0
    anneal_steps: int = 0  # ramp the weight linearly from 0 over this many steps (0: no annealing)


@dataclass
class L1Config:
    weight: float = 1e-3


@TERMS.register("l1", L1Config)
def l1(f: Forward, cfg: DictConfig, rng: jax.Array, training: bool) -> jax.Array:
    if f.code_size is not None:  # a padded code: the mean over the model's own units, and none of |z|'s
        own = jnp.arange(f.mean.shape[-1]) < f.code_size  # gradient at 0 (JAX's is 1) on the padded ones
        return jnp.sum(jnp.where(own, jnp.abs(f.mean), 0.0), axis=-1) / f.code_size
    return jnp.mean(jnp.abs(f.mean), axis=-1)


@dataclass
class KLSparsityConfig:
    weight: float = 0.1
    target: float = 0.05  # the desired mean activation rho of each hidden unit


@TERMS.register("kl_sparsity", KLSparsityConfig)
def kl_sparsity(f: Forward, cfg: DictConfig, rng: jax.Array, training: bool) -> jax.Array:
    w = f.w[:, None]
    rate = jnp.clip(jnp.sum(w * f.features, axis=0) / jnp.sum(w), 1e-6, 1 - 1e-6)
    rho = cfg.target
    kl = jnp.sum(rho * jnp.log(rho / rate) + (1 - rho) * jnp.log((1 - rho) / (1 - rate)))
    return jnp.broadcast_to(kl, f.w.shape)  # a batch statistic: the same value for every example


@dataclass
class ContractiveConfig:
    weight: float = 0.1
    estimator: str = "auto"  # exact | projection | auto: exact when min(inputs, latent_dim) <= exact_max
    projections: int = 1  # random projections per example for the estimate
    exact_max: int = 16


def jacobian_sq_norm(encode: Callable[[jax.Array], jax.Array], x: jax.Array, forward: bool = True) -> jax.Array:
    """Exact ||d encode / dx||_F^2 per example, with the cheaper of reverse or forward mode
    (reverse only when ``forward`` is False: the encoder has no forward mode)."""
    single = lambda xi: encode(xi[None])[0]  # noqa: E731
    k = jax.eval_shape(single, x[0]).shape[0]
    jac = jax.vmap(jax.jacrev(single) if k <= math.prod(x.shape[1:]) or not forward else jax.jacfwd(single))(x)
    return jnp.sum(jnp.square(jac).reshape(x.shape[0], -1), axis=1)


def _jvp_by_reverse_mode(fn: Callable[[jax.Array], jax.Array], x: jax.Array, v: jax.Array) -> jax.Array:
    """``J v`` of ``fn`` at ``x`` without forward mode: the pullback ``u -> J^T u`` is linear, and
    ``J v`` is its transpose applied to ``v`` (its own reverse-mode derivative)."""
    y, pullback = jax.vjp(fn, x)
    return jax.vjp(lambda u: pullback(u)[0], jnp.zeros_like(y))[1](v)[0]


def jacobian_sq_norm_estimate(encode: Callable[[jax.Array], jax.Array], x: jax.Array, rng: jax.Array,
                              projections: int, forward: bool = True) -> jax.Array:
    """Unbiased estimate E_v ||J v||^2 = ||J||_F^2 with v ~ N(0, I), one jvp per projection
    (``J v`` through reverse mode when ``forward`` is False: the encoder has no forward mode).

    Examples are independent in the encoder, so one jvp of the batched encoder gives J_i v_i for all i.
    """
    tangents = jax.random.normal(rng, (projections, *x.shape), x.dtype)
    if forward:
        jv = jax.vmap(lambda v: jax.jvp(encode, (x,), (v,))[1])(tangents)  # [P, B, k]
    else:
        jv = jax.vmap(lambda v: _jvp_by_reverse_mode(encode, x, v))(tangents)
    return jnp.mean(jnp.sum(jnp.square(jv), axis=-1), axis=0)


@TERMS.register("contractive", ContractiveConfig)
def contractive(f: Forward, cfg: DictConfig, rng: jax.Array, training: bool) -> jax.Array:
    def encode(x):
        return f.model.code_params(f.model.features(x))[0]

    k, d = f.mean.shape[-1], math.prod(f.x_in.shape[1:])
    forward = forward_mode(f.model)
    if cfg.estimator == "exact" or (cfg.estimator == "auto" and min(k, d) <= cfg.exact_max):
        return jacobian_sq_norm(encode, f.x_in, forward)
    return jacobian_sq_norm_estimate(encode, f.x_in, rng, cfg.projections, forward)


@dataclass
class KLConfig:
    weight: float = 1.0  # beta
    anneal_steps: int = 0  # ramp beta linearly from 0 over this many steps (0: no annealing)
    free_bits: float = 0.0  # nats per latent unit below which the KL is not penalised (training only)


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) per latent unit, in nats."""
    return 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


@TERMS.register("kl", KLConfig)
def kl(f: Forward, cfg: DictConfig, rng: jax.Array, training: bool) -> jax.Array:
    units = gaussian_kl(f.mean, f.logvar)
    if training and cfg.free_bits > 0:
        units = jnp.maximum(units, cfg.free_bits)
    if f.code_size is not None:  # padded units (mean and log-variance 0: KL 0) owe no free bits
        units = jnp.where(jnp.arange(units.shape[-1]) < f.code_size, units, 0.0)
    return jnp.sum(units, axis=-1) / math.prod(f.x.shape[1:])


def weight_at(cfg: DictConfig, step: Optional[jax.Array]) -> jax.Array | float:
    """A term's weight at a training step (annealed if configured); the full weight in evaluation."""
    anneal = cfg.get("anneal_steps", 0)  # a traced value in a batched group (aejax.batching.objective): > 0
    if step is None or (not isinstance(anneal, jax.Array) and anneal <= 0):
        return cfg.weight
    return cfg.weight * jnp.minimum(1.0, step / anneal)


def check_terms(variant: DictConfig, cfg: DictConfig) -> None:
    """Checks that need the whole config (the encoder's activation, the head)."""
    terms = variant.terms
    for name, term in terms.items():
        if term.weight < 0:
            raise ConfigError(f"variant.terms.{name}.weight", f"must be >= 0, got {term.weight}")
        if isinstance(term.get("anneal_steps"), int) and term.anneal_steps < 0:
            raise ConfigError(f"variant.terms.{name}.anneal_steps", f"must be >= 0 (0: no annealing), got {term.anneal_steps}")
    if "kl_sparsity" in terms:
        if not 0 < terms.kl_sparsity.target < 1:
            raise ConfigError("variant.terms.kl_sparsity.target", f"must be in (0, 1), got {terms.kl_sparsity.target}")
        if cfg.encoder.get("activation") != "sigmoid" or not cfg.encoder.get("hidden"):
            raise ConfigError("variant.terms.kl_sparsity",
                              "needs hidden activations in (0, 1): an encoder with hidden layers and encoder.activation=sigmoid")
    if "contractive" in terms:
        c = terms.contractive
        if c.estimator not in ("auto", "exact", "projection"):
            raise ConfigError("variant.terms.contractive.estimator", f"must be auto, exact or projection; got {c.estimator!r}")
        if c.projections <= 0:
            raise ConfigError("variant.terms.contractive.projections", f"must be > 0, got {c.projections}")
        if c.exact_max < 0:
            raise ConfigError("variant.terms.contractive.exact_max", f"must be >= 0, got {c.exact_max}")
    if "kl" in terms:
        if variant.head != "gaussian":
            raise ConfigError("variant.terms.kl", "the KL term needs a Gaussian code: set variant.head=gaussian")
        if terms.kl.anneal_steps < 0 or terms.kl.free_bits < 0:
            raise ConfigError("variant.terms.kl", "anneal_steps and free_bits must be >= 0")
