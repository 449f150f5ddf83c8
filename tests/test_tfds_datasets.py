"""TFDS-backed datasets through aejax's dataset layer and the real `aejax-train`."""
import gzip
import json
import struct

import numpy as np
import pytest
from conftest import DEBIAN_FASHION_MNIST, compose_config, run_cli

from aejax.data import load_dataset
from aejax.errors import DataError


def _idx(path):
    raw = gzip.decompress(path.read_bytes())
    magic, n = struct.unpack(">II", raw[:8])
    header = 16 if magic == 2051 else 8
    return np.frombuffer(raw, np.uint8, offset=header).reshape(n, -1)


def test_fashion_mnist_is_scaled_labelled_and_in_file_order(prepared_fashion_mnist):
    data = load_dataset(compose_config("dataset=fashion_mnist", f"dataset.data_dir={prepared_fashion_mnist}").dataset)
    assert (data.name, data.example_shape, data.num_train, len(data.x_test)) == ("fashion_mnist", (28, 28, 1), 60000, 10000)
    assert data.unit_range and data.x_train.dtype == np.float32 and float(data.x_train.max()) == 1.0
    images = _idx(DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(data.x_test.reshape(10000, -1), images / np.float32(255))
    np.testing.assert_array_equal(data.y_train, _idx(DEBIAN_FASHION_MNIST / "train-labels-idx1-ubyte.gz")[:, 0])
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


def test_training_on_fashion_mnist_end_to_end(prepared_fashion_mnist, tmp_path):
    """One epoch (469 steps of 128) streamed from the prepared cache; the loss falls."""
    result = run_cli("dataset=fashion_mnist", f"dataset.data_dir={prepared_fashion_mnist}", "trainer.epochs=1",
                     "trainer.feed=stream", "logger.mode=disabled", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 469 and rows[-1]["val/loss"] < 0.5 * rows[0]["val/loss"]
    assert json.loads((tmp_path / "summary.json").read_text())["feed"] == "stream"


def test_builtin_tfds_datasets_say_which_extra_they_need():
    pytest.importorskip("tensorflow_datasets")
    try:
        import tensorflow  # noqa: F401
        pytest.skip("TensorFlow is installed")
    except ImportError:
        pass
    with pytest.raises(DataError) as err:
        load_dataset(compose_config("dataset=cifar10").dataset)
    assert 'pip install "aejax[tf]"' in str(err.value) and "cifar10" in str(err.value)


def test_streaming_from_the_tfds_source_yields_the_in_memory_batches(prepared_fashion_mnist):
    import jax

    from aejax.data import mnist_family
    from aejax.data.tfds_source import ImageRecords
    from aejax.training.epoch import epoch_batches
    from aejax.training.feed import StreamFeed

    source = mnist_family.data_sources("fashion_mnist", data_dir=prepared_fashion_mnist)["train"]
    records = ImageRecords(source)
    assert records.shape == (60000, 28, 28, 1) and records.dtype == np.float32
    in_memory = _idx(DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").reshape(60000, 28, 28, 1) / np.float32(255)
    idx, w = (np.asarray(a) for a in epoch_batches(jax.random.key(1), 60000, 256, False))
    feed = StreamFeed(records, chunk=8, workers=4, prefetch=2)
    for i, (xs, ws) in enumerate(feed.epoch(idx[:24], w[:24])):  # the first 24 batches of the epoch
        np.testing.assert_array_equal(xs, in_memory[idx[8 * i:8 * i + 8]])
        np.testing.assert_array_equal(ws, w[8 * i:8 * i + 8])
