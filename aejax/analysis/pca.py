"""The PCA baseline: a basis fitted on the training split, the test split's error through it,
and a cache beside the data so that it is computed once per dataset split and k.

Fitting is the costly part (Fashion-MNIST: the 784x784 scatter matrix of 60,000 examples in
float64, ~1 s on 2 cores); projecting the test split through a fitted basis takes a few tenths
of a second. A dataset whose loader gives it a ``cache_dir`` (the MNIST family and TFDS
datasets: the folder of their decoded copy) keeps each basis there as ``pca-<split>-k<k>.npz``,
with what ``baseline`` derives from it and the test split alone (the test error and the test
split's variance), so that a later run reads both numbers instead of computing them.
A saved basis is used only when its key matches the data it is asked for (the rows' number and
shape, a hash of a strided sample of them, and the decoded copy's index, which names the
prepared files' sizes and times) and the checksum of its arrays matches; anything else (another
or re-prepared dataset, a damaged or half-written file) is fitted again and saved over it. The
test numbers are used under the same rules, with the test split's own key and checksum: a
file whose basis is current but whose test numbers are not has them computed again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the file's layout or the fit changes: older files are then fitted again
# (the test numbers are optional fields beside the basis, and the chunked scatter matrix gives the
# same basis to rounding, so files of either kind stay valid)
CHUNK_ROWS = 4096  # examples converted to float64 at a time while the scatter matrix is summed
SAMPLE_ROWS = 512  # rows hashed into the key (strided over the split)


@dataclass(frozen=True)
class Basis:
    """The training split's mean ``[features]`` and its top ``k`` principal directions
    ``[k, features]`` (orthonormal rows), float64."""
    mean: np.ndarray
    components: np.ndarray


def fit(x_train: np.ndarray, k: int) -> Basis:
    """The top ``k`` principal components of ``x_train`` (examples flattened), in float64.

    With more training examples than features the components are the eigenvectors of the
    ``[features, features]`` scatter matrix, summed over chunks of ``CHUNK_ROWS`` centred
    examples (4x faster than the SVD of the centered data on Fashion-MNIST, and no float64 copy
    of the whole split), else the centered data's SVD.
    """
    x = np.asarray(x_train).reshape(len(x_train), -1)
    mean = x.mean(axis=0, dtype=np.float64)
    if x.shape[0] > x.shape[1]:
        scatter = np.zeros((x.shape[1], x.shape[1]))
        for start in range(0, len(x), CHUNK_ROWS):
            centered = x[start:start + CHUNK_ROWS] - mean
            scatter += centered.T @ centered
        _, vectors = np.linalg.eigh(scatter)  # eigenvalues ascending
        components = np.ascontiguousarray(vectors[:, ::-1][:, :k].T)
    else:
        components = np.linalg.svd(x - mean, full_matrices=False)[2][:k]  # [k, features], orthonormal rows
    return Basis(mean, components)


def errors(basis: Basis, x: np.ndarray) -> np.ndarray:
    """Per-example mean squared error of ``x`` reconstructed from its projection on ``basis``, float64."""
    centered = np.asarray(x, np.float64).reshape(len(x), -1) - basis.mean
    residual = centered - (centered @ basis.components.T) @ basis.components
    return np.mean(residual**2, axis=1)


def test_mse(basis: Basis, x_test: np.ndarray) -> float:
    """Mean squared error, per value and example, of ``x_test`` reconstructed from its projection on ``basis``."""
    return float(np.mean(errors(basis, x_test)))


def key(x: np.ndarray, k: int, split: str, cache_dir: Path) -> str:
    """What a saved basis must have been fitted on: the split's name, rows, shape and dtype, a hash
    of a strided sample of its rows, ``k``, and the cache folder's ``index.json`` (the decoded
    copy's record of the prepared files)."""
    index = cache_dir / "index.json"
    sample = np.ascontiguousarray(x[:: max(1, len(x) // SAMPLE_ROWS)])
    parts = {"format": FORMAT, "split": split, "k": k, "shape": list(x.shape), "dtype": str(x.dtype),
             "sample": hashlib.blake2b(sample.tobytes(), digest_size=16).hexdigest(),
             "index": index.read_text() if index.is_file() else None}
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16).hexdigest()


def _checksum(*arrays: np.ndarray) -> str:
    return hashlib.blake2b(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays), digest_size=16).hexdigest()


def path(cache_dir: Path, split: str, k: int) -> Path:
    return cache_dir / f"pca-{split}-k{k}.npz"


def _read(file: Path) -> Optional[dict[str, np.ndarray]]:
    try:
        with np.load(file, allow_pickle=False) as saved:
            return dict(saved)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # absent, truncated, not an npz: fit again
        return None


def _basis(saved: Optional[dict[str, np.ndarray]], file: Path, expected_key: str, features: int,
           k: int) -> Optional[Basis]:
    """The basis of a read file when it is whole and was fitted on the data ``expected_key`` names."""
    try:
        if saved is None or str(saved["key"]) != expected_key:
            return None
        basis, checksum = Basis(saved["mean"], saved["components"]), str(saved["checksum"])
    except KeyError:
        return None
    shapes = (basis.mean.shape == (features,) and basis.components.ndim == 2
              and basis.components.shape[1] == features and basis.components.shape[0] <= k)
    if not shapes or basis.mean.dtype != np.float64 or checksum != _checksum(basis.mean, basis.components):
        log.warning("the saved PCA basis %s is damaged; fitting it again", file)
        return None
    return basis


def save(file: Path, expected_key: str, basis: Basis, test: Optional[dict[str, np.ndarray]] = None) -> None:
    """Write the basis (and ``test``, ``_test_numbers``'s record) through a temporary file and
    rename it; a folder that cannot be written keeps none."""
    from aejax.data.decoded import write_atomic

    arrays = {"key": np.array(expected_key), "mean": basis.mean, "components": basis.components,
              "checksum": np.array(_checksum(basis.mean, basis.components)), **(test or {})}
    try:
        write_atomic(file, lambda f: np.savez(f, **arrays))
    except OSError as e:
        log.debug("PCA basis not kept in %s (%s)", file.parent, e)


def _open(x_train: np.ndarray, k: int, cache_dir: Path, split: str):
    """``(file, its expected key, what it holds (None: nothing readable), its basis when current)``."""
    expected, file = key(x_train, k, split, cache_dir), path(cache_dir, split, k)
    saved = _read(file)
    return file, expected, saved, _basis(saved, file, expected, int(np.prod(x_train.shape[1:])), k)


def cached_fit(x_train: np.ndarray, k: int, cache_dir: Optional[Path], split: str = "train") -> tuple[Basis, bool]:
    """``(basis, whether it came from the cache)``: from ``cache_dir`` when a current one is saved
    there, else fitted (and saved there when ``cache_dir`` is given)."""
    if cache_dir is None:
        return fit(x_train, k), False
    file, expected, _, basis = _open(x_train, k, cache_dir, split)
    if basis is not None:
        return basis, True
    basis = fit(x_train, k)
    save(file, expected, basis)
    return basis, False


def variance(x: np.ndarray) -> float:
    """The variance of each value over the examples, averaged over the values (float32 for float32 data)."""
    return float(np.var(x, axis=0).mean())


def _test_numbers(basis: Basis, x_test: np.ndarray, test_key: str) -> dict[str, np.ndarray]:
    numbers = np.array([test_mse(basis, x_test), variance(x_test)])
    return {"test_key": np.array(test_key), "test_numbers": numbers,
            "test_checksum": np.array(_checksum(np.array(test_key), numbers))}


def baseline(x_train: np.ndarray, x_test: np.ndarray, k: int, cache_dir: Optional[Path],
             split: str = "train") -> tuple[float, float, bool]:
    """``(test MSE, variance(x_test), whether both came from the cache)`` of the PCA baseline with
    ``k`` components fitted on ``x_train``: read from ``cache_dir`` when that holds a current
    basis with numbers for this test split, else computed (the basis read or fitted as by
    ``cached_fit``) and saved there with the basis."""
    if cache_dir is None:
        return test_mse(fit(x_train, k), x_test), variance(x_test), False
    file, expected, saved, basis = _open(x_train, k, cache_dir, split)
    test_key = key(x_test, k, "test", cache_dir)
    if basis is not None and "test_numbers" in saved:
        numbers = saved["test_numbers"]
        if (str(saved.get("test_key")) == test_key and numbers.shape == (2,) and numbers.dtype == np.float64
                and str(saved.get("test_checksum")) == _checksum(np.array(test_key), numbers)):
            return float(numbers[0]), float(numbers[1]), True
    basis = basis if basis is not None else fit(x_train, k)
    test = _test_numbers(basis, x_test, test_key)
    save(file, expected, basis, test)
    return float(test["test_numbers"][0]), float(test["test_numbers"][1]), False
