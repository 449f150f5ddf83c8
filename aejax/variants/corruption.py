"""Input corruptions for denoising autoencoders: the model sees ``corrupt(x)``, the loss uses ``x``.

Each returns the corrupted batch and, for patch masking, the 0/1 mask of hidden values (the loss
can be restricted to them with ``loss_on: masked``, as in masked autoencoders).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
from omegaconf import DictConfig

from aejax.errors import ConfigError

KINDS = ("gaussian", "mask", "salt_pepper", "patch")


@dataclass
class CorruptionConfig:
    kind: str = "gaussian"  # gaussian | mask | salt_pepper | patch
    sigma: float = 0.3  # gaussian: std of the added noise
    rate: float = 0.25  # mask, salt_pepper: fraction of values hit; patch: fraction of patches hidden
    patch_size: int = 4  # patch: side of the square patches (must divide the image size)
    loss_on: str = "all"  # patch: all values, or only the masked ones


def check(cfg: DictConfig) -> None:
    key = "variant.corruption"
    if cfg.kind not in KINDS:
        raise ConfigError(f"{key}.kind", f"must be one of {', '.join(KINDS)}; got {cfg.kind!r}")
    if cfg.sigma < 0:
        raise ConfigError(f"{key}.sigma", f"must be >= 0, got {cfg.sigma}")
    if not 0.0 <= cfg.rate <= 1.0:
        raise ConfigError(f"{key}.rate", f"must be in [0, 1], got {cfg.rate}")
    if cfg.patch_size <= 0:
        raise ConfigError(f"{key}.patch_size", f"must be > 0, got {cfg.patch_size}")
    if cfg.loss_on not in ("all", "masked"):
        raise ConfigError(f"{key}.loss_on", f"must be all or masked; got {cfg.loss_on!r}")
    if cfg.loss_on == "masked" and cfg.kind != "patch":
        raise ConfigError(f"{key}.loss_on", "loss_on=masked applies to kind=patch only")


def _patch_mask(cfg: DictConfig, shape: tuple[int, ...], rng: jax.Array) -> jax.Array:
    """1 on the pixels of ``round(rate * patches)`` random patches per image, 0 elsewhere."""
    if len(shape) != 4 or shape[1] % cfg.patch_size or shape[2] % cfg.patch_size:
        raise ConfigError("variant.corruption.patch_size",
                          f"patch masking needs HxWxC images with sides divisible by {cfg.patch_size}; got {shape[1:]}")
    p = cfg.patch_size
    grid = (shape[1] // p, shape[2] // p)
    hidden = round(cfg.rate * grid[0] * grid[1])
    ranks = jnp.argsort(jnp.argsort(jax.random.uniform(rng, (shape[0], grid[0] * grid[1])), axis=1), axis=1)
    patches = (ranks < hidden).astype(jnp.float32).reshape(shape[0], *grid)
    return jnp.repeat(jnp.repeat(patches, p, axis=1), p, axis=2)[..., None]


def corrupt(cfg: DictConfig, x: jax.Array, rng: jax.Array) -> tuple[jax.Array, Optional[jax.Array]]:
    if cfg.kind == "gaussian":
        return x + cfg.sigma * jax.random.normal(rng, x.shape, x.dtype), None
    if cfg.kind == "mask":
        return jnp.where(jax.random.bernoulli(rng, cfg.rate, x.shape), 0.0, x), None
    if cfg.kind == "salt_pepper":
        hit_rng, salt_rng = jax.random.split(rng)
        salt = jax.random.bernoulli(salt_rng, 0.5, x.shape).astype(x.dtype)
        return jnp.where(jax.random.bernoulli(hit_rng, cfg.rate, x.shape), salt, x), None
    mask = _patch_mask(cfg, x.shape, rng)
    return x * (1.0 - mask), (mask if cfg.loss_on == "masked" else None)
