"""The dataset contract: what every dataset gives the training loop."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol, Union

import numpy as np


class ArraySource(Protocol):
    """Random access to examples without holding them all: what streaming reads from.

    A numpy array is one; so is ``aejax.data.tfds_source.ImageRecords`` over a TFDS data source.
    ``source[indices]`` returns float32 examples ``[len(indices), *shape]``.
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    def __len__(self) -> int: ...

    def __getitem__(self, indices: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Dataset:
    """Float32 examples (flat vectors or HxWxC images) and int labels, split in train and test.

    Labels are kept for colouring latent plots and for evaluation; training never sees them. A
    dataset may have none (``y_train`` and ``y_test`` None, ``class_names`` empty: ``labeled`` is
    False); what needs labels (probe and kNN accuracy, class colours, anomaly scores) is then skipped.
    ``unit_range`` says the values lie in [0, 1] (pixels), where a sigmoid output and BCE apply.
    ``x_train`` is an array, or an ``ArraySource`` read on demand when the split is streamed
    (``y_train`` may then be None); the test split is always in memory. ``cache_dir``: a folder
    beside the data where what is computed from it may be kept for later runs (the PCA baseline's
    basis, keyed by the data it was computed from); None keeps nothing. Loaders set it for data
    read from files (a subset or a changed copy of a dataset is a new Dataset without one).
    """

    name: str
    x_train: Union[np.ndarray, ArraySource]
    y_train: Optional[np.ndarray]
    x_test: np.ndarray
    y_test: Optional[np.ndarray]
    class_names: tuple[str, ...]
    unit_range: bool
    # the true generating directions, [features, values] (unit norm), where the data is made of known
    # features (dataset=superposition, or `features` in an .npz): sparse dictionaries are scored against them
    ground_truth: Optional[np.ndarray] = None
    cache_dir: Optional[Path] = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != np.float32:
                raise TypeError(f"{self.name}: x_{split} must be float32, got {x.dtype}")
            if y is not None and len(x) != len(y):
                raise ValueError(f"{self.name}: {len(x)} {split} examples but {len(y)} labels")
        if tuple(self.x_train.shape[1:]) != tuple(self.x_test.shape[1:]):
            raise ValueError(f"{self.name}: train and test examples differ in shape")

    @property
    def labeled(self) -> bool:
        """Whether the test split has labels (the training split's may still be unread: streamed)."""
        return self.y_test is not None

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return len(self.x_train)

    @property
    def train_bytes(self) -> int:
        return self.num_train * int(np.prod(self.example_shape)) * 4
