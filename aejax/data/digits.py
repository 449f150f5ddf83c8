"""scikit-learn's 8x8 digits (1797 images, shipped with scikit-learn: no download).

The split is scikit-learn's stratified ``train_test_split``; importing scikit-learn takes 1.2-2 s,
more than the rest of a warm default run's start, so the first run keeps the split in
``$XDG_CACHE_HOME/aejax/digits/`` (``~/.cache``) and later runs read it there (a few ms) without
importing scikit-learn. The copy is tied to the split's settings, scikit-learn's version and the
size and time of its data file; any difference, or a damaged copy, means splitting again. A
cache that cannot be written goes without a copy.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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


log = logging.getLogger(__name__)
NAMES = ("x_train", "y_train", "x_test", "y_test")


def _split(test_size: float, split_seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits  # scikit-learn: 1.2-2 s to import, only when used
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    y = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, stratify=y, random_state=split_seed)
    return x_train, y_train, x_test, y_test


def _key(test_size: float, split_seed: int) -> Optional[dict]:
    """What the cached split depends on (None: scikit-learn's data file is not where expected)."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not data.is_file():
        return None
    stat = data.stat()
    return {"test_size": test_size, "split_seed": split_seed, "sklearn": importlib.metadata.version("scikit-learn"),
            "data": [stat.st_size, stat.st_mtime_ns]}


def cached_split(test_size: float, split_seed: int, cache: Path) -> tuple[tuple[np.ndarray, ...], bool]:
    """``(x_train, y_train, x_test, y_test)`` and whether they came from ``cache``."""
    key = _key(test_size, split_seed)
    file = cache / f"split-{test_size:g}-{split_seed}.npz"
    if key is not None and file.is_file():
        try:
            with np.load(file) as f:
                if json.loads(str(f["key"])) == key:
                    return tuple(f[name] for name in NAMES), True
        except Exception as e:  # damaged: split again, and write it again
            log.warning("the cached digits split %s cannot be read (%s); splitting again", file, e)
    arrays = _split(test_size, split_seed)
    if key is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.stem}.{uuid.uuid4().hex}.npz")
            np.savez(tmp, key=json.dumps(key), **dict(zip(NAMES, arrays)))
            os.replace(tmp, file)  # a reader never sees half a file
        except OSError as e:
            log.info("the digits split is not cached (%s)", e)
    return arrays, False


def cache_dir() -> Path:
    from aejax.startup import cache_root

    return cache_root() / "digits"


@DATASETS.register("digits", DigitsConfig)
def digits(cfg: DictConfig) -> Dataset:
    """Pixels scaled by 1/16 to [0, 1], images as 8x8x1, a stratified train/test split."""
    (x_train, y_train, x_test, y_test), _ = cached_split(float(cfg.test_size), int(cfg.split_seed), cache_dir())
    return Dataset("digits", x_train, y_train, x_test, y_test,
                   class_names=tuple(str(d) for d in range(10)), unit_range=True)
