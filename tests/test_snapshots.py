"""Latent snapshots: the gradients, the projection, the files and what W&B holds."""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import wandb
from conftest import compose_config
from sklearn.decomposition import PCA

from aejax.analysis.figures import tile
from aejax.analysis.snapshot import Projection, limits_of, make_snapshot_fn, select_probe, table_columns
from aejax.analysis.snapshot_files import load_snapshots
from aejax.assemble import build_model
from aejax.errors import ConfigError
from aejax.experiment import run
from aejax.tracking.wandb_file import read_run
from aejax.variants.losses import RECON_LOSSES
from flax import nnx

TINY = ("encoder.hidden=[16]", "decoder.hidden=[16]", "trainer.batch_size=256", "eval.enabled=false",
        "trainer.progress=off", "snapshot.probe_size=64", "snapshot.grid=5", "snapshot.figure_budget=null")


def _snapshot(*overrides, x=None, shape=(8, 8, 1)):
    cfg = compose_config(*TINY, "decoder.activation=tanh", *overrides)  # smooth: no kinks for the differences
    model = build_model(cfg, shape, "sigmoid", jax.random.key(3))
    graphdef, params = nnx.split(model)
    x = np.random.default_rng(0).random((12, *shape), dtype=np.float32) if x is None else x
    noise = jax.random.normal(jax.random.key(1), (4, cfg.model.latent_dim)) if cfg.variant.head == "gaussian" else None
    fn = make_snapshot_fn(graphdef, cfg.variant.recon, cfg.snapshot.grid, cfg.snapshot.interp_steps)
    out = jax.device_get(fn(params, x, noise, jnp.array([0, 5])))
    return cfg, model, x, out


@pytest.mark.parametrize("variant,k", [("vanilla", 2), ("vae", 3)])
def test_latent_gradient_equals_central_finite_differences(variant, k):
    cfg, model, x, out = _snapshot(f"variant={variant}", f"model.latent_dim={k}", "variant.recon=bce")
    recon = RECON_LOSSES[cfg.variant.recon]

    def loss(z):  # each point's reconstruction loss from its own code
        return np.asarray(recon(x, model.decode_logits(z), model.activate), np.float64)

    z, h = out["z"], 3e-3
    fd = np.zeros_like(z, dtype=np.float64)
    for d in range(k):
        step = np.zeros_like(z)
        step[:, d] = h
        fd[:, d] = (loss(z + step) - loss(z - step)) / (2 * h)
    np.testing.assert_allclose(out["grad"], fd, rtol=2e-2, atol=2e-5)
    np.testing.assert_allclose(out["loss"], loss(z), rtol=1e-6)
    assert np.abs(out["grad"]).max() > 1e-4  # not trivially zero
    # a point's gradient does not depend on the other points in the probe set
    _, _, _, alone = _snapshot(f"variant={variant}", f"model.latent_dim={k}", "variant.recon=bce", x=x[3:4])
    np.testing.assert_allclose(alone["grad"][0], out["grad"][3], rtol=1e-5, atol=1e-8)


def test_decoded_grid_and_vae_pictures_are_decodings_at_their_coordinates():
    _, model, x, out = _snapshot("model.latent_dim=2")
    g = len(out["grid_z1"])
    assert out["grid_decoded"].shape == (g * g, 8, 8, 1) and np.all(np.diff(out["grid_z2"]) > 0)
    for i, j in [(0, 0), (1, 3), (4, 2)]:  # row i: z2 = grid_z2[i]; column j: z1 = grid_z1[j]
        expected = model.decode(jnp.array([[out["grid_z1"][j], out["grid_z2"][i]]]))[0]
        np.testing.assert_allclose(out["grid_decoded"][i * g + j], expected, atol=1e-3)
    z = out["z"]  # the lattice spans the codes
    assert out["grid_z1"][0] < z[:, 0].min() and z[:, 0].max() < out["grid_z1"][-1]

    _, model, x, out = _snapshot("variant=vae", "model.latent_dim=3")
    assert "grid_decoded" not in out and out["samples"].shape == (4, 8, 8, 1)
    np.testing.assert_allclose(out["interp"][0], model.decode(model.encode(x[:1]))[0], atol=1e-3)
    np.testing.assert_allclose(out["interp"][-1], model.decode(model.encode(x[5:6]))[0], atol=1e-3)


def test_the_projection_moves_gradients_with_their_points():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 6)) @ np.diag([5, 3, 1, 0.5, 0.2, 0.1]) + 4.0
    g = rng.normal(size=(200, 6))
    proj = Projection(6).fit(z.astype(np.float32))
    for eps in (1e-3, 0.1, 2.0):
        np.testing.assert_allclose(proj.points(z + eps * g), proj.points(z) + eps * proj.directions(g), atol=1e-4)
    # it is PCA: the same plane as scikit-learn's, axis by axis up to sign
    reference = PCA(2).fit(z)
    np.testing.assert_allclose(np.abs(proj.components.T @ reference.components_.T), np.eye(2), atol=1e-4)
    np.testing.assert_allclose(np.abs(proj.points(z)), np.abs(reference.transform(z)), atol=1e-3)
    # refitting keeps each axis pointing the way it did (the view does not flip between snapshots)
    before = proj.components.copy()
    proj.fit(-(z + 0.01 * rng.normal(size=z.shape)).astype(np.float32))
    assert np.all(np.sum(proj.components * before, axis=0) > 0.99)
    # 2-D codes are shown as they are
    two = Projection(2).fit(z[:, :2].astype(np.float32))
    np.testing.assert_array_equal(two.points(z[:, :2]), z[:, :2].astype(np.float32))


def test_probe_set_and_limits():
    labels = np.arange(1000) % 10
    a, b = select_probe(labels, 100, seed=0), select_probe(labels, 100, seed=0)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 100 and not np.array_equal(a, select_probe(labels, 100, seed=1))
    assert len(select_probe(labels[:30], 100, seed=0)) == 30
    limits = limits_of(np.array([[0.0, 0.0], [1.0, 2.0]]))
    assert limits[0] < 0 < 1 < limits[1] and limits[2] < 0 < 2 < limits[3]
    assert limits_of(np.array([[0.5, 0.5]]), limits) is limits  # inside: unchanged
    grown = limits_of(np.array([[3.0, 0.5]]), limits)
    assert grown[1] > 3 and grown[0] == limits[0] and tuple(grown[2:]) == tuple(limits[2:])


@pytest.fixture
def offline(monkeypatch):
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")


def _files_dir(run_dir: Path) -> Path:
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    return folder / "files"


def test_npz_files_and_the_wandb_tables_and_images_agree(tmp_path, offline):
    cfg = compose_config(*TINY, "trainer.epochs=5", "snapshot.every=2", "logger.mode=offline", "logger.name=snaps")
    run(cfg, tmp_path)
    wandb.teardown()  # flushes the .wandb file
    probe, snaps = load_snapshots(tmp_path)
    steps = [int(s["step"]) for s in snaps]
    spe = 6  # 1437 digits / batch 256
    assert steps == [0, 2 * spe, 4 * spe, 5 * spe]  # first, every 2 epochs, last
    assert probe["x"].shape == (64, 8, 8, 1) and list(probe["class_names"]) == [str(d) for d in range(10)]

    history = read_run(tmp_path).history
    tables = {row["_step"]: row["latent/table"] for row in history if "latent/table" in row}
    images = {row["_step"]: row for row in history if "latent/scatter" in row}
    assert sorted(tables) == steps and sorted(images) == steps
    files = _files_dir(tmp_path)
    for snap in snaps:
        step = int(snap["step"])
        table = json.loads((files / tables[step]["path"]).read_text())
        assert table["columns"] == table_columns(2)
        data = np.array([row[:4] + [row[4], row[6], row[7]] for row in table["data"]], np.float64)
        np.testing.assert_allclose(data[:, :2], snap["z"], rtol=1e-6)
        np.testing.assert_allclose(data[:, 2:4], snap["grad"], rtol=1e-6)
        np.testing.assert_array_equal(data[:, 4], snap["labels"])
        np.testing.assert_allclose(data[:, 5], snap["loss"], rtol=1e-6)
        assert set(data[:, 6]) == {step} and {row[5] for row in table["data"]} <= set(probe["class_names"])
        for key in ("latent/scatter", "latent/reconstructions", "latent/manifold"):
            entry = images[step][key]
            assert entry["_type"] == "image-file" and (files / entry["path"]).stat().st_size > 1000
        assert (tmp_path / "media" / "latent" / f"step_{step:07d}.png").is_file()
        hist = images[step]["latent/hist/z_0"]
        assert hist["_type"] == "histogram" and sum(hist["values"]) == 64
    # the snapshots watch the same probe points as they move
    np.testing.assert_array_equal(snaps[0]["labels"], snaps[-1]["labels"])
    assert not np.allclose(snaps[0]["z"], snaps[-1]["z"])
    assert any("latent/evolution" in row for row in history) and (tmp_path / "media" / "latent_evolution.png").is_file()


def test_vae_and_vector_data_snapshots_and_the_explorer_in_wandb(tmp_path, offline):
    cfg = compose_config(*TINY, "variant=vae", "model.latent_dim=4", "trainer.epochs=2", "snapshot.samples=9",
                         "logger.mode=offline", "snapshot.explorer=true")
    run(cfg, tmp_path / "vae")
    wandb.teardown()
    _, snaps = load_snapshots(tmp_path / "vae")
    assert snaps[-1]["samples"].shape == (9, 8, 8, 1) and snaps[-1]["z_2d"].shape == (64, 2)
    history = read_run(tmp_path / "vae").history
    assert any("vae/samples" in row and "vae/interpolation" in row for row in history)
    (page,) = [row["latent/explorer"] for row in history if "latent/explorer" in row]
    assert page["_type"] == "html-file" and (tmp_path / "vae" / "explorer.html").is_file()

    cfg = compose_config(*TINY, "dataset=layers3d", "trainer.epochs=2", "logger.mode=disabled")
    run(cfg, tmp_path / "points")
    _, snaps = load_snapshots(tmp_path / "points")
    assert snaps[-1]["recon"].shape == (64, 3) and snaps[-1]["grid_decoded"].shape == (25, 3)
    assert (tmp_path / "points" / "media" / "reconstructions" / f"step_{int(snaps[-1]['step']):07d}.png").is_file()


def test_over_the_figure_budget_only_the_first_and_last_snapshots_get_figures(tmp_path):
    cfg = compose_config(*TINY, "trainer.epochs=4", "snapshot.every=1", "snapshot.figure_budget=1e-9",
                         "logger.mode=disabled")
    run(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["snapshots"] == 5 and summary["snapshot_figures"] == 2
    assert len(list((tmp_path / "snapshots").glob("step_*.npz"))) == 5  # arrays at every snapshot
    assert sorted(p.name for p in (tmp_path / "media" / "latent").iterdir()) == ["step_0000000.png", "step_0000024.png"]


def test_tile_places_images_row_major_with_gaps():
    images = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 2, 3, 1), np.float32)
    mosaic = tile(images, 2, 3, gap=1, fill=9)[..., 0]
    expected = np.array([[0, 0, 0, 9, 1, 1, 1, 9, 2, 2, 2],
                         [0, 0, 0, 9, 1, 1, 1, 9, 2, 2, 2],
                         [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9],
                         [3, 3, 3, 9, 4, 4, 4, 9, 9, 9, 9],
                         [3, 3, 3, 9, 4, 4, 4, 9, 9, 9, 9]])
    np.testing.assert_array_equal(mosaic, expected)


def test_snapshots_off_and_bad_settings(tmp_path):
    cfg = compose_config(*TINY, "trainer.epochs=1", "snapshot.every=0", "logger.mode=disabled")
    run(cfg, tmp_path)
    assert not (tmp_path / "snapshots").exists() and not (tmp_path / "media").exists()
    for override, key in [("snapshot.every=-1", "snapshot.every"), ("snapshot.grid=1", "snapshot.grid"),
                          ("snapshot.probe_size=0", "snapshot.probe_size")]:
        with pytest.raises(ConfigError) as e:
            compose_config(override)
        assert e.value.key == key


def test_load_snapshots_sorts_by_step_and_names_a_file_that_does_not_match(tmp_path):
    import numpy as np
    import pytest

    from aejax.analysis.snapshot_files import SnapshotError, snapshot_name

    folder = tmp_path / "snapshots"
    folder.mkdir()
    np.savez(folder / "probe.npz", x=np.zeros((3, 4)), labels=np.arange(3))
    keys = dict(epoch=1, z=np.zeros((3, 2)), grad=np.zeros((3, 2)), loss=np.zeros(3), z_2d=np.zeros((3, 2)),
                grad_2d=np.zeros((3, 2)), recon=np.zeros((3, 4)))
    for step in (20, 3, 100):
        np.savez(folder / f"{snapshot_name(step)}.npz", step=step, **keys)
    probe, snaps = load_snapshots(tmp_path)
    assert probe["x"].shape == (3, 4) and [int(s["step"]) for s in snaps] == [3, 20, 100]
    np.savez(folder / f"{snapshot_name(7)}.npz", step=7, **{**keys, "z": np.zeros((5, 2))})
    with pytest.raises(SnapshotError, match=r"step_0000007\.npz does not match .*another number of points"):
        load_snapshots(tmp_path)
    np.savez(folder / f"{snapshot_name(7)}.npz", step=7, **{k: v for k, v in keys.items() if k != "recon"})
    with pytest.raises(SnapshotError, match="missing recon"):
        load_snapshots(tmp_path)
