"""The MNIST-family TFDS builders, end to end: real TFDS, real files, a real HTTP server.

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package; the download path is
exercised against ``http.server`` on 127.0.0.1 serving copies of those files. One prepared
data dir is shared by the read-only tests (and across xdist workers, under the module's lock).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from aejax.data import cli, mnist_family as mf
from aejax.data.decoded import FOLDER
from aejax.errors import ConfigError, DataError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

pytestmark = pytest.mark.skipif(
    not all((DEBIAN_DIR / f).is_file() for f in FILES),
    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file parsed from its generic header (type byte, rank byte, big-endian dims)."""
    data = gzip.decompress(path.read_bytes())
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    assert (zero, dtype_code) == (0, 0x08)  # unsigned bytes
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_all(source) -> tuple[np.ndarray, np.ndarray]:
    records = source.__getitems__(range(len(source)))
    return (np.stack([r["image"] for r in records]),
            np.array([r["label"] for r in records], dtype=np.int64))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aejax.data.cli", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def expected() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Debian's files parsed directly: split -> (images (N, 28, 28), labels (N,))."""
    return {split: (read_idx(DEBIAN_DIR / f"{stem}-images-idx3-ubyte.gz"),
                    read_idx(DEBIAN_DIR / f"{stem}-labels-idx1-ubyte.gz"))
            for split, stem in (("train", "train"), ("test", "t10k"))}


@pytest.fixture(scope="module")
def prepared(prepared_fashion_mnist) -> Path:
    return prepared_fashion_mnist


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """http.server on 127.0.0.1 serving a folder; yields (base_url, folder, requests seen)."""
    folder = tmp_path_factory.mktemp("served")
    seen: list[tuple[str, str]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            seen.append((self.command, self.path))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/files/", folder / "files", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---------------------------------------------------------------------------------------------
# Built from Debian's files


@pytest.fixture(scope="module")
def read_back(prepared) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every record of both splits, read through the data sources: split -> (images, labels)."""
    sources = mf.data_sources("fashion_mnist", data_dir=prepared)
    assert set(sources) == {"train", "test"}
    return {split: read_all(source) for split, source in sources.items()}


def test_counts_and_balance(prepared, read_back):
    sources = mf.data_sources("fashion_mnist", data_dir=prepared)
    assert (len(sources["train"]), len(sources["test"])) == (60000, 10000)
    for split, per_class in (("train", 6000), ("test", 1000)):
        _, labels = read_back[split]
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10


def test_records_equal_the_idx_files(read_back, expected):
    for split, (images, labels) in expected.items():
        got_images, got_labels = read_back[split]
        np.testing.assert_array_equal(got_images, images[..., None])  # record i = IDX example i
        np.testing.assert_array_equal(got_labels, labels)


def test_record_format(prepared):
    source = mf.data_sources("fashion_mnist", data_dir=prepared)["train"]
    record = source[12345]
    assert set(record) == {"image", "label"}
    assert record["image"].dtype == np.uint8 and record["image"].shape == (28, 28, 1)
    assert isinstance(record["label"], (int, np.integer)) and 0 <= record["label"] < 10
    info = mf.prepare("fashion_mnist", data_dir=prepared).info
    assert info.features["label"].names == list(mf.class_names("fashion_mnist"))
    assert info.version == "1.0.0" and info.file_format.value == "array_record"


def test_single_and_batched_random_reads_agree(prepared, expected):
    source = mf.data_sources("fashion_mnist", data_dir=prepared)["train"]
    indices = np.random.default_rng(0).integers(0, len(source), 500).tolist()
    singles = [source[i] for i in indices]
    batch = source.__getitems__(indices)
    images, labels = expected["train"]
    for i, a, b in zip(indices, singles, batch):
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["image"][..., 0], images[i])
        assert a["label"] == b["label"] == labels[i]


def test_preparing_again_is_a_noop(prepared, expected, tmp_path):
    version_dir = prepared / "aejax_fashion_mnist" / "1.0.0"

    def tfds_files():  # a run's decoded copy (aejax.data.decoded) is aejax's, not TFDS's
        return {p: p.stat().st_mtime_ns for p in version_dir.iterdir() if p.name != FOLDER}

    before = tfds_files()
    b = mf.prepare("fashion_mnist", data_dir=prepared, source_dir=DEBIAN_DIR)
    assert tfds_files() == before
    # a no-op reads no source: with none to be had (an empty source_dir, no download) it still succeeds
    (tmp_path / "empty").mkdir()
    mf.prepare("fashion_mnist", data_dir=prepared, source_dir=tmp_path / "empty", download=False)
    assert tfds_files() == before
    assert b.info.splits["train"].num_examples == 60000
    record = mf.data_sources("fashion_mnist", data_dir=prepared)["test"][9999]
    np.testing.assert_array_equal(record["image"][..., 0], expected["test"][0][9999])


def test_class_names():
    assert mf.class_names("fashion_mnist") == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert mf.class_names("kmnist") == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    assert mf.class_names("mnist") == tuple("0123456789")
    with pytest.raises(ConfigError, match="dataset.name"):
        mf.class_names("cifar10")


def test_checksum_table_matches_debian_files():
    for f in FILES:
        kind, digest = mf.CHECKSUMS["fashion_mnist"][f]
        assert kind == "raw"
        assert hashlib.sha256(gzip.decompress((DEBIAN_DIR / f).read_bytes())).hexdigest() == digest
    assert {kind for table in mf.CHECKSUMS.values() for kind, _ in table.values()} <= {"raw", "gz"}


# ---------------------------------------------------------------------------------------------
# Failing cleanly


def test_source_dir_missing_files_is_a_data_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(DEBIAN_DIR / FILES[0], src / FILES[0])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        mf.prepare("fashion_mnist", data_dir=tmp_path / "data", source_dir=src)
    assert not (tmp_path / "data" / "aejax_fashion_mnist").exists()


def test_no_download_and_no_files_fails_fast(tmp_path, server):
    base_url, _, seen = server
    before = len(seen)
    with pytest.raises(DataError, match="downloading is off") as err:
        mf.prepare("kmnist", data_dir=tmp_path, base_url=base_url, download=False)
    assert seen[before:] == []  # no request was made
    assert "dataset.source_dir=" in str(err.value) and "aejax-data prepare kmnist" in str(err.value)
    assert not any(tmp_path.iterdir())


def test_unreachable_server_fails_within_seconds(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(DataError) as err:
        mf.data_sources("fashion_mnist", data_dir=tmp_path, base_url=url)
    message = str(err.value)
    # one probe of the first file, refused at once: not TFDS's downloader (which retries for minutes)
    assert f"{url}{mf.ALL_FILES[0]} cannot be fetched (" in message and "refused" in message
    assert mf.PROBE_TIMEOUT_S == 5.0 and "no answer within" not in message
    assert url in message and "dataset.source_dir=" in message
    assert "aejax-data prepare fashion_mnist --source-dir DIR" in message
    assert all(f in message for f in FILES)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Downloading over HTTP


def test_download_rejects_corrupt_file_then_retries_cleanly(server, tmp_path, expected):
    base_url, folder, seen = server
    folder.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        shutil.copy(DEBIAN_DIR / f, folder / f)
    # A well-formed IDX file (valid labels, right size) whose content differs in 4 bytes.
    labels_raw = bytearray(gzip.decompress((DEBIAN_DIR / FILES[1]).read_bytes()))
    for i in range(100, 104):
        labels_raw[8 + i] ^= 1
    (folder / FILES[1]).write_bytes(gzip.compress(bytes(labels_raw)))
    bad_digest = hashlib.sha256(labels_raw).hexdigest()
    data_dir = tmp_path / "data"

    with pytest.raises(DataError) as err:
        mf.prepare("fashion_mnist", data_dir=data_dir, base_url=base_url)
    message = str(err.value)
    assert FILES[1] in message and "integrity" in message
    assert bad_digest in message and mf.CHECKSUMS["fashion_mnist"][FILES[1]][1] in message
    assert "--source-dir" in message
    # No prepared (or half-written) dataset, and the bad download is gone.
    assert not mf.is_prepared("fashion_mnist", data_dir)
    assert not (data_dir / "aejax_fashion_mnist").exists()
    assert not [p for p in data_dir.rglob("*") if "incomplete" in p.name or "train-labels" in p.name]

    # The server now serves the right file under the same URL: the next call downloads it again.
    shutil.copy(DEBIAN_DIR / FILES[1], folder / FILES[1])
    sources = mf.data_sources("fashion_mnist", data_dir=data_dir, base_url=base_url)
    assert [p for c, p in seen if c == "GET" and p.endswith(FILES[1])] == [f"/files/{FILES[1]}"] * 2
    assert (len(sources["train"]), len(sources["test"])) == (60000, 10000)
    for split, (images, labels) in expected.items():
        got_images, got_labels = read_all(sources[split])
        np.testing.assert_array_equal(got_images[..., 0], images)
        np.testing.assert_array_equal(got_labels, labels)


def test_download_404_is_a_data_error(server, tmp_path):
    base_url, _, seen = server
    before = len(seen)
    with pytest.raises(DataError, match="404"):
        mf.prepare("mnist", data_dir=tmp_path, base_url=base_url + "nothing-here/")
    # one HEAD request for the first file and no retries (http.server logs an error response twice:
    # the error and the request line)
    assert seen[before:] == [("HEAD", f"/files/nothing-here/{mf.ALL_FILES[0]}")] * 2


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_prepare_from_source_dir(tmp_path):
    result = run_cli("prepare", "fashion_mnist", "--data-dir", str(tmp_path), "--source-dir", str(DEBIAN_DIR))
    assert result.returncode == 0, result.stderr
    assert "train: 60000 examples" in result.stdout and "test: 10000 examples" in result.stdout
    assert str(tmp_path / "aejax_fashion_mnist" / "1.0.0") in result.stdout
    print("\n" + result.stdout)
    again = run_cli("prepare", "fashion_mnist", "--data-dir", str(tmp_path))
    assert again.returncode == 0 and "already prepared" in again.stdout


def test_cli_offline_without_files_fails_with_instructions(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/"
    result = run_cli("prepare", "fashion_mnist", "--data-dir", str(tmp_path), "--base-url", url)
    assert result.returncode == 1
    assert result.stderr.startswith("aejax-data: ") and "Traceback" not in result.stderr
    assert "aejax-data prepare fashion_mnist --source-dir DIR" in result.stderr
    assert "dataset.source_dir=" in result.stderr
    assert f"{url}{mf.ALL_FILES[0]} cannot be fetched (" in result.stderr and "refused" in result.stderr


def test_cli_list(prepared):
    result = run_cli("list", "--data-dir", str(prepared))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "prepared (60000 train, 10000 test)" in lines["fashion_mnist"]
    assert "not prepared" in lines["mnist"] and "not prepared" in lines["kmnist"]


def test_cli_bad_name_is_a_usage_error(capsys):
    assert cli.main(["prepare", "cifar10"]) == 2
    assert "invalid choice" in capsys.readouterr().err
