from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig

from aejax.data.base import Dataset
from aejax.registry import Registry

# A dataset option picks its loader with `kind`; `name` is the dataset's own name (what runs
# are grouped by), so one loader serves many datasets (kind: tfds, name: cifar10).
DATASETS: Registry[Callable[[DictConfig], Dataset]] = Registry("dataset", key="kind")


def load_dataset(cfg: DictConfig) -> Dataset:
    """Build the dataset a validated ``dataset`` config group describes."""
    return DATASETS[cfg.kind].builder(cfg)
