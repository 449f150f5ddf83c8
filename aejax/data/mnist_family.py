"""MNIST, Fashion-MNIST and Kuzushiji-MNIST as TFDS datasets that need no TensorFlow.

TFDS's own ``mnist``/``fashion_mnist``/``kmnist`` builders PNG-encode their images and gunzip
through ``tf.io``, so without TensorFlow they cannot be prepared. The builders here store the
pixels as plain ``uint8`` tensors in ``array_record`` files, gunzip with Python's ``gzip`` and
parse the IDX format themselves; TFDS does the rest (caching, split bookkeeping, random-access
``data_source`` reading).

They are registered as ``aejax_mnist``, ``aejax_fashion_mnist`` and ``aejax_kmnist``: TFDS keeps
one registry of builder names and raises ``ValueError`` on a second class with a name it already
has, so reusing ``mnist`` would break as soon as TFDS's own ``mnist`` module got imported (and
would also pick up TFDS's legacy ``url_checksums/mnist.txt``). Prepared data lives in
``<data_dir>/aejax_<name>/1.0.0/``.

Where the raw IDX ``.gz`` files come from, in order:

1. ``source_dir`` when given (a directory holding the four files named in ``FILES``);
2. a directory known to hold them, when it exists and no ``base_url`` was given (Debian's
   ``dataset-fashion-mnist`` package installs Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``);
3. a download from ``base_url`` (default: the upstream mirror TFDS itself uses) through TFDS's
   download manager, download only: no extraction, which would need TensorFlow.

Every file is checked against ``CHECKSUMS`` before anything is written; a mismatch raises
``DataError`` and leaves no prepared dataset behind (TFDS writes into a temporary directory
that it renames only on success), and a bad download is deleted so that the next call fetches
it again. Nothing ever waits on an unreachable network: the server is probed with a short
timeout before TFDS's downloader (which retries with back-off for minutes) is called.

Records keep the order of the IDX files (``disable_shuffling``): record ``i`` of a split is
example ``i`` of the upstream file.

The files' names, checksums and sources, and the IDX parser, are in ``aejax.data.mnist_files``;
this module holds the TFDS builders and the public API (``prepare``, ``data_sources``, ...).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import registered as _tfds_registered

from aejax.data.mnist_files import (  # noqa: F401  (the raw files' facts, also imported from here)
    ALL_FILES, CHECKSUMS, CLASS_NAMES, DEFAULT_BASE_URLS, DESCRIPTIONS, FAMILY, FILES, IMAGE_SHAPE, KNOWN_SOURCE_DIRS,
    NUM_CLASSES, NUM_EXAMPLES, PROBE_TIMEOUT_S, check_name, class_names, file_urls, how_to_fix, local_dir, parse_idx,
    probe_server, read_gz, tfds_name, verify)
from aejax.errors import DataError

SPLITS: tuple[str, ...] = ("train", "test")
VERSION = "1.0.0"


class _QuietUnprepared(logging.Filter):
    """Drops TFDS's warning that an unprepared ``aejax_*`` dataset has no dataset_info.json yet."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (str(record.msg).startswith("Variant folder") and "aejax_" in str(record.args))


logging.getLogger("absl").addFilter(_QuietUnprepared())


# ----------------------------------------------------------------------------------------------
# The TFDS builders


@dataclass
class _Fetched:
    """A raw file and where it came from (``downloaded``: a TFDS download cache entry)."""

    path: Path
    origin: str
    downloaded: bool


class _IdxBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A 28x28x1 uint8 image + class label dataset built from four IDX .gz files."""

    FAMILY_NAME: str = ""
    RELEASE_NOTES = {VERSION: "Raw uint8 pixels in array_record, built without TensorFlow."}
    VERSION = tfds.core.Version(VERSION)

    def __init__(self, *, source_dir: str | os.PathLike | None = None, base_url: str | None = None,
                 download: bool = True, **kwargs: Any):
        self._source_dir = None if source_dir is None else os.fspath(source_dir)
        self._explicit_base_url = base_url
        self._base_url = base_url or DEFAULT_BASE_URLS[self.FAMILY_NAME]
        self._download = download
        self._bad_downloads: list[Path] = []
        self._resolved: tuple[Path | None] | None = None
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        self._original_state.update(source_dir=self._source_dir, base_url=base_url,
                                    download=download, file_format=kwargs["file_format"])

    def _info(self) -> tfds.core.DatasetInfo:
        description, homepage = DESCRIPTIONS[self.FAMILY_NAME]
        return tfds.core.DatasetInfo(
            builder=self,
            description=description,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=list(CLASS_NAMES[self.FAMILY_NAME])),
            }),
            supervised_keys=("image", "label"),
            homepage=homepage,
            disable_shuffling=True,  # record i = example i of the IDX file
        )

    @property
    def base_url(self) -> str:
        return self._base_url

    def resolve_source(self) -> Path | None:
        """The local directory to build from, or None to download; checked before TFDS runs.

        Raises DataError (within ``PROBE_TIMEOUT_S`` seconds) when there is no local copy and
        downloading is off or the server cannot be reached.
        """
        if self._resolved is not None:
            return self._resolved[0]
        name = self.FAMILY_NAME
        local = local_dir(name, self._source_dir, self._explicit_base_url)
        if local is None:
            if not self._download:
                raise DataError(f"{name} is not prepared in {self.data_dir_root}, no local copy of its "
                                "files was found, and downloading is off. " + how_to_fix(name))
            if urllib.parse.urlparse(self._base_url).scheme not in ("http", "https"):
                raise DataError(f"{name}: base URL {self._base_url!r} is not http(s); for files on "
                                "disk use dataset.source_dir=DIR (--source-dir DIR) instead.")
            first = file_urls(self._base_url)[ALL_FILES[0]]
            reason = probe_server(first, PROBE_TIMEOUT_S)
            if reason is not None:
                raise DataError(f"{name} is not prepared in {self.data_dir_root}, no local copy of its "
                                f"files was found, and {first} cannot be fetched ({reason}). "
                                + how_to_fix(name))
        self._resolved = (local,)
        return local

    def _fetch(self, dl_manager: tfds.download.DownloadManager) -> dict[str, _Fetched]:
        local = self.resolve_source()
        if local is not None:
            return {f: _Fetched(local / f, str(local / f), False) for f in ALL_FILES}
        urls = file_urls(self._base_url)
        try:
            paths = dl_manager.download(urls)  # download only: TFDS's extraction needs TensorFlow
        except Exception as e:  # requests errors, TFDS DownloadError / NonMatchingChecksumError
            raise DataError(f"{self.FAMILY_NAME}: downloading from {self._base_url} failed: {e}. "
                            + how_to_fix(self.FAMILY_NAME)) from e
        return {f: _Fetched(Path(os.fspath(paths[f])), urls[f], True) for f in ALL_FILES}

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        name = self.FAMILY_NAME
        fetched = self._fetch(dl_manager)
        arrays: dict[str, np.ndarray] = {}
        # Check all four files before a single example is written.
        for fname, src in fetched.items():
            try:
                packed, raw = read_gz(src.path, name, src.origin)
                verify(name, fname, packed, raw, src.origin, src.downloaded)
            except DataError:
                if src.downloaded:
                    self._bad_downloads.append(src.path)
                raise
            split = next(s for s, pair in FILES.items() if fname in pair)
            arrays[fname] = parse_idx(raw, images=fname == FILES[split][0], count=NUM_EXAMPLES[split],
                                      what=f"{name}: {fname} ({src.origin})")
        out = {}
        for split, (images_f, labels_f) in FILES.items():
            labels = arrays[labels_f]
            if labels.max() >= NUM_CLASSES:
                raise DataError(f"{name}: {labels_f} holds label {int(labels.max())}; "
                                f"labels must be below {NUM_CLASSES}")
            out[split] = self._generate_examples(images=arrays[images_f], labels=labels)
        return out

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray) -> Iterator[tuple[int, dict]]:
        for i in range(len(images)):
            yield i, {"image": images[i][..., None], "label": int(labels[i])}


def _builder_class(family_name: str, class_name: str) -> type[_IdxBuilder]:
    registered_name = f"aejax_{family_name}"
    # Register once per process: TFDS raises on a second class with the same name (a reload).
    skip = registered_name in _tfds_registered._DATASET_REGISTRY  # pylint: disable=protected-access
    return type(class_name, (_IdxBuilder,), {"name": registered_name, "FAMILY_NAME": family_name,
                                              "__module__": __name__}, skip_registration=skip)


AejaxMnist = _builder_class("mnist", "AejaxMnist")
AejaxFashionMnist = _builder_class("fashion_mnist", "AejaxFashionMnist")
AejaxKmnist = _builder_class("kmnist", "AejaxKmnist")
BUILDERS: dict[str, type[_IdxBuilder]] = {
    "mnist": AejaxMnist, "fashion_mnist": AejaxFashionMnist, "kmnist": AejaxKmnist}


# ----------------------------------------------------------------------------------------------
# Public API


def builder(name: str, data_dir: str | os.PathLike | None = None, source_dir: str | os.PathLike | None = None,
            base_url: str | None = None, download: bool = True) -> _IdxBuilder:
    """The (possibly unprepared) TFDS builder of ``name``; ``data_dir`` None: TFDS's default."""
    cls = BUILDERS[check_name(name)]
    return cls(data_dir=None if data_dir is None else os.fspath(Path(data_dir).expanduser()),
               source_dir=source_dir, base_url=base_url, download=download)


def is_prepared(name: str, data_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``name`` is prepared in ``data_dir`` (reads no data)."""
    return builder(name, data_dir).is_prepared()


def _cleanup_failed(b: _IdxBuilder) -> None:
    """Remove what a failed preparation left: bad downloads, partial downloads, empty folders."""
    for path in b._bad_downloads:  # pylint: disable=protected-access
        for p in (path, path.with_name(path.name + ".INFO")):
            p.unlink(missing_ok=True)
    dl_dir = Path(b.data_dir_root) / "downloads" / b.name
    if dl_dir.is_dir():
        for tmp in dl_dir.glob("*.tmp.*"):
            shutil.rmtree(tmp, ignore_errors=True)
    dataset_dir = Path(b.data_dir_root) / b.name  # <data_dir>/aejax_<name>, left empty by TFDS
    downloads = Path(b.data_dir_root) / "downloads"
    for d in (dataset_dir / VERSION, dataset_dir, dl_dir, downloads / "extracted", downloads):
        try:
            d.rmdir()  # only when empty
        except OSError:
            pass


@contextlib.contextmanager
def _prepare_lock(b: _IdxBuilder) -> Iterator[None]:
    """An advisory lock on ``<data_dir>/aejax_<name>.lock``: one process prepares at a time."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    root = Path(b.data_dir_root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{b.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(name: str, data_dir: str | os.PathLike | None = None, source_dir: str | os.PathLike | None = None,
            base_url: str | None = None, download: bool = True) -> tfds.core.DatasetBuilder:
    """Build ``name`` into ``data_dir`` unless it is there already (then this is a no-op).

    The raw files come from ``source_dir``, else a known local directory (unless ``base_url``
    is given), else a download from ``base_url`` (default: the upstream mirror) when
    ``download``. Raises ``DataError`` when they cannot be had or fail their integrity check; a
    failed call leaves no prepared dataset behind, so the next call starts afresh. Processes
    preparing the same ``data_dir`` at once take turns (a file lock).
    """
    b = builder(name, data_dir, source_dir, base_url, download)
    if b.is_prepared():
        return b
    b.resolve_source()  # fails fast (no local files, no network), before any folder is made
    resolved = b._resolved  # pylint: disable=protected-access
    with _prepare_lock(b):
        b = builder(name, data_dir, source_dir, base_url, download)  # re-read: another process may have built it
        b._resolved = resolved  # pylint: disable=protected-access
        if not b.is_prepared():
            config = tfds.download.DownloadConfig(
                try_download_gcs=False,  # True asks GCS for a prebuilt copy: a long hang offline
                compute_stats=tfds.download.ComputeStatsMode.SKIP)
            source = resolved[0] if resolved and resolved[0] is not None else "a download"
            print(f"aejax: preparing {name} once into {b.data_dir}, from {source}", file=sys.stderr, flush=True)
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # TFDS's "Downloading ... Unknown size" lines
                    b.download_and_prepare(download_config=config)
            except BaseException:
                _cleanup_failed(b)
                raise
    # A fresh builder reads the DatasetInfo (split sizes, shard lengths) back from disk.
    return builder(name, data_dir, source_dir, base_url, download)


def data_sources(name: str, data_dir: str | os.PathLike | None = None, source_dir: str | os.PathLike | None = None,
                 base_url: str | None = None, download: bool = True) -> dict[str, Any]:
    """{"train": ..., "test": ...}: TFDS random-access sources, preparing ``name`` on first use.

    ``len(source)`` is the split size; ``source[i]`` is ``{"image": uint8 (28, 28, 1),
    "label": int}``, example ``i`` of the upstream IDX file; ``source.__getitems__(indices)``
    reads a batch (several times faster than one by one).
    """
    b = prepare(name, data_dir, source_dir, base_url, download)
    return {split: b.as_data_source(split=split) for split in SPLITS}
