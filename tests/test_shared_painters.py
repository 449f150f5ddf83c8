"""Figures drawn by a painter that drew another run's figure first (the runs of one program share
their painters) are pixel for pixel those a fresh painter draws: nothing of the first run's
points, colours, limits or titles is left in the second's."""
from pathlib import Path

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


def _pngs(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*.png"))}


def test_a_seed_batchs_figures_drawn_in_forked_processes_are_those_drawn_in_process(tmp_path, monkeypatch):
    """Both seeds' figures (first and last snapshots, evolution) file for file, byte for byte."""
    from conftest import compose_config

    from aejax.experiment import run

    small = ("encoder.hidden=[16]", "decoder.hidden=[16]", "trainer.epochs=2", "trainer.num_seeds=2",
             "snapshot.every=1", "snapshot.probe_size=40", "snapshot.grid=4", "snapshot.figure_budget=null",
             "eval.enabled=false", "logger.mode=disabled", "trainer.progress=off")
    out = {}
    for processes in ("1", "2"):
        monkeypatch.setenv("AEJAX_FIGURE_PROCESSES", processes)
        run(compose_config(*small), tmp_path / processes)
        out[processes] = {seed: _pngs(tmp_path / processes / f"seed_{seed}") for seed in (0, 1)}
    for seed in (0, 1):
        names = sorted(out["1"][seed])
        # 3 snapshots x (scatter, reconstructions, manifold) and the evolution figure
        assert len(names) == 10 and sorted(out["2"][seed]) == names
        for name in names:
            assert out["1"][seed][name] == out["2"][seed][name], name
    assert out["1"][0][Path("media/latent_evolution.png")] != out["1"][1][Path("media/latent_evolution.png")]


def test_figures_a_failed_process_owed_are_drawn_again_here_and_logged_in_order(tmp_path, monkeypatch, caplog):
    import os

    from aejax.analysis.painters import Painters

    monkeypatch.setenv("AEJAX_FIGURE_PROCESSES", "3")
    parent, logged = os.getpid(), []

    def paint(i):
        def draw():
            if i == 1 and os.getpid() != parent:
                raise RuntimeError("a figure process fails")  # in its child only: the parent's redraw succeeds
            (tmp_path / f"{i}.txt").write_text(f"{i} by {'parent' if os.getpid() == parent else 'child'}")
        return draw

    painters = Painters(runs=5)
    for i in range(5):
        painters.submit(paint(i), lambda spent, i=i: logged.append((i, (tmp_path / f"{i}.txt").is_file(), spent)))
    assert logged == [] and not list(tmp_path.iterdir())  # owed, not drawn, until the loop says
    with caplog.at_level("WARNING"):
        painters.draw()
    # shares 0::3 here, 1::3 and 2::3 in two children: the one of figure 1 failed and was drawn here
    assert [(i, there) for i, there, _ in logged] == [(i, True) for i in range(5)]
    assert all(spent > 0 for *_, spent in logged)
    by = {i: (tmp_path / f"{i}.txt").read_text().split(" by ")[1] for i in range(5)}
    assert by == {0: "parent", 1: "parent", 2: "child", 3: "parent", 4: "parent"}
    assert "a figure process failed" in caplog.text
    painters.draw()  # nothing owed: nothing logged again
    assert len(logged) == 5
