"""The dataset contract: what every dataset gives the training loop."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """An in-memory dataset: float32 examples (flat vectors or HWC images) and int labels.

    Labels are kept for colouring latent plots and for evaluation; training never sees them.
    ``unit_range`` says the values lie in [0, 1] (pixels), where a sigmoid output and BCE apply.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    unit_range: bool

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.float32:
                raise TypeError(f"{self.name}: x_{split} must be float32, got {x.dtype}")
            if len(x) != len(y):
                raise ValueError(f"{self.name}: {len(x)} {split} examples but {len(y)} labels")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"{self.name}: train and test examples differ in shape")

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return len(self.x_train)
