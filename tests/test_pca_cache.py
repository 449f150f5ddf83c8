"""The PCA baseline's basis kept beside the data: used only when it is current and whole, fitted
again (and replaced) when the data changed or the file is damaged; the numbers equal scikit-learn's."""
import json
import os

import numpy as np
import pytest
from sklearn.decomposition import PCA

from aejax.analysis import pca


def _data(seed=0, n=400, features=30):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(6, features))
    x = (rng.normal(size=(n, 6)) @ mixing + 0.1 * rng.normal(size=(n, features))).astype(np.float32)
    return x[:300], x[300:]


def _sklearn_mse(x_train, x_test, k):
    model = PCA(k).fit(x_train.astype(np.float64))
    return float(np.mean((model.inverse_transform(model.transform(x_test.astype(np.float64))) - x_test) ** 2))


def test_fitted_once_then_read_back_with_the_same_numbers(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"files": [["train.array_record", 1, 2]]}))
    x_train, x_test = _data()
    basis, cached = pca.cached_fit(x_train, 3, tmp_path)
    assert not cached and pca.path(tmp_path, "train", 3).is_file()
    again, cached = pca.cached_fit(x_train, 3, tmp_path)
    assert cached and np.array_equal(again.components, basis.components) and np.array_equal(again.mean, basis.mean)
    assert pca.test_mse(again, x_test) == pytest.approx(_sklearn_mse(x_train, x_test, 3), rel=1e-6)
    other_k, cached = pca.cached_fit(x_train, 5, tmp_path)  # another k: its own file
    assert not cached and pca.test_mse(other_k, x_test) == pytest.approx(_sklearn_mse(x_train, x_test, 5), rel=1e-6)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "arrays changed", "empty"])
def test_a_damaged_file_is_fitted_again_and_replaced(tmp_path, damage):
    x_train, x_test = _data()
    pca.cached_fit(x_train, 3, tmp_path)
    file = pca.path(tmp_path, "train", 3)
    if damage == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif damage == "garbage":
        file.write_bytes(os.urandom(2000))
    elif damage == "empty":
        file.write_bytes(b"")
    else:  # a valid npz with the right key but other components: the checksum no longer matches
        with np.load(file) as saved:
            items = dict(saved)
        items["components"] = items["components"][::-1].copy()
        np.savez(file, **items)
    basis, cached = pca.cached_fit(x_train, 3, tmp_path)
    assert not cached
    assert pca.test_mse(basis, x_test) == pytest.approx(_sklearn_mse(x_train, x_test, 3), rel=1e-6)
    assert pca.cached_fit(x_train, 3, tmp_path)[1]  # replaced by a whole one


def test_changed_data_or_a_re_prepared_dataset_is_not_served_the_old_basis(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"files": [["train.array_record", 1, 2]]}))
    x_train, x_test = _data()
    pca.cached_fit(x_train, 3, tmp_path)
    changed = x_train.copy()
    changed[::7] += 1.0  # rows the key's strided sample reads
    basis, cached = pca.cached_fit(changed, 3, tmp_path)
    assert not cached and pca.test_mse(basis, x_test) == pytest.approx(_sklearn_mse(changed, x_test, 3), rel=1e-6)
    fewer = changed[:250]
    assert not pca.cached_fit(fewer, 3, tmp_path)[1]
    # the decoded copy's index changed (the dataset was prepared again): fitted again
    assert pca.cached_fit(fewer, 3, tmp_path)[1]
    (tmp_path / "index.json").write_text(json.dumps({"files": [["train.array_record", 1, 3]]}))
    assert not pca.cached_fit(fewer, 3, tmp_path)[1]


def test_an_unwritable_folder_keeps_nothing_and_still_gives_the_baseline(tmp_path):
    missing = tmp_path / "not-there"  # writing into it fails: nothing kept, the fit is used
    x_train, x_test = _data()
    basis, cached = pca.cached_fit(x_train, 2, missing)
    assert not cached and not missing.exists()
    assert pca.test_mse(basis, x_test) == pytest.approx(_sklearn_mse(x_train, x_test, 2), rel=1e-6)


def test_the_scatter_summed_in_chunks_gives_sklearns_basis(monkeypatch):
    x_train, x_test = _data(n=400)
    whole = pca.fit(x_train, 4)
    monkeypatch.setattr(pca, "CHUNK_ROWS", 7)  # 43 chunks, the last one short
    chunked = pca.fit(x_train, 4)
    assert np.allclose(np.abs(chunked.components @ whole.components.T), np.eye(4), atol=1e-10)
    assert pca.test_mse(chunked, x_test) == pytest.approx(_sklearn_mse(x_train, x_test, 4), rel=1e-10)
    few = x_train[:20]  # fewer examples than features: the SVD of the centred data
    assert pca.test_mse(pca.fit(few, 4), x_test) == pytest.approx(_sklearn_mse(few, x_test, 4), rel=1e-10)


def test_the_test_error_and_variance_are_kept_with_the_basis(tmp_path):
    x_train, x_test = _data()
    expected = (_sklearn_mse(x_train, x_test, 3), float(np.var(x_test, axis=0).mean()))
    mse, variance, cached = pca.baseline(x_train, x_test, 3, tmp_path)
    assert not cached and mse == pytest.approx(expected[0], rel=1e-6) and variance == expected[1]
    assert pca.baseline(x_train, x_test, 3, tmp_path) == (mse, variance, True)  # read back, the same numbers
    assert pca.baseline(x_train, x_test, 3, None) == (mse, variance, False)  # no folder: computed alike
    other = x_test[:50].copy()  # another test split: its numbers computed, the basis kept
    file = pca.path(tmp_path, "train", 3)
    basis_bytes = np.load(file)["components"].tobytes()
    mse2, variance2, cached = pca.baseline(x_train, other, 3, tmp_path)
    assert not cached and mse2 == pytest.approx(_sklearn_mse(x_train, other, 3), rel=1e-6)
    assert variance2 == float(np.var(other, axis=0).mean()) and np.load(file)["components"].tobytes() == basis_bytes
    assert pca.baseline(x_train, other, 3, tmp_path)[2]


def test_damaged_or_missing_test_numbers_are_computed_again(tmp_path):
    x_train, x_test = _data()
    pca.cached_fit(x_train, 3, tmp_path)  # a file with the basis only (as an older aejax wrote it)
    mse, variance, cached = pca.baseline(x_train, x_test, 3, tmp_path)
    assert not cached and pca.cached_fit(x_train, 3, tmp_path)[1]  # the basis was read, not fitted again
    file = pca.path(tmp_path, "train", 3)
    with np.load(file) as saved:
        items = dict(saved)
    items["test_numbers"] = items["test_numbers"] * 2  # the checksum no longer matches
    np.savez(file, **items)
    assert pca.baseline(x_train, x_test, 3, tmp_path) == (mse, variance, False)
    assert pca.baseline(x_train, x_test, 3, tmp_path) == (mse, variance, True)
    changed = x_train.copy()
    changed[::7] += 1.0  # the training split changed: the basis and the test numbers both computed again
    mse3, _, cached = pca.baseline(changed, x_test, 3, tmp_path)
    assert not cached and mse3 == pytest.approx(_sklearn_mse(changed, x_test, 3), rel=1e-6)
