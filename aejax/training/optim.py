"""Optimizers by name (``conf/optimizer/``), each with an optional learning-rate schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import optax
from omegaconf import DictConfig

from aejax.errors import ConfigError
from aejax.registry import Registry

OPTIMIZERS: Registry[Callable[..., optax.GradientTransformation]] = Registry("optimizer")
SCHEDULES = ("constant", "cosine", "linear")


@dataclass
class OptimizerCommon:
    """The keys every optimizer has, a built-in one or a ``_target_`` (aejax builds the schedule)."""

    lr: float = 1e-3
    schedule: str = "constant"  # constant | cosine | linear (decay to final_lr_fraction * lr)
    warmup_steps: int = 0  # linear warm-up from 0 before the schedule
    final_lr_fraction: float = 0.0
    grad_clip: Optional[float] = None  # clip the global gradient norm to this value


@dataclass
class AdamConfig(OptimizerCommon):
    name: str = "adam"
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 1e-4


@dataclass
class SGDConfig(OptimizerCommon):
    name: str = "sgd"
    lr: float = 1e-2
    momentum: float = 0.0
    nesterov: bool = False


@OPTIMIZERS.register("adam", AdamConfig)
def adam(cfg: DictConfig, lr) -> optax.GradientTransformation:
    return optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)


@OPTIMIZERS.register("adamw", AdamWConfig)
def adamw(cfg: DictConfig, lr) -> optax.GradientTransformation:
    return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("sgd", SGDConfig)
def sgd(cfg: DictConfig, lr) -> optax.GradientTransformation:
    return optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)


def check(cfg: DictConfig) -> None:
    """The optimizer's numbers in the ranges they work in (finiteness is checked for the whole config)."""
    from aejax.values import in_range

    in_range("optimizer.lr", cfg.lr, 0, math.inf, low_open=True)
    in_range("optimizer.final_lr_fraction", cfg.final_lr_fraction, 0, 1, what=" (a fraction of optimizer.lr)")
    if cfg.warmup_steps < 0:
        raise ConfigError("optimizer.warmup_steps", f"must be >= 0, got {cfg.warmup_steps}")
    in_range("optimizer.grad_clip", cfg.grad_clip, 0, math.inf, low_open=True, what=" (or null: no clipping)")
    for key in ("b1", "b2", "momentum"):
        if isinstance(cfg.get(key), (int, float)):
            in_range(f"optimizer.{key}", cfg[key], 0, 1, high_open=True)
    for key in ("eps", "weight_decay"):
        if isinstance(cfg.get(key), (int, float)) and cfg[key] < 0:
            raise ConfigError(f"optimizer.{key}", f"must be >= 0, got {cfg[key]}")


def learning_rate(cfg: DictConfig, total_steps: int) -> optax.Schedule:
    """The schedule over a run of ``total_steps``; raises ConfigError if the warm-up cannot fit it."""
    if cfg.warmup_steps < 0 or (cfg.warmup_steps > 0 and cfg.warmup_steps >= total_steps):
        raise ConfigError("optimizer.warmup_steps", f"must be in [0, {total_steps}) (the run's steps), got {cfg.warmup_steps}")
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    end = cfg.lr * cfg.final_lr_fraction
    if cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.final_lr_fraction)
    elif cfg.schedule == "linear":
        main = optax.linear_schedule(cfg.lr, end, decay_steps)
    else:
        main = optax.constant_schedule(cfg.lr)
    if cfg.warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
    return optax.join_schedules([warmup, main], [cfg.warmup_steps])
