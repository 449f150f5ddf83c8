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
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import registered as _tfds_registered

from aejax.errors import ConfigError, DataError

FAMILY: tuple[str, ...] = ("mnist", "fashion_mnist", "kmnist")
SPLITS: tuple[str, ...] = ("train", "test")
VERSION = "1.0.0"
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
NUM_EXAMPLES = {"train": 60000, "test": 10000}

# (images, labels) per split: the upstream names, shared by all three datasets.
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
ALL_FILES: tuple[str, ...] = tuple(f for pair in FILES.values() for f in pair)

# Integrity table: (kind, SHA-256 hex digest) per file.
#   "raw": the digest of the DECOMPRESSED IDX content. Preferred: a re-compressed copy (such as
#          Debian's, whose gzip headers differ from upstream's) still matches.
#   "gz":  the digest of the .gz file exactly as upstream publishes it. Used where no
#          trustworthy digest of the decompressed content was found; a re-compressed copy of
#          such a file fails the check even when its content is intact.
# Sources:
#   fashion_mnist (raw): computed here from Debian's dataset-fashion-mnist files; the same four
#       digests are published in independent public code (GitHub) that derived them from
#       archives matching Zalando's published MD5s.
#   mnist (raw): the same four digests appear in two independent public GitHub projects, one
#       hashing the raw files from Kaggle's MNIST copy and one hashing the gunzipped files of
#       the ossci-datasets mirror. (The .gz digests, per TFDS's url_checksums/mnist.txt:
#       train-images 440fcabf..., train-labels 3552534a..., t10k-images 8d422c7b...,
#       t10k-labels f7ae60f9...)
#   kmnist (gz): TFDS 4.9.10's tensorflow_datasets/url_checksums/kmnist.txt, corroborated by
#       torchvision-ruby's KMNIST resources list.
CHECKSUMS: dict[str, dict[str, tuple[str, str]]] = {
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": ("raw", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte.gz": ("raw", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte.gz": ("raw", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte.gz": ("raw", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": ("raw", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte.gz": ("raw", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte.gz": ("raw", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte.gz": ("raw", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    "kmnist": {
        "train-images-idx3-ubyte.gz": ("gz", "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"),
        "train-labels-idx1-ubyte.gz": ("gz", "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"),
        "t10k-images-idx3-ubyte.gz": ("gz", "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5"),
        "t10k-labels-idx1-ubyte.gz": ("gz", "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"),
    },
}

# The mirrors TFDS's own builders download from (tensorflow_datasets/image_classification/mnist.py).
DEFAULT_BASE_URLS: dict[str, str] = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "kmnist": "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
}

# Directories that hold the raw files on some systems, used when they exist.
KNOWN_SOURCE_DIRS: dict[str, tuple[str, ...]] = {
    "mnist": (),
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
    "kmnist": (),
}

_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}

_DESCRIPTIONS = {
    "mnist": ("The MNIST database of handwritten digits: 28x28 grayscale, 60,000 train and "
              "10,000 test images in 10 classes.", "http://yann.lecun.com/exdb/mnist/"),
    "fashion_mnist": ("Fashion-MNIST: Zalando's article images, 28x28 grayscale, 60,000 train "
                      "and 10,000 test images in 10 classes.",
                      "https://github.com/zalandoresearch/fashion-mnist"),
    "kmnist": ("Kuzushiji-MNIST: cursive Japanese (hiragana) characters, 28x28 grayscale, "
               "60,000 train and 10,000 test images in 10 classes.",
               "http://codh.rois.ac.jp/kmnist/index.html.en"),
}

# Seconds to wait for the download server to answer before giving up (no TFDS retries).
PROBE_TIMEOUT_S = 5.0



class _QuietUnprepared(logging.Filter):
    """Drops TFDS's warning that an unprepared ``aejax_*`` dataset has no dataset_info.json yet."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (str(record.msg).startswith("Variant folder") and "aejax_" in str(record.args))


logging.getLogger("absl").addFilter(_QuietUnprepared())

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


def _check_name(name: str) -> str:
    if name not in FAMILY:
        raise ConfigError("dataset.name", f"unknown dataset {name!r}; expected one of {', '.join(FAMILY)}")
    return name


def class_names(name: str) -> tuple[str, ...]:
    """The 10 class names of ``name``, indexed by label."""
    return _CLASS_NAMES[_check_name(name)]


def tfds_name(name: str) -> str:
    """The TFDS builder name of ``name`` (``aejax_<name>``), also its folder in ``data_dir``."""
    return f"aejax_{_check_name(name)}"


def _how_to_fix(name: str) -> str:
    files = ", ".join(ALL_FILES)
    return (f"Put the four IDX files ({files}) in a directory DIR and pass dataset.source_dir=DIR, "
            f"or prepare ahead of time: aejax-data prepare {name} --source-dir DIR "
            f"(or aejax-data prepare {name} on a machine that can reach {DEFAULT_BASE_URLS[name]}).")


# ----------------------------------------------------------------------------------------------
# IDX parsing and integrity


def _read_gz(path: Path, name: str, origin: str) -> tuple[bytes, bytes]:
    """(the .gz bytes, the decompressed bytes) of ``path``; a DataError when it is no gzip."""
    try:
        packed = path.read_bytes()
    except OSError as e:
        raise DataError(f"{name}: cannot read {path.name} ({origin}): {e}. {_how_to_fix(name)}") from e
    try:
        return packed, gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"{name}: {path.name} ({origin}) is not a valid gzip file ({e}). "
            f"{_how_to_fix(name)}") from e


def _verify(name: str, fname: str, packed: bytes, raw: bytes, origin: str, downloaded: bool) -> None:
    kind, expected = CHECKSUMS[name][fname]
    actual = hashlib.sha256(raw if kind == "raw" else packed).hexdigest()
    if actual == expected:
        return
    what = "its decompressed content" if kind == "raw" else "the .gz file (as published upstream)"
    if downloaded:
        todo = (f"The download was deleted: run again to fetch it anew (aejax-data prepare {name}), or put "
                f"intact copies of the four files in a directory DIR and pass dataset.source_dir=DIR "
                f"(aejax-data prepare {name} --source-dir DIR).")
    else:
        todo = (f"Replace it with an intact copy (upstream: {DEFAULT_BASE_URLS[name]}{fname}) and run "
                f"again (aejax-data prepare {name} --source-dir DIR), or let it download "
                f"(aejax-data prepare {name} without --source-dir).")
    if kind == "gz":
        todo += " Only the published .gz file itself passes: a re-compressed copy does not."
    raise DataError(f"{name}: {fname} ({origin}) failed its integrity check: the SHA-256 of {what} is "
                    f"{actual}, expected {expected}. The file is corrupt, truncated or not the official "
                    f"release. {todo}")


def parse_idx(raw: bytes, *, images: bool, count: int, what: str = "IDX file") -> np.ndarray:
    """The uint8 array in an IDX file: (count, 28, 28) images or (count,) labels.

    Checks the magic number, the dimensions and that the payload has exactly the announced size.
    """
    header = 16 if images else 8
    if len(raw) < header:
        raise DataError(f"{what}: {len(raw)} bytes, too short for an IDX header")
    dims = np.frombuffer(raw, dtype=">u4", count=header // 4)
    magic, n = int(dims[0]), int(dims[1])
    want_magic = _IDX_IMAGES_MAGIC if images else _IDX_LABELS_MAGIC
    if magic != want_magic:
        raise DataError(f"{what}: magic number {magic}, expected {want_magic} "
                        f"({'images' if images else 'labels'} file)")
    if n != count:
        raise DataError(f"{what}: {n} items, expected {count}")
    shape = (n, int(dims[2]), int(dims[3])) if images else (n,)
    if images and shape[1:] != IMAGE_SHAPE[:2]:
        raise DataError(f"{what}: images of {shape[1]}x{shape[2]}, expected 28x28")
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise DataError(f"{what}: {len(raw) - header} bytes of data, expected {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


# ----------------------------------------------------------------------------------------------
# Where the files come from


def _local_dir(name: str, source_dir: str | os.PathLike | None, base_url: str | None = None) -> Path | None:
    """The directory to read the raw files from, or None to download them.

    ``source_dir`` wins; otherwise a known directory (``KNOWN_SOURCE_DIRS``) is used when it
    holds all four files, unless a ``base_url`` was given explicitly (then we download).
    """
    if source_dir is not None:
        path = Path(source_dir).expanduser()
        missing = [f for f in ALL_FILES if not (path / f).is_file()]
        if missing:
            raise DataError(
                f"{name}: dataset.source_dir={path} lacks {', '.join(missing)}; it must hold the four "
                f"upstream IDX files under their upstream names ({', '.join(ALL_FILES)}).")
        return path
    if base_url is None:
        for known in KNOWN_SOURCE_DIRS[name]:
            path = Path(known)
            if all((path / f).is_file() for f in ALL_FILES):
                return path
    return None


def _probe(url: str, timeout: float) -> str | None:
    """None when ``url`` answers a HEAD request with 2xx (or 405); otherwise why it does not.

    Runs in a daemon thread with a hard deadline, so that not even a DNS lookup can hang us.
    """
    result: list[str | None] = []

    def attempt() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "aejax-data"})
            with urllib.request.urlopen(request, timeout=timeout):
                pass
            result.append(None)
        except urllib.error.HTTPError as e:
            result.append(None if e.code == 405 else f"HTTP {e.code} {e.reason}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            result.append(str(getattr(e, "reason", e)))

    thread = threading.Thread(target=attempt, name="aejax-data-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return result[0] if result else f"no answer within {timeout:.0f} s"


def _urls(base_url: str) -> dict[str, str]:
    base = base_url if base_url.endswith("/") else base_url + "/"
    return {f: urllib.parse.urljoin(base, f) for f in ALL_FILES}


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
        description, homepage = _DESCRIPTIONS[self.FAMILY_NAME]
        return tfds.core.DatasetInfo(
            builder=self,
            description=description,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=list(_CLASS_NAMES[self.FAMILY_NAME])),
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
        local = _local_dir(name, self._source_dir, self._explicit_base_url)
        if local is None:
            if not self._download:
                raise DataError(f"{name} is not prepared in {self.data_dir_root}, no local copy of its "
                                "files was found, and downloading is off. " + _how_to_fix(name))
            if urllib.parse.urlparse(self._base_url).scheme not in ("http", "https"):
                raise DataError(f"{name}: base URL {self._base_url!r} is not http(s); for files on "
                                "disk use dataset.source_dir=DIR (--source-dir DIR) instead.")
            first = _urls(self._base_url)[ALL_FILES[0]]
            reason = _probe(first, PROBE_TIMEOUT_S)
            if reason is not None:
                raise DataError(f"{name} is not prepared in {self.data_dir_root}, no local copy of its "
                                f"files was found, and {first} cannot be fetched ({reason}). "
                                + _how_to_fix(name))
        self._resolved = (local,)
        return local

    def _fetch(self, dl_manager: tfds.download.DownloadManager) -> dict[str, _Fetched]:
        local = self.resolve_source()
        if local is not None:
            return {f: _Fetched(local / f, str(local / f), False) for f in ALL_FILES}
        urls = _urls(self._base_url)
        try:
            paths = dl_manager.download(urls)  # download only: TFDS's extraction needs TensorFlow
        except Exception as e:  # requests errors, TFDS DownloadError / NonMatchingChecksumError
            raise DataError(f"{self.FAMILY_NAME}: downloading from {self._base_url} failed: {e}. "
                            + _how_to_fix(self.FAMILY_NAME)) from e
        return {f: _Fetched(Path(os.fspath(paths[f])), urls[f], True) for f in ALL_FILES}

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        name = self.FAMILY_NAME
        fetched = self._fetch(dl_manager)
        arrays: dict[str, np.ndarray] = {}
        # Check all four files before a single example is written.
        for fname, src in fetched.items():
            try:
                packed, raw = _read_gz(src.path, name, src.origin)
                _verify(name, fname, packed, raw, src.origin, src.downloaded)
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
    cls = BUILDERS[_check_name(name)]
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
            try:
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
