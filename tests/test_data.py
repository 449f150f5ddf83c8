"""Datasets: contents checked against scikit-learn and against the geometry they promise."""
import numpy as np
from omegaconf import OmegaConf
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from aejax.data import load_dataset
from aejax.data.digits import DigitsConfig
from aejax.data.synthetic import Layers3DConfig, Line2DConfig


def test_digits_is_scaled_stratified_and_split_like_sklearn():
    data = load_dataset(OmegaConf.structured(DigitsConfig()))
    assert data.x_train.shape == (1437, 8, 8, 1) and data.x_test.shape == (360, 8, 8, 1)
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0 and data.unit_range
    # every image of load_digits is in exactly one split, scaled by 1/16
    raw = load_digits().data / 16.0
    both = np.concatenate([data.x_train, data.x_test]).reshape(-1, 64)
    assert sorted(map(bytes, both.astype(np.float64))) == sorted(map(bytes, raw))
    # stratified: each class keeps its share in the test split (within one example)
    test_counts = np.bincount(data.y_test, minlength=10)
    expected = np.bincount(load_digits().target) * 0.2
    assert np.all(np.abs(test_counts - expected) <= 1)
    assert data.class_names == tuple("0123456789")


def test_line2d_lies_near_the_line_with_slope_0_9():
    data = load_dataset(OmegaConf.structured(Line2DConfig()))
    x = np.concatenate([data.x_train, data.x_test])
    assert x.shape == (1000, 2) and not data.unit_range
    pca = PCA(2).fit(x)
    direction = pca.components_[0]
    assert abs(direction[1] / direction[0] - 0.9) < 0.02
    assert pca.explained_variance_ratio_[0] > 0.99  # intrinsic dimension 1
    # the orthogonal offset has the configured std of 0.1
    normal = np.array([-0.9, 1.0]) / np.hypot(1.0, 0.9)
    assert abs((x @ normal).std() - 0.1) < 0.01


def test_layers3d_sheets_are_labelled_and_separable_in_the_plane():
    cfg = Layers3DConfig()
    data = load_dataset(OmegaConf.structured(cfg))
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    assert x.shape == (cfg.num_layers * cfg.points_per_layer, 3)
    assert np.bincount(y).tolist() == [cfg.points_per_layer] * cfg.num_layers
    # stacked sheets: height = layer offset + wave * sin(1.5 x1) + noise of std 0.03
    flat = x[:, 2] - cfg.wave * np.sin(1.5 * x[:, 0]) - (y - 1.0)
    assert abs(flat.mean()) < 0.01 and abs(flat.std() - cfg.noise) < 0.005
    centres = np.array([x[y == k, :2].mean(axis=0) for k in range(cfg.num_layers)])
    assert np.min(np.linalg.norm(centres[:, None] - centres[None], axis=-1) + 9 * np.eye(3)) > 3.0
    assert len(data.x_test) == round(0.2 * len(x))


def test_generated_data_depends_on_its_own_seed_only():
    a = load_dataset(OmegaConf.structured(Line2DConfig()))
    b = load_dataset(OmegaConf.structured(Line2DConfig()))
    c = load_dataset(OmegaConf.structured(Line2DConfig(data_seed=1)))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.allclose(a.x_train, c.x_train)


def test_the_digits_split_is_cached_exactly_and_read_back_without_importing_sklearn(tmp_path):
    import subprocess
    import sys

    from sklearn.model_selection import train_test_split

    from aejax.data.digits import cached_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    x_train, x_test, y_train, y_test = train_test_split(x, bunch.target.astype(np.int32), test_size=0.2,
                                                        stratify=bunch.target, random_state=42)
    expected = (x_train, y_train, x_test, y_test)
    first, cached = cached_split(0.2, 42, tmp_path)
    assert not cached and (tmp_path / "split-0.2-42.npz").is_file()
    again, cached = cached_split(0.2, 42, tmp_path)
    assert cached
    for a, b, c in zip(expected, first, again):
        assert a.dtype == b.dtype == c.dtype and np.array_equal(a, b) and np.array_equal(a, c)
    other, cached = cached_split(0.2, 7, tmp_path)  # another split seed: its own copy
    assert not cached and not np.array_equal(other[3], first[3])
    # a run reads the copy without importing scikit-learn (1.2-2 s of its start)
    code = ("import sys; from aejax.data.digits import cached_split; from pathlib import Path; "
            f"a, c = cached_split(0.2, 42, Path({str(tmp_path)!r})); print(c, 'sklearn' in sys.modules, a[0].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "(1437,", "8,", "8,", "1)"]
    # a damaged copy is split again and written again
    (tmp_path / "split-0.2-42.npz").write_bytes(b"not an npz")
    mended, cached = cached_split(0.2, 42, tmp_path)
    assert not cached and np.array_equal(mended[2], expected[2])
    assert cached_split(0.2, 42, tmp_path)[1]
