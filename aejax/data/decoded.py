"""Decoded splits kept next to a prepared TFDS dataset, so that a run loads arrays instead of
decoding every record again.

Reading a split through a TFDS data source parses each record in Python: 3.5-5 s for
Fashion-MNIST's 70,000 records on this project's 2-core machine, most of a run's start-up. The
first run saves the decoded arrays as ``.npy`` files in ``<prepared dataset>/aejax-decoded/``;
later runs read them (55 MB for Fashion-MNIST: a few tens of milliseconds from the page cache).
Arrays are stored as the records hold them (uint8 pixels stay uint8, a quarter of float32's
size); the caller scales them as it scales records.

The copy is tied to the files it was decoded from: ``index.json`` records the name, size and
modification time of every file of the prepared dataset (and what was read from it), and any
difference, such as a dataset prepared again or a damaged file, means decoding again. Files
are written under temporary names and renamed, the index last, so a reader never sees a half
written copy; a folder that cannot be written (a shared, read-only dataset) goes without one.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

FOLDER = "aejax-decoded"
FORMAT = 1  # bump when the files' layout changes: older copies are then decoded again

log = logging.getLogger(__name__)


def fingerprint(prepared: Path) -> list[list[Any]]:
    """``[name, size, mtime_ns]`` of each file of the prepared dataset (the copy's folder excluded)."""
    files = []
    for path in prepared.iterdir():
        if path.is_file():
            stat = path.stat()
            files.append([path.name, stat.st_size, stat.st_mtime_ns])
    return sorted(files)


def _index(prepared: Path, what: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "what": what, "files": fingerprint(prepared)}


def load(prepared: Path, what: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The saved arrays when they are current for ``prepared`` and ``what``; None otherwise."""
    folder = prepared / FOLDER
    try:
        index = json.loads((folder / "index.json").read_text())
        if index != {**_index(prepared, what), "arrays": index.get("arrays")}:
            return None
        return {name: np.load(folder / f"{name}.npy") for name in index["arrays"]}
    except (OSError, ValueError, TypeError):  # absent, half-deleted or damaged: decode again
        return None


def save(prepared: Path, what: dict[str, Any], arrays: dict[str, np.ndarray]) -> bool:
    """Save ``arrays`` as the current copy; False (and a debug line) when the folder is not writable."""
    folder = prepared / FOLDER
    try:
        folder.mkdir(exist_ok=True)
        for name, array in arrays.items():
            write_atomic(folder / f"{name}.npy", lambda f, a=array: np.save(f, a, allow_pickle=False))
        index = {**_index(prepared, what), "arrays": sorted(arrays)}
        write_atomic(folder / "index.json", lambda f: f.write(json.dumps(index).encode()))
        return True
    except OSError as e:
        log.debug("no decoded copy of %s (%s); it is decoded on every load", prepared, e)
        return False


def write_atomic(path: Path, write: Callable) -> None:
    """Write through a temporary file in the same folder (created with the umask's permissions, as
    any file) and rename it over ``path``: a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cached(prepared: Path | None, what: dict[str, Any],
           decode: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``decode()`` returns for the prepared dataset in ``prepared``, from the saved copy
    when it is current; otherwise decoded and saved. ``what`` names what is read (keys, splits)."""
    if prepared is None:
        return decode()
    arrays = load(prepared, what)
    if arrays is None:
        arrays = decode()
        save(prepared, what, arrays)
    return arrays
