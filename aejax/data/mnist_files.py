"""The raw files of the MNIST family: their names and checksums, the facts about each dataset,
where the files come from and the IDX format they are in.

Where the raw IDX ``.gz`` files come from, in order:

1. ``source_dir`` when given (a directory holding the four files named in ``FILES``);
2. a directory known to hold them, when it exists and no ``base_url`` was given (Debian's
   ``dataset-fashion-mnist`` package installs Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``);
3. a download from ``base_url`` (default: the upstream mirror TFDS itself uses), by the TFDS
   builders of ``aejax.data.mnist_family``.

Every file is checked against ``CHECKSUMS`` (``verify``) before anything is written. Nothing ever
waits on an unreachable network: ``probe_server`` asks the server with a short timeout before TFDS's
downloader (which retries with back-off for minutes) is called.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from aejax.errors import ConfigError, DataError

FAMILY: tuple[str, ...] = ("mnist", "fashion_mnist", "kmnist")
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

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}

DESCRIPTIONS = {
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

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


def check_name(name: str) -> str:
    if name not in FAMILY:
        raise ConfigError("dataset.name", f"unknown dataset {name!r}; expected one of {', '.join(FAMILY)}")
    return name


def class_names(name: str) -> tuple[str, ...]:
    """The 10 class names of ``name``, indexed by label."""
    return CLASS_NAMES[check_name(name)]


def tfds_name(name: str) -> str:
    """The TFDS builder name of ``name`` (``aejax_<name>``), also its folder in ``data_dir``."""
    return f"aejax_{check_name(name)}"


def how_to_fix(name: str) -> str:
    files = ", ".join(ALL_FILES)
    return (f"Put the four IDX files ({files}) in a directory DIR and pass dataset.source_dir=DIR, "
            f"or prepare ahead of time: aejax-data prepare {name} --source-dir DIR "
            f"(or aejax-data prepare {name} on a machine that can reach {DEFAULT_BASE_URLS[name]}).")


# ----------------------------------------------------------------------------------------------
# IDX parsing and integrity


def read_gz(path: Path, name: str, origin: str) -> tuple[bytes, bytes]:
    """(the .gz bytes, the decompressed bytes) of ``path``; a DataError when it is no gzip."""
    try:
        packed = path.read_bytes()
    except OSError as e:
        raise DataError(f"{name}: cannot read {path.name} ({origin}): {e}. {how_to_fix(name)}") from e
    try:
        return packed, gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"{name}: {path.name} ({origin}) is not a valid gzip file ({e}). "
            f"{how_to_fix(name)}") from e


def verify(name: str, fname: str, packed: bytes, raw: bytes, origin: str, downloaded: bool) -> None:
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


def local_dir(name: str, source_dir: str | os.PathLike | None, base_url: str | None = None) -> Path | None:
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


def probe_server(url: str, timeout: float) -> str | None:
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


def file_urls(base_url: str) -> dict[str, str]:
    base = base_url if base_url.endswith("/") else base_url + "/"
    return {f: urllib.parse.urljoin(base, f) for f in ALL_FILES}
