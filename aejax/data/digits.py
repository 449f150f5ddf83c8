"""scikit-learn's 8x8 digits (1797 images, shipped with scikit-learn: no download)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig

from aejax.data.base import Dataset
from aejax.data.registry import DATASETS


@dataclass
class DigitsConfig:
    kind: str = "digits"
    name: str = "digits"
    test_size: float = 0.2
    split_seed: int = 42  # the split is part of the dataset, not of the training seed


@DATASETS.register("digits", DigitsConfig)
def digits(cfg: DictConfig) -> Dataset:
    """Pixels scaled by 1/16 to [0, 1], images as 8x8x1, a stratified train/test split."""
    from sklearn.datasets import load_digits  # scikit-learn: ~1.2 s to import, only when used
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    y = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=cfg.test_size, stratify=y, random_state=cfg.split_seed
    )
    return Dataset("digits", x_train, y_train, x_test, y_test,
                   class_names=tuple(str(d) for d in range(10)), unit_range=True)
