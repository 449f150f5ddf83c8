"""Figures drawn by a painter that drew another run's figure first (the runs of one program share
their painters) are pixel for pixel those a fresh painter draws: nothing of the first run's
points, colours, limits or titles is left in the second's."""
import json
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


def _each_way(tmp_path, monkeypatch, *overrides):
    """A small seed batch of 2 with figures at every snapshot, into ``tmp_path/<processes>``: drawn in
    process (``AEJAX_FIGURE_PROCESSES=1``), then by figure processes (2); yields each way's name once run."""
    from conftest import compose_config

    from aejax.experiment import run

    small = ("encoder.hidden=[16]", "decoder.hidden=[16]", "trainer.num_seeds=2", "snapshot.every=1",
             "snapshot.probe_size=40", "snapshot.grid=4", "snapshot.figure_budget=null", "eval.enabled=false",
             "trainer.progress=off", *overrides)
    for processes in ("1", "2"):
        monkeypatch.setenv("AEJAX_FIGURE_PROCESSES", processes)
        run(compose_config(*small), tmp_path / processes)
        yield processes


def test_a_seed_batchs_figures_drawn_in_forked_processes_are_those_drawn_in_process(tmp_path, monkeypatch):
    """Both seeds' figures (first and last snapshots, evolution) file for file, byte for byte."""
    out = {}
    for processes in _each_way(tmp_path, monkeypatch, "trainer.epochs=2", "logger.mode=disabled"):
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

    # in the background (start): every share in a child, one core fewer (2 children); this process goes on
    for i in range(5):
        (tmp_path / f"{i}.txt").unlink()
        painters.submit(paint(i), lambda spent, i=i: logged.append((i, (tmp_path / f"{i}.txt").is_file(), spent)),
                        deferred=True)
    painters.start()
    assert len(logged) == 5  # nothing logged before join
    with caplog.at_level("WARNING"):
        painters.join()
    assert [(i, there) for i, there, _ in logged[5:]] == [(i, True) for i in range(5)]
    by = {i: (tmp_path / f"{i}.txt").read_text().split(" by ")[1] for i in range(5)}
    assert by == {0: "child", 1: "parent", 2: "child", 3: "parent", 4: "child"}  # 1::2 failed and was redrawn here
    # a run that did not reserve its place: drawn at once, here and in children, as draw does
    painters.submit(paint(0), lambda spent: logged.append((0, True, spent)))
    painters.submit(paint(2), lambda spent: logged.append((2, True, spent)), deferred=True)
    painters.start()
    assert len(logged) == 12


def test_a_seed_batchs_figures_drawn_in_the_background_reach_wandb_at_their_steps(tmp_path, monkeypatch):
    """With a figure process per core but one (AEJAX_FIGURE_PROCESSES=2), the first snapshot's figures
    are drawn while the batch trains on and the last ones while it finishes: W&B gets every row,
    table and image at the step it gets them drawing in process (=1), none dropped as out of order."""
    import wandb

    from aejax.tracking.wandb_file import read_run

    for var in ("WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    logged = {}
    for processes in _each_way(tmp_path, monkeypatch, "trainer.epochs=3", "logger.mode=offline"):
        wandb.teardown()  # flushes the .wandb files
        for seed in (0, 1):
            history = read_run(tmp_path / processes / f"seed_{seed}").history
            logged[processes, seed] = [(row["_step"], sorted(k for k in row if not k.startswith("_"))) for row in history]
    for seed in (0, 1):
        assert logged["2", seed] == logged["1", seed]
        steps = dict(logged["1", seed])
        assert sorted(steps) == [0, 12, 24, 36]  # 1437 digits / batch 128: 12 steps an epoch
        for step in steps:  # every snapshot's figures (no budget), the rows, the evolution at the end
            assert {"latent/scatter", "latent/reconstructions", "latent/manifold", "latent/table"} <= set(steps[step])
        assert "val/loss" in steps[0] and "train/loss" in steps[12] and "latent/evolution" in steps[36]
    assert (tmp_path / "2" / "seed_1" / "media" / "latent" / "step_0000000.png").is_file()


def test_media_logged_late_keep_their_place_for_the_sinks_that_read_them(tmp_path, caplog):
    """``Trackers.reserve``: the calls after a reserved place wait for it in the sinks that read media
    files (W&B), in order; the run directory's sink gets them at once; ``finish`` settles the places,
    and one never filled is skipped with a warning, the calls behind it delivered."""
    from aejax.tracking.base import Trackers
    from aejax.tracking.local import LocalTracker

    class Reader:  # a sink that reads media files when they are logged, as W&B does
        def __init__(self):
            self.calls = []

        def log(self, row):
            self.calls.append(("row", row["step"]))

        def log_media(self, step, media):
            self.calls.append(("media", step, sorted(media)))

        def summary(self, values):
            self.calls.append(("summary", sorted(values)))

        def rewind(self, step):
            pass

        def finish(self, status):
            self.calls.append(("finish", status))

    reader, local = Reader(), LocalTracker(tmp_path, {})
    trackers = Trackers([local, reader])
    trackers.log({"step": 0, "val/loss": 1.0})
    settle = lambda: second(12, {"late": 1})  # noqa: E731  (what draws the figures still owed: the second place's)
    first = trackers.reserve(settle)
    trackers.log({"step": 6, "train/loss": 0.5})
    second = trackers.reserve(settle)
    trackers.log({"step": 12, "train/loss": 0.4})
    assert reader.calls == [("row", 0)]  # held behind the first place
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 6, 12]
    first(0, {"latent/scatter": 1})
    assert reader.calls == [("row", 0), ("media", 0, ["latent/scatter"]), ("row", 6)]  # up to the second place
    trackers.summary({"val/loss": 0.3})
    trackers.reserve(settle)  # never filled: its drawing failed
    trackers.log({"step": 18, "train/loss": 0.3})
    with caplog.at_level("WARNING"):
        trackers.finish("finished")  # settles the second place (its settle fills it), skips the third
    assert reader.calls[3:] == [("media", 12, ["late"]), ("row", 12), ("summary", ["val/loss"]), ("row", 18),
                                ("finish", "finished")]
    assert "never drawn" in caplog.text
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "finished"


def test_a_runs_intermediate_figures_wait_for_its_last_ones_to_be_drawn(tmp_path):
    """A recorder whose previous figures are still drawing (in the background) skips an intermediate
    snapshot's figures even within its budget; first and last snapshots are always drawn."""
    from conftest import compose_config

    from aejax.analysis.painters import Painters
    from aejax.analysis.snapshot import SnapshotConfig
    from aejax.data import load_dataset
    from aejax.tracking.base import Trackers
    from aejax.tracking.local import LocalTracker
    from aejax.training.snapshots import SnapshotRecorder

    data = load_dataset(compose_config().dataset)
    recorder = SnapshotRecorder(SnapshotConfig(probe_size=16, figure_budget=0.5), data, tmp_path,
                                Trackers([LocalTracker(tmp_path, {})]), seed=0, label="vanilla", latent_dim=2,
                                vae=False, painters=Painters(runs=2))
    recorder._started -= 10.0  # ten seconds of training, no snapshot work yet: well within the budget
    assert recorder._draw_figures(first=False, last=False)
    recorder._drawing = 1  # a figure set submitted and not yet logged
    assert not recorder._draw_figures(first=False, last=False)
    assert recorder._draw_figures(first=True, last=False) and recorder._draw_figures(first=False, last=True)
    recorder._drawing = 0
    recorder.host_seconds = 6.0  # over half the training time
    assert not recorder._draw_figures(first=False, last=False)
