"""The decoded copy of a prepared TFDS dataset: used while current, redone when the dataset changes."""
import os
import shutil
import subprocess

import numpy as np
import pytest
from conftest import compose_config, tmpfs

from aejax.data import load_dataset
from aejax.data.decoded import FOLDER


def _load(data_dir):
    return load_dataset(compose_config("dataset=fashion_mnist", f"dataset.data_dir={data_dir}",
                                       "logger.mode=disabled").dataset)


@pytest.fixture
def own_copy(prepared_fashion_mnist, tmp_path):
    """A prepared Fashion-MNIST of this test's own (shared data must not be altered)."""
    copy = tmp_path / "data"
    shutil.copytree(prepared_fashion_mnist, copy, ignore=shutil.ignore_patterns(FOLDER))
    return copy


def test_the_decoded_copy_is_what_later_loads_read(own_copy):
    version = own_copy / "aejax_fashion_mnist" / "1.0.0"
    first = _load(own_copy)  # decodes the records and saves the copy
    assert sorted(p.name for p in (version / FOLDER).glob("*.npy")) == ["x_test.npy", "x_train.npy",
                                                                        "y_test.npy", "y_train.npy"]
    assert np.load(version / FOLDER / "x_train.npy").dtype == np.uint8  # stored as the records hold it
    second = _load(own_copy)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(first, field), getattr(second, field)
        assert a.dtype == b.dtype and np.array_equal(a, b), field
    assert second.unit_range and second.x_train.dtype == np.float32
    # a current copy is read instead of the records: what it holds is what a load returns
    np.save(version / FOLDER / "y_test.npy", np.zeros(10000, np.int32))
    assert not _load(own_copy).y_test.any()


def test_a_dataset_that_changed_is_decoded_again(own_copy):
    version = own_copy / "aejax_fashion_mnist" / "1.0.0"
    expected = _load(own_copy).y_test
    np.save(version / FOLDER / "y_test.npy", np.zeros(10000, np.int32))  # a copy that no longer matches...
    (train,) = version.glob("*train.array_record*")
    stat = train.stat()
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # ...once the records were written again
    np.testing.assert_array_equal(_load(own_copy).y_test, expected)
    np.testing.assert_array_equal(np.load(version / FOLDER / "y_test.npy"), expected)  # and is saved anew
    (version / FOLDER / "x_test.npy").write_bytes(b"\x93NUMPY damaged")  # a damaged copy: decoded again
    np.testing.assert_array_equal(_load(own_copy).y_test, expected)


def test_a_read_only_dataset_loads_without_a_copy(prepared_fashion_mnist, tmp_path):
    with tmpfs(tmp_path / "ro", "64m") as mount:
        shutil.copytree(prepared_fashion_mnist, mount / "data", ignore=shutil.ignore_patterns(FOLDER))
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        data = _load(mount / "data")
        assert data.num_train == 60000 and data.y_test.shape == (10000,)
        assert not (mount / "data" / "aejax_fashion_mnist" / "1.0.0" / FOLDER).exists()
