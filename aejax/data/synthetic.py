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
