"""TFDS-backed datasets: the MNIST family (no TensorFlow needed) and any built-in TFDS dataset.

Both read random-access ``tfds.data_source``s. Splits that fit in host memory are read once
into arrays (the feed then puts them on the device or streams them); a larger training split
stays an ``ImageRecords`` source that the streaming feed reads on demand. Pixels are scaled to
[0, 1]; labels and class names are kept for plots and evaluation. Decoding the records is slow
(seconds), so the splits read whole are kept decoded next to the prepared files (``decoded``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from omegaconf import DictConfig

from aejax.data import decoded
from aejax.data.base import Dataset
from aejax.data.registry import DATASETS
from aejax.errors import DataError

READ_BLOCK = 8192  # records per read when a split is read whole
HOST_MEMORY_MAX = 2 * 2**30  # a training split larger than this (as float32) is streamed from its source


def to_float(images: np.ndarray) -> np.ndarray:
    """Images as float32: uint8 pixels scaled to [0, 1], anything else converted as it is."""
    if images.dtype == np.uint8:
        return np.divide(images, np.float32(255), dtype=np.float32)  # one pass, the values of astype + divide
    return images.astype(np.float32, copy=False)


class ImageRecords:
    """A data source's images as float32, scaled to [0, 1] when stored as uint8 (an ``ArraySource``)."""

    def __init__(self, source: Any, image_key: str = "image"):
        self.source, self.key = source, image_key
        first = np.asarray(source[0][image_key])
        self.pixels = first.dtype == np.uint8  # 0..255, scaled to [0, 1]
        self.shape = (len(source), *first.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        records = self.source.__getitems__([int(i) for i in np.ravel(indices)])
        images = to_float(np.stack([np.asarray(r[self.key]) for r in records]))
        return images.reshape(*np.shape(indices), *self.shape[1:])


def read_stored(source: Any, image_key: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """A whole split in one pass, as stored: images in their own dtype (uint8 pixels) and int32 labels."""
    first = np.asarray(source[0][image_key])
    x = np.empty((len(source), *first.shape), first.dtype)
    labels = np.empty(len(source), np.int32)
    for start in range(0, len(source), READ_BLOCK):
        records = source.__getitems__(list(range(start, min(start + READ_BLOCK, len(source)))))
        x[start:start + len(records)] = np.stack([np.asarray(r[image_key]) for r in records])
        labels[start:start + len(records)] = [int(r[label_key]) for r in records]
    return x, labels


def read_all(source: Any, image_key: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """A whole split in one pass: float32 images in [0, 1] and int labels."""
    x, labels = read_stored(source, image_key, label_key)
    return to_float(x), labels


def _damaged(name: str, error: Exception, fix: str) -> DataError:
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return DataError(f"the prepared files of {name} are damaged ({first}); {fix}")


def _dataset(name: str, sources: dict[str, Any], image_key: str, label_key: str, class_names: tuple[str, ...],
             train_split: str = "train", test_split: str = "test", fix: str = "",
             prepared: Optional[Path] = None) -> Dataset:
    """Splits that fit in host memory are read once; a larger training split stays a source, read on demand.
    With ``prepared`` (the local folder of the prepared dataset) the decoded splits are kept there
    (``aejax.data.decoded``) and later loads skip decoding. A damaged cache (array_record reports a
    corrupted block) is a DataError that says ``fix``."""
    try:
        return _read(name, sources, image_key, label_key, class_names, train_split, test_split, prepared)
    except RuntimeError as e:
        if "orrupt" in str(e) or "Riegeli" in str(e):
            raise _damaged(name, e, fix) from None
        raise


def _read(name: str, sources: dict[str, Any], image_key: str, label_key: str, class_names: tuple[str, ...],
          train_split: str, test_split: str, prepared: Optional[Path]) -> Dataset:
    train = ImageRecords(sources[train_split], image_key)
    in_memory = len(train) * int(np.prod(train.shape[1:])) * 4 <= HOST_MEMORY_MAX
    splits = {"train": train_split, "test": test_split} if in_memory else {"test": test_split}

    def decode() -> dict[str, np.ndarray]:
        arrays = {}
        for split, source_split in splits.items():
            arrays[f"x_{split}"], arrays[f"y_{split}"] = read_stored(sources[source_split], image_key, label_key)
        return arrays

    arrays = decoded.cached(prepared, {"image_key": image_key, "label_key": label_key, **splits}, decode)
    if in_memory:
        x_train, y_train = to_float(arrays["x_train"]), arrays["y_train"]
    else:
        x_train, y_train = train, None  # streamed; its labels are not read
    return Dataset(name, x_train, y_train, to_float(arrays["x_test"]), arrays["y_test"], class_names,
                   unit_range=train.pixels, cache_dir=prepared / decoded.FOLDER if prepared is not None else None)


def _local_folder(path: Any) -> Optional[Path]:
    """``path`` (a TFDS data dir, possibly remote) as a local folder, or None."""
    local = Path(os.fspath(path))
    return local if "://" not in str(path) and local.is_dir() else None


@dataclass
class MNISTFamilyConfig:
    kind: str = "mnist_family"
    name: str = "fashion_mnist"  # mnist | fashion_mnist | kmnist
    source_dir: Optional[str] = None  # a folder with the four IDX .gz files (else known places, else download)
    data_dir: Optional[str] = None  # where the prepared cache lives (TFDS's default when null)
    base_url: Optional[str] = None  # a mirror to download from (the upstream one when null)
    download: bool = True


@DATASETS.register("mnist_family", MNISTFamilyConfig)
def mnist_family(cfg: DictConfig) -> Dataset:
    from aejax.data import mnist_family as family

    sources = family.data_sources(cfg.name, cfg.data_dir, cfg.source_dir, cfg.base_url, cfg.download)
    builder = family.builder(cfg.name, cfg.data_dir)
    folder = Path(builder.data_dir_root) / family.tfds_name(cfg.name)
    fix = f"delete {folder} and prepare it again: aejax-data prepare {cfg.name}" + (
        f" --data-dir {cfg.data_dir}" if cfg.data_dir else "")
    return _dataset(cfg.name, sources, "image", "label", family.class_names(cfg.name), fix=fix,
                    prepared=_local_folder(builder.data_dir))


@dataclass
class TFDSConfig:
    kind: str = "tfds"
    name: str = "???"  # any TFDS dataset name, e.g. cifar10
    image_key: str = "image"
    label_key: str = "label"
    train_split: str = "train"
    test_split: str = "test"
    data_dir: Optional[str] = None
    download: bool = True


@DATASETS.register("tfds", TFDSConfig)
def tfds_dataset(cfg: DictConfig) -> Dataset:
    """Any built-in TFDS dataset, prepared as array_record (needs TensorFlow: ``pip install "aejax[tf]"``)."""
    try:
        import tensorflow  # noqa: F401  (TFDS needs it to prepare its built-in datasets)
    except ImportError:
        raise DataError(f"dataset=tfds ({cfg.name}) needs TensorFlow to prepare TFDS's built-in datasets: "
                        f"pip install \"aejax[tf]\". The MNIST family (dataset=mnist, fashion_mnist, kmnist) "
                        f"needs no TensorFlow.") from None
    import tensorflow_datasets as tfds

    builder = tfds.builder(cfg.name, data_dir=cfg.data_dir, file_format="array_record")
    if not builder.is_prepared():
        if not cfg.download:
            raise DataError(f"{cfg.name} is not prepared in {builder.data_dir} and dataset.download=false")
        builder.download_and_prepare(file_format="array_record")
    sources = builder.as_data_source()
    names = tuple(builder.info.features[cfg.label_key].names)
    return _dataset(cfg.name, sources, cfg.image_key, cfg.label_key, names, cfg.train_split, cfg.test_split,
                    fix=f"delete {builder.data_dir} and run again to prepare it anew",
                    prepared=_local_folder(builder.data_dir))
