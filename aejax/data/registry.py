from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig

from aejax.data.base import Dataset
from aejax.registry import Registry

DATASETS: Registry[Callable[[DictConfig], Dataset]] = Registry("dataset")


def load_dataset(cfg: DictConfig) -> Dataset:
    """Build the dataset named by ``cfg.name`` (a validated ``dataset`` config group)."""
    return DATASETS[cfg.name].builder(cfg)
