"""Your own arrays as a dataset: ``dataset=array dataset.path=FILE`` (activations, embeddings, sensor data).

- ``FILE.npy``: one array ``[N, ...]`` (no labels), split into train and test by
  ``dataset.test_fraction`` after a shuffle seeded by ``dataset.split_seed``.
- ``FILE.npz``: ``x_train`` and ``x_test`` (``[N, ...]``, the same example shape), optionally
  ``y_train`` and ``y_test`` (one label per example: integer classes >= 0, or strings) and
  ``class_names``. The file's own split is used; ``test_fraction`` and ``split_seed`` are not.

Both go through ``as_dataset``, which other code calls with arrays it already holds. Values become
float32; ``unit_range`` is whether all of them lie in [0, 1], so ``model.output=auto`` picks a
sigmoid and BCE is allowed exactly as for pixel data. Without labels everything trains; what needs
labels (probe and kNN accuracy, class colours, ``eval.anomaly``) is skipped or refused up front.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from omegaconf import MISSING, DictConfig, OmegaConf

from aejax.data.base import Dataset
from aejax.data.registry import DATASETS
from aejax.errors import ConfigError, DataError

KEYS = ("x_train", "x_test", "y_train", "y_test", "class_names", "features")
SUFFIXES = (".npy", ".npz")


def _stem(*, _parent_: Any) -> str:
    """``dataset.name``'s default (``${aejax.stem:}``): the stem of ``dataset.path``."""
    if OmegaConf.is_missing(_parent_, "path") or _parent_.get("path") is None:
        return "array"
    return Path(str(_parent_.path)).stem or "array"


if not OmegaConf.has_resolver("aejax.stem"):
    OmegaConf.register_new_resolver("aejax.stem", _stem)


@dataclass
class ArrayConfig:
    kind: str = "array"
    name: Optional[str] = None  # default (conf/dataset/array.yaml): the file's stem
    path: str = MISSING  # a .npy ([N, ...], split here) or a .npz (x_train, x_test[, y_train, y_test, class_names])
    test_fraction: float = 0.2  # .npy only: the share of examples held out as the test split
    split_seed: int = 0  # .npy only: the seed of the shuffle before the split


def _fail(where: str, message: str) -> DataError:
    return DataError(f"{where}: {message}")


def _examples(value: Any, key: str, where: str) -> np.ndarray:
    """``value`` as float32 ``[N, ...]``, or a DataError naming ``key``."""
    try:
        x = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise _fail(where, f"{key} is not an array ({e})") from None
    if x.dtype.kind not in "biuf":
        raise _fail(where, f"{key} must be numeric (bool, integer or float); got dtype {x.dtype}")
    if x.ndim < 2:
        raise _fail(where, f"{key} must be [N, ...] with one row per example; got shape {x.shape} "
                           "(one feature per example: reshape to [N, 1])")
    if len(x) < 2:
        raise _fail(where, f"{key} has {len(x)} example(s); each split needs at least 2")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _fail(where, f"{key} has {int(bad.sum())} NaN/Inf value(s) as float32 (the first at index {first}); "
                           "remove or impute them")
    return x


def _labels(value: Any, key: str, n: int, where: str) -> np.ndarray:
    y = np.asarray(value)
    if y.ndim != 1 or len(y) != n:
        raise _fail(where, f"{key} must hold one label per example, shape ({n},); got shape {y.shape}")
    if y.dtype.kind in "US":
        return y
    if y.dtype.kind not in "biuf":
        raise _fail(where, f"{key} must be integer classes or strings; got dtype {y.dtype}")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and np.all(y == np.round(y))):
        raise _fail(where, f"{key} must be integer classes; got non-integer values")
    if (y < 0).any():
        raise _fail(where, f"{key} must be classes >= 0; got {y.min()}")
    return y.astype(np.int32)


def as_dataset(obj: Any, name: str, *, where: Optional[str] = None) -> Dataset:
    """A ``Dataset`` from what a user holds: a ``Dataset`` (returned as it is), or a mapping with
    ``x_train``, ``x_test`` (numpy or array-likes ``[N, ...]``) and optionally ``y_train``,
    ``y_test`` (integer classes >= 0 or strings; both or neither) and ``class_names``.

    Examples become float32; ``unit_range`` says all values lie in [0, 1]. Raises a ``DataError``
    naming the key (and ``where``, default ``name``) for anything that cannot train.
    """
    if isinstance(obj, Dataset):
        return obj
    where = where or name
    if not isinstance(obj, Mapping):
        raise _fail(where, f"expected a Dataset or a mapping with x_train and x_test; got {type(obj).__name__}")
    unknown = sorted(str(k) for k in obj if k not in KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)}; expected {', '.join(KEYS)}")
    missing = [k for k in ("x_train", "x_test") if k not in obj or obj[k] is None]
    if missing:
        raise _fail(where, f"no {' or '.join(missing)}: give x_train and x_test (and optionally y_train, y_test, "
                           "class_names)")
    x_train, x_test = _examples(obj["x_train"], "x_train", where), _examples(obj["x_test"], "x_test", where)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise _fail(where, f"x_train's examples have shape {x_train.shape[1:]} but x_test's {x_test.shape[1:]}")
    given = [k for k in ("y_train", "y_test") if obj.get(k) is not None]
    if len(given) == 1:
        other = "y_test" if given == ["y_train"] else "y_train"
        raise _fail(where, f"{given[0]} without {other}: give labels for both splits or for neither")
    names = obj.get("class_names")
    names = () if names is None else tuple(str(n) for n in np.asarray(names).ravel().tolist())
    y_train = y_test = None
    if given:
        y_train = _labels(obj["y_train"], "y_train", len(x_train), where)
        y_test = _labels(obj["y_test"], "y_test", len(x_test), where)
        if (y_train.dtype.kind in "US") != (y_test.dtype.kind in "US"):
            raise _fail(where, "y_train and y_test must both be integer classes or both strings")
        if y_train.dtype.kind in "US":  # class names from the strings, in sorted order
            if names:
                raise _fail(where, "class_names cannot be given with string labels (the strings are the names)")
            classes, codes = np.unique(np.concatenate([y_train, y_test]), return_inverse=True)
            names = tuple(str(c) for c in classes)
            y_train, y_test = codes[:len(y_train)].astype(np.int32), codes[len(y_train):].astype(np.int32)
        top = int(max(y_train.max(), y_test.max()))
        if names and top >= len(names):
            raise _fail(where, f"class_names has {len(names)} names but the labels go up to {top}")
        names = names or tuple(str(i) for i in range(top + 1))  # integer labels without names: their numbers
    elif names:
        raise _fail(where, "class_names without y_train and y_test: there are no labels to name")
    unit = bool(min(x_train.min(), x_test.min()) >= 0.0 and max(x_train.max(), x_test.max()) <= 1.0)
    features = obj.get("features")  # ground-truth directions [features, values], for sparse dictionaries
    if features is not None:
        features = np.asarray(features, np.float32)
        values = int(np.prod(x_train.shape[1:]))
        if features.ndim != 2 or features.shape[1] != values or not np.all(np.isfinite(features)) \
                or np.any(np.linalg.norm(features, axis=1) == 0):
            raise _fail(where, f"features must be nonzero finite directions [features, {values}] (one value per "
                               f"value of an example); got shape {features.shape}")
    return Dataset(name, x_train, y_train, x_test, y_test, names, unit_range=unit, ground_truth=features)


def split(x: Any, name: str, test_fraction: float, seed: int, *, where: Optional[str] = None) -> Dataset:
    """One unlabeled array ``[N, ...]`` as a Dataset: a seeded shuffle, then ``round(N * test_fraction)``
    examples for the test split and the rest for training."""
    where = where or name
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError("dataset.test_fraction", f"must be in (0, 1), got {test_fraction}")
    x = _examples(x, "the array", where)
    n_test = int(round(len(x) * test_fraction))
    if n_test < 2 or len(x) - n_test < 2:
        raise ConfigError("dataset.test_fraction", f"{test_fraction} of the {len(x)} examples of {where} leaves "
                                                   f"{n_test} test and {len(x) - n_test} training examples; "
                                                   "each split needs at least 2")
    order = np.random.default_rng(seed).permutation(len(x))
    return as_dataset({"x_train": x[order[n_test:]], "x_test": x[order[:n_test]]}, name, where=where)


def _read(path: Path) -> Any:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as e:  # object arrays (pickled) and the like
        raise DataError(f"{path}: cannot read it as numeric arrays ({str(e).splitlines()[0]}); save numeric "
                        "arrays (np.save / np.savez with a numeric dtype)") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read it ({e}); is it a file written by np.save / np.savez?") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        try:
            return {k: loaded[k] for k in loaded.files}
        except ValueError as e:
            raise DataError(f"{path}: an array cannot be read as numbers ({str(e).splitlines()[0]})") from None


def load_path(path: Any, name: Optional[str] = None, test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """The Dataset in a ``.npy`` or ``.npz`` file (see the module's docstring); ``name`` defaults to the stem."""
    if path is None or str(path) == "":
        raise ConfigError("dataset.path", "needs a .npy or .npz file: dataset.path=FILE")
    path = Path(str(path)).expanduser()
    if path.is_dir():
        raise ConfigError("dataset.path", f"{path} is a directory; point to a .npy or .npz file")
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError("dataset.path", f"{path}: unknown suffix {path.suffix or '(none)'!r}; expected a .npy "
                                          "(one array [N, ...]) or a .npz (x_train, x_test[, y_train, y_test])")
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise ConfigError("dataset.path", f"no file {path}{where}")
    name = name or path.stem
    arrays = _read(path)
    if path.suffix.lower() == ".npy":
        if not isinstance(arrays, np.ndarray):
            raise DataError(f"{path}: a .npy must hold one array")
        return split(arrays, name, test_fraction, split_seed, where=str(path))
    if not isinstance(arrays, dict):
        raise DataError(f"{path}: a .npz must hold named arrays (np.savez(path, x_train=..., x_test=...))")
    return as_dataset(arrays, name, where=str(path))


@DATASETS.register("array", ArrayConfig)
def array_dataset(cfg: DictConfig) -> Dataset:
    return load_path(cfg.path, cfg.name, cfg.test_fraction, cfg.split_seed)
