"""Figures drawn by a painter that drew another run's figure first (the runs of one program share
their painters) are pixel for pixel those a fresh painter draws: nothing of the first run's
points, colours, limits or titles is left in the second's."""
import numpy as np
from PIL import Image

from aejax.analysis.figures import Evolution, ImageRows, LatentScatter, point_colors

NAMES = [str(i) for i in range(10)]


def _run(seed, n=60, panels=5):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10)
    frames = [(rng.normal(size=(n, 2)) * (1 + p), rng.normal(size=(n, 2)), f"step {p * 10 + seed}") for p in range(panels)]
    allp = np.concatenate([f[0] for f in frames])
    limits = np.array([allp[:, 0].min(), allp[:, 0].max(), allp[:, 1].min(), allp[:, 1].max()])
    return labels, frames, limits


def _pixels(path):
    return np.asarray(Image.open(path))


def test_a_shared_evolution_painter_draws_each_run_as_a_fresh_one(tmp_path):
    a, b = _run(0), _run(1)
    shared = Evolution(5, a[0], NAMES, 60)
    shared.draw(tmp_path / "a.png", a[1], a[2], point_colors(a[0], NAMES, 60))
    shared.draw(tmp_path / "b_shared.png", b[1], b[2], point_colors(b[0], NAMES, 60))
    Evolution(5, b[0], NAMES, 60).draw(tmp_path / "b_fresh.png", b[1], b[2])
    assert np.array_equal(_pixels(tmp_path / "b_shared.png"), _pixels(tmp_path / "b_fresh.png"))
    assert not np.array_equal(_pixels(tmp_path / "a.png"), _pixels(tmp_path / "b_fresh.png"))


def test_a_shared_scatter_painter_draws_each_run_as_a_fresh_one(tmp_path):
    (la, fa, lima), (lb, fb, limb) = _run(0, panels=1), _run(1, panels=1)
    shared = LatentScatter(la, NAMES)
    shared.draw(tmp_path / "a.png", fa[0][0], fa[0][1], lima, "run a", point_colors(la, NAMES, 60))
    shared.draw(tmp_path / "b_shared.png", fb[0][0], fb[0][1], limb, "run b", point_colors(lb, NAMES, 60))
    LatentScatter(lb, NAMES).draw(tmp_path / "b_fresh.png", fb[0][0], fb[0][1], limb, "run b")
    assert np.array_equal(_pixels(tmp_path / "b_shared.png"), _pixels(tmp_path / "b_fresh.png"))


def test_a_shared_image_painter_draws_each_run_as_a_fresh_one(tmp_path):
    rng = np.random.default_rng(0)
    rows_a, rows_b = ([rng.uniform(size=(6, 8, 8, 1)).astype(np.float32) for _ in range(2)] for _ in range(2))
    shared = ImageRows(["input", "output"])
    shared.draw(tmp_path / "a.png", rows_a, "run a")
    shared.draw(tmp_path / "b_shared.png", rows_b, "run b")
    ImageRows(["input", "output"]).draw(tmp_path / "b_fresh.png", rows_b, "run b")
    assert np.array_equal(_pixels(tmp_path / "b_shared.png"), _pixels(tmp_path / "b_fresh.png"))
