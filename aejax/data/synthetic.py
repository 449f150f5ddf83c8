"""Small generated datasets whose structure is known, for seeing what a bottleneck keeps.

- ``line2d``: 2-D points near the line x2 = slope * x1 (intrinsic dimension 1). Labels are
  five equal-count bins along the line, so a latent plot shows whether order is kept.
- ``layers3d``: a few curved, labelled sheets stacked in 3-D, each centred at a different
  (x1, x2) position, so a 2-D bottleneck can flatten them by dropping the height (the setting
  of the interactive introduction to autoencoders).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig

from aejax.data.base import Dataset
from aejax.data.registry import DATASETS


def _split(name: str, x: np.ndarray, y: np.ndarray, test_size: float, rng: np.random.Generator,
           class_names: tuple[str, ...]) -> Dataset:
    order = rng.permutation(len(x))
    n_test = int(round(len(x) * test_size))
    test, train = order[:n_test], order[n_test:]
    x = x.astype(np.float32)
    y = y.astype(np.int32)
    return Dataset(name, x[train], y[train], x[test], y[test], class_names, unit_range=False)


@dataclass
class Line2DConfig:
    kind: str = "line2d"
    name: str = "line2d"
    num_examples: int = 1000
    slope: float = 0.9
    noise: float = 0.1  # std of the offset orthogonal to the line
    test_size: float = 0.2
    data_seed: int = 0


@DATASETS.register("line2d", Line2DConfig)
def line2d(cfg: DictConfig) -> Dataset:
    rng = np.random.default_rng(cfg.data_seed)
    t = rng.normal(size=cfg.num_examples)
    normal = np.array([-cfg.slope, 1.0]) / np.hypot(1.0, cfg.slope)
    offset = rng.normal(scale=cfg.noise, size=cfg.num_examples)
    x = t[:, None] * np.array([1.0, cfg.slope]) + offset[:, None] * normal
    bins = np.quantile(t, [0.2, 0.4, 0.6, 0.8])
    y = np.searchsorted(bins, t)
    names = ("far left", "left", "centre", "right", "far right")
    return _split("line2d", x, y, cfg.test_size, rng, names)


@dataclass
class Layers3DConfig:
    kind: str = "layers3d"
    name: str = "layers3d"
    num_layers: int = 3
    points_per_layer: int = 400
    spread: float = 0.6  # std of each sheet in the (x1, x2) plane
    wave: float = 0.3  # amplitude of each sheet's curvature along x1
    noise: float = 0.03  # std of the height noise
    test_size: float = 0.2
    data_seed: int = 0


@DATASETS.register("layers3d", Layers3DConfig)
def layers3d(cfg: DictConfig) -> Dataset:
    rng = np.random.default_rng(cfg.data_seed)
    parts, labels = [], []
    for k in range(cfg.num_layers):
        angle = 2 * np.pi * k / cfg.num_layers
        centre = 2.0 * np.array([np.cos(angle), np.sin(angle)])
        xy = centre + rng.normal(scale=cfg.spread, size=(cfg.points_per_layer, 2))
        height = (k - (cfg.num_layers - 1) / 2) + cfg.wave * np.sin(1.5 * xy[:, 0])
        height = height + rng.normal(scale=cfg.noise, size=cfg.points_per_layer)
        parts.append(np.column_stack([xy, height]))
        labels.append(np.full(cfg.points_per_layer, k))
    names = tuple(f"layer {k}" for k in range(cfg.num_layers))
    return _split("layers3d", np.concatenate(parts), np.concatenate(labels), cfg.test_size, rng, names)


@dataclass
class SuperpositionConfig:
    kind: str = "superposition"
    name: str = "superposition"
    num_features: int = 256  # ground-truth directions f_i, unit norm, random in `dim` dimensions
    dim: int = 64
    p_active: float = 0.02  # probability that a feature is active in an example
    decay: float = 1.0  # feature i is active with probability p_active * decay**i (1: all alike)
    group_size: int = 1  # features in consecutive groups of this size ...
    group_correlation: float = 0.0  # ... take their group's on/off draw with this probability
    min_magnitude: float = 0.0  # an active feature's coefficient a_i ~ U(min_magnitude, max_magnitude)
    max_magnitude: float = 1.0
    noise: float = 0.0  # std of Gaussian noise added to every value
    num_examples: int = 10_000
    test_size: float = 0.2
    data_seed: int = 0


def superposition_arrays(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(x [num_examples, dim], features [num_features, dim])``: ``x = sum_i a_i f_i (+ noise)``."""
    rng = np.random.default_rng(cfg.data_seed)
    n, m, d = cfg.num_examples, cfg.num_features, cfg.dim
    features = rng.normal(size=(m, d))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    p = cfg.p_active * cfg.decay ** np.arange(m)
    own = rng.random((n, m)) < p
    groups = -(-m // cfg.group_size)
    shared = np.repeat(rng.random((n, groups)), cfg.group_size, axis=1)[:, :m] < p
    follows = rng.random((n, m)) < cfg.group_correlation
    active = np.where(follows, shared, own)
    coef = rng.uniform(cfg.min_magnitude, cfg.max_magnitude, size=(n, m)) * active
    x = coef @ features + cfg.noise * rng.normal(size=(n, d))
    return x.astype(np.float32), features.astype(np.float32)


def check_superposition(cfg: DictConfig) -> None:
    from aejax.errors import ConfigError

    for key in ("num_features", "dim", "num_examples", "group_size"):
        if cfg[key] <= 0:
            raise ConfigError(f"dataset.{key}", f"must be > 0, got {cfg[key]}")
    for key in ("p_active", "group_correlation"):
        if not 0 <= cfg[key] <= 1:
            raise ConfigError(f"dataset.{key}", f"must be in [0, 1], got {cfg[key]}")
    if not 0 < cfg.decay <= 1:
        raise ConfigError("dataset.decay", f"must be in (0, 1], got {cfg.decay}")
    if not 0 <= cfg.min_magnitude <= cfg.max_magnitude:
        raise ConfigError("dataset.min_magnitude", f"need 0 <= min_magnitude <= max_magnitude, got "
                                                   f"{cfg.min_magnitude}, {cfg.max_magnitude}")
    if cfg.noise < 0:
        raise ConfigError("dataset.noise", f"must be >= 0, got {cfg.noise}")


@DATASETS.register("superposition", SuperpositionConfig)
def superposition(cfg: DictConfig) -> Dataset:
    """Sparse known features in superposition (more features than dimensions); unlabeled, with the
    true directions as ``ground_truth``."""
    check_superposition(cfg)
    x, features = superposition_arrays(cfg)
    order = np.random.default_rng([cfg.data_seed, 1]).permutation(len(x))
    n_test = int(round(len(x) * cfg.test_size))
    test, train = order[:n_test], order[n_test:]
    return Dataset(cfg.name, x[train], None, x[test], None, (), unit_range=False, ground_truth=features)
