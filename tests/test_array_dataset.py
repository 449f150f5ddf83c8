"""dataset=array: your own .npy/.npz arrays, with or without labels, through every default."""
import json
import re
import sys

import numpy as np
import pytest
from conftest import compose_config, run_cli
from explorer_helpers import browser  # noqa: F401  (the headless Chromium fixture)

from aejax.analysis.snapshot import select_probe, table_columns, table_rows
from aejax.analysis.snapshot_files import load_snapshots
from aejax.data import Dataset, as_dataset, load_dataset
from aejax.errors import ConfigError, DataError

TINY = ("encoder.hidden=[8]", "decoder.hidden=[8]", "trainer.batch_size=16", "trainer.progress=off")


def _load(path, *overrides):
    return load_dataset(compose_config("dataset=array", f"dataset.path={path}", *overrides).dataset)


def test_npy_is_split_by_test_fraction_with_a_seeded_shuffle(tmp_path):
    x = np.arange(50 * 4, dtype=np.float64).reshape(50, 4)  # float64, real-valued: row i starts at 4i
    np.save(tmp_path / "acts.npy", x)
    d = _load(tmp_path / "acts.npy")
    assert d.name == "acts" and not d.labeled and d.y_train is None and d.class_names == ()
    assert d.x_train.shape == (40, 4) and d.x_test.shape == (10, 4)
    assert d.x_train.dtype == np.float32 and d.x_test.dtype == np.float32 and not d.unit_range
    rows = np.concatenate([d.x_train, d.x_test])[:, 0] // 4
    assert sorted(rows.tolist()) == list(range(50))  # every example once, in one split
    assert not np.array_equal(rows[:40], np.arange(40))  # shuffled before the split
    again = _load(tmp_path / "acts.npy")
    np.testing.assert_array_equal(again.x_test, d.x_test)
    other = _load(tmp_path / "acts.npy", "dataset.split_seed=1", "dataset.test_fraction=0.3", "dataset.name=mine")
    assert other.name == "mine" and len(other.x_test) == 15 and not np.array_equal(other.x_test[:10], d.x_test)

    np.save(tmp_path / "unit.npy", np.random.default_rng(0).random((20, 3, 3, 1)))
    u = _load(tmp_path / "unit.npy")
    assert u.unit_range and u.example_shape == (3, 3, 1) and (len(u.x_train), len(u.x_test)) == (16, 4)


def test_npz_keeps_its_split_labels_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "emb.npz", x_train=rng.random((30, 5)), x_test=rng.random((8, 5)),
             y_train=np.arange(30) % 3, y_test=np.arange(8) % 3, class_names=np.array(["a", "b", "c"]))
    d = _load(tmp_path / "emb.npz")
    assert d.name == "emb" and d.labeled and d.unit_range and d.class_names == ("a", "b", "c")
    assert d.x_train.shape == (30, 5) and d.y_test.dtype == np.int32 and d.y_test.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]

    np.savez(tmp_path / "plain.npz", x_train=rng.normal(size=(6, 2)), x_test=rng.normal(size=(4, 2)))
    p = _load(tmp_path / "plain.npz")
    assert not p.labeled and p.y_train is None and not p.unit_range


def test_as_dataset_takes_a_dataset_or_a_mapping_of_array_likes():
    d = as_dataset({"x_train": [[0.0, 1.0], [1.0, 0.5], [0.2, 0.2]], "x_test": [[0, 1], [1, 1]],
                    "y_train": ["cat", "dog", "cat"], "y_test": ["dog", "ant"]}, "pets")
    assert d.name == "pets" and d.x_test.dtype == np.float32 and d.unit_range
    assert d.class_names == ("ant", "cat", "dog") and d.y_train.tolist() == [1, 2, 1] and d.y_test.tolist() == [2, 0]
    assert as_dataset(d, "ignored") is d
    with pytest.raises(DataError, match="x_test"):
        as_dataset({"x_train": np.zeros((3, 2))}, "half")
    with pytest.raises(DataError, match="y_train without y_test"):
        as_dataset({"x_train": np.zeros((3, 2)), "x_test": np.zeros((2, 2)), "y_train": [0, 1, 0]}, "one-sided")
    with pytest.raises(DataError, match="unknown key.*train"):
        as_dataset({"x_train": np.zeros((3, 2)), "x_test": np.zeros((2, 2)), "train": 1}, "typo")
    with pytest.raises(DataError, match="y_test.*one label per example"):
        as_dataset({"x_train": np.zeros((3, 2)), "x_test": np.zeros((2, 2)), "y_train": [0, 1, 0], "y_test": [0]}, "n")
    with pytest.raises(DataError, match="class_names has 1 names"):
        as_dataset({"x_train": np.zeros((3, 2)), "x_test": np.zeros((2, 2)), "y_train": [0, 1, 0], "y_test": [0, 1],
                    "class_names": ["only"]}, "names")


def _bad_files(tmp_path):
    """(file, the error it raises, the key or array its message names)."""
    (tmp_path / "folder.npy").mkdir()
    (tmp_path / "table.csv").write_text("1,2\n3,4\n")
    np.savez(tmp_path / "no_test.npz", x_train=np.zeros((4, 2)))
    np.savez(tmp_path / "shapes.npz", x_train=np.zeros((4, 2)), x_test=np.zeros((3, 3)))
    np.savez(tmp_path / "one_test.npz", x_train=np.zeros((4, 2)), x_test=np.zeros((1, 2)))
    np.save(tmp_path / "three.npy", np.zeros((3, 2)))
    np.save(tmp_path / "words.npy", np.array([["a", "b"], ["c", "d"], ["e", "f"]]))
    np.save(tmp_path / "objects.npy", np.array([[1, None]] * 10, dtype=object), allow_pickle=True)
    nan = np.zeros((10, 2))
    nan[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.savez(tmp_path / "inf.npz", x_train=np.zeros((4, 2)), x_test=np.array([[0, 1], [np.inf, 0]]))
    np.savez(tmp_path / "flat.npz", x_train=np.zeros(4), x_test=np.zeros(3))
    return [("missing.npy", ConfigError, "dataset.path"), ("folder.npy", ConfigError, "dataset.path"),
            ("table.csv", ConfigError, "dataset.path"), ("no_test.npz", DataError, "x_test"),
            ("shapes.npz", DataError, "x_train's examples have shape"), ("one_test.npz", DataError, "x_test has 1"),
            ("three.npy", ConfigError, "dataset.test_fraction"), ("words.npy", DataError, "numeric"),
            ("objects.npy", DataError, "numeric"), ("nan.npy", DataError, "NaN/Inf.*index \\(7, 1\\)"),
            ("inf.npz", DataError, "x_test has 1 NaN/Inf"), ("flat.npz", DataError, "x_train must be \\[N, ...\\]")]


def test_every_bad_file_is_a_clear_error_naming_the_key(tmp_path):
    for name, error, named in _bad_files(tmp_path):
        with pytest.raises(error) as e:
            _load(tmp_path / name)
        text = e.value.key if isinstance(e.value, ConfigError) else str(e.value)
        assert re.search(named, text), (name, str(e.value))
        if isinstance(e.value, DataError):
            assert name in str(e.value)  # which file
    np.save(tmp_path / "ok.npy", np.zeros((10, 2)))
    with pytest.raises(ConfigError) as e:
        _load(tmp_path / "ok.npy", "dataset.test_fraction=1.5")
    assert e.value.key == "dataset.test_fraction"


def test_checks_against_the_data_refuse_what_unlabeled_or_real_valued_arrays_cannot_do(tmp_path):
    from aejax.assemble import check_against_data
    from aejax.experiment import run

    np.save(tmp_path / "acts.npy", np.random.default_rng(0).normal(size=(40, 16)))
    for override, key in [("eval.anomaly={normal_classes:[0]}", "eval.anomaly"), ("model.output=sigmoid", "model.output"),
                          ("variant.recon=bce", "variant.recon")]:
        cfg = compose_config("dataset=array", f"dataset.path={tmp_path / 'acts.npy'}", *TINY, override)
        with pytest.raises(ConfigError) as e:
            check_against_data(cfg, load_dataset(cfg.dataset))
        assert e.value.key == key
    with pytest.raises(ConfigError) as e:  # before training: nothing written
        run(compose_config("dataset=array", f"dataset.path={tmp_path / 'acts.npy'}", *TINY, "logger.mode=disabled",
                           "eval.anomaly={normal_classes:[0]}"), tmp_path / "run")
    assert e.value.key == "eval.anomaly" and not (tmp_path / "run" / "snapshots").exists()


def test_snapshot_tables_and_probe_without_labels():
    assert table_columns(2, labeled=False) == ["z_0", "z_1", "grad_0", "grad_1", "loss", "step"]
    arrays = {"z": np.ones((3, 2)), "grad": np.zeros((3, 2)), "loss": np.arange(3.0), "step": np.int64(5)}
    assert table_rows(arrays, ()) == [[1.0, 1.0, 0.0, 0.0, float(i), 5] for i in range(3)]
    np.testing.assert_array_equal(select_probe(30, 10, seed=0), select_probe(np.zeros(30), 10, seed=0))


def _page_data(html: str) -> dict:
    (payload,) = re.findall(r'<script[^>]*id="aejax-data"[^>]*>(.*?)</script>', html, re.S)
    return json.loads(payload.replace("<\\/", "</"))


def test_unlabeled_npy_trains_through_the_cli_with_every_default_on(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 16)) @ rng.normal(size=(16, 16)) * 0.3
    np.save(tmp_path / "acts.npy", x)
    run_dir = tmp_path / "run"
    r = run_cli("dataset=array", f"dataset.path={tmp_path / 'acts.npy'}", "trainer.epochs=2", "logger.mode=offline",
                *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert len(re.findall("has no labels", out)) == 1, out
    assert "dataset acts has no labels: probe/kNN accuracy" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and "test/mse" in summary and summary["snapshots"] == 2
    assert not any("probe" in k or "knn" in k or "anomaly" in k for k in summary)
    assert "test/bce" not in summary and "test/psnr" not in summary  # real-valued: identity output

    probe, snaps = load_snapshots(run_dir)
    assert "labels" not in probe and len(probe["class_names"]) == 0 and probe["x"].shape == (12, 16)
    assert all("labels" not in s for s in snaps) and (run_dir / "media" / "latent_evolution.png").is_file()
    # the probe set is the whole test split here: the last snapshot's reconstructions give test/mse
    assert np.mean((snaps[-1]["recon"].astype(np.float64) - probe["x"]) ** 2) == pytest.approx(summary["test/mse"],
                                                                                                rel=2e-3)

    from aejax.tracking.wandb_file import read_run

    (files,) = (run_dir / "wandb").glob("offline-run-*/files")
    tables = [row["latent/table"] for row in read_run(run_dir).history if "latent/table" in row]
    assert len(tables) == 2
    assert json.loads((files / tables[-1]["path"]).read_text())["columns"] == table_columns(2, labeled=False)

    e = run_cli(str(run_dir), "-o", str(tmp_path / "page.html"), cwd=tmp_path,
                command=(sys.executable, "-m", "aejax.analysis.explorer"))
    assert e.returncode == 0, e.stderr
    page = _page_data((tmp_path / "page.html").read_text())
    assert page["labeled"] is False and page["class_names"] == [] and page["header"]["dataset"] == "acts"
    assert len(page["labels"]) == 12 and [len(s["z"]) for s in page["snapshots"]] == [12, 12]


def test_labeled_npz_run_uses_its_labels(tmp_path):
    from aejax.experiment import run

    rng = np.random.default_rng(1)
    centres = rng.random((3, 16))
    y_train, y_test = np.arange(48) % 3, np.arange(12) % 3
    clip = lambda a: np.clip(a, 0, 1)  # noqa: E731
    np.savez(tmp_path / "blobs.npz", x_train=clip(centres[y_train] + 0.05 * rng.normal(size=(48, 16))),
             x_test=clip(centres[y_test] + 0.05 * rng.normal(size=(12, 16))), y_train=y_train, y_test=y_test,
             class_names=np.array(["a", "b", "c"]))
    run(compose_config("dataset=array", f"dataset.path={tmp_path / 'blobs.npz'}", *TINY, "trainer.epochs=1",
                       "logger.mode=disabled", "eval.knn_k=3"), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {"test/probe_accuracy", "test/knn_accuracy", "test/bce", "test/psnr"} <= set(summary)  # [0, 1]: sigmoid
    probe, snaps = load_snapshots(tmp_path / "run")
    assert list(probe["class_names"]) == ["a", "b", "c"] and sorted(set(probe["labels"].tolist())) == [0, 1, 2]
    np.testing.assert_array_equal(snaps[-1]["labels"], probe["labels"])


def test_a_dataset_without_labels_constructs():
    d = Dataset("u", np.zeros((3, 2), np.float32), None, np.zeros((2, 2), np.float32), None, (), unit_range=True)
    assert not d.labeled and d.example_shape == (2,)


def test_the_cli_exits_2_for_a_bad_path_and_3_for_bad_values(tmp_path):
    bad = np.zeros((10, 2))
    bad[7, 1] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    for path, code, says in [("missing.npy", 2, "dataset.path: no file missing.npy"), ("inf.npy", 3, "NaN/Inf")]:
        r = run_cli("dataset=array", f"dataset.path={path}", "logger.mode=disabled", f"hydra.run.dir={tmp_path / 'r'}",
                    cwd=tmp_path)
        assert r.returncode == code and says in r.stderr, (path, r.returncode, r.stderr[-2000:])


def test_the_explorer_page_without_labels_works_in_a_headless_browser(tmp_path, browser):  # noqa: F811
    from explorer_helpers import fake_run, open_page, wait_for_ink

    from aejax.analysis.explorer import write_explorer

    run_dir = fake_run(tmp_path / "run", shape=(8, 8, 1))
    for path in (run_dir / "snapshots").glob("*.npz"):  # as a run on data without labels writes them
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files if k != "labels"}
        if path.name == "probe.npz":
            arrays["class_names"] = np.array([], dtype=str)
        np.savez(path, **arrays)
    driver = open_page(browser, write_explorer(run_dir, tmp_path / "page.html"))
    assert wait_for_ink(driver, "scatter") > 0
    assert driver.find_element("id", "legend").text == "no labels: the points are not coloured by class"
    colors = driver.execute_script("return window.aejaxExplorer === undefined ? null : "
                                   "JSON.parse(document.getElementById('aejax-data').textContent).colors")
    assert colors is not None and len(colors) == 1
