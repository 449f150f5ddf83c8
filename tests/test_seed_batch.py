"""Seed batches: ``trainer.num_seeds=N`` trains N models as one vmapped program, and each of its
runs equals the separate run with that seed: rows, parameters, snapshots, evaluation, W&B runs."""
import json
import math
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import compose_config, run_cli
from omegaconf import OmegaConf

from aejax import report
from aejax.config import validate
from aejax.errors import ConfigError
from aejax.experiment import run
from aejax.sweep import sweep_group
from aejax.tracking.local import LocalTracker
from aejax.tracking.wandb_file import read_run
from aejax.training.host import SeedRun, host_segment
from aejax.training.rows import TrainRows

# a VAE (its sampling noise comes from each run's own key), a last partial batch (1437 = 11 x 128 + 29),
# checkpoints inside epochs (segments that stop mid-epoch run the other compiled program)
SMALL = ("variant=vae", "encoder.hidden=[32]", "decoder.hidden=[32]", "trainer.epochs=3", "trainer.checkpoint_every=7", "trainer.log_every=5",
         "snapshot.every=1", "snapshot.probe_size=32", "snapshot.images=false", "eval.probe_examples=300",
         "eval.iwae_samples=4", "logger.mode=disabled", "trainer.progress=off")


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _params(run_dir: Path) -> list[np.ndarray]:
    last = max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    tree = ocp.PyTreeCheckpointer().restore(run_dir / "checkpoints" / str(last) / "state")
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree["params"])]


def _close(a, b, what: str) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.fixture(scope="module")
def batch_and_separate(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    mean = run(compose_config(*SMALL, "seed=5", "trainer.num_seeds=3"), root / "batch")
    separate = {}
    for seed in (5, 6, 7):
        separate[seed] = run(compose_config(*SMALL, f"seed={seed}"), root / f"seed{seed}")
    return root, mean, separate


def test_each_run_of_a_seed_batch_equals_the_separate_run_with_its_seed(batch_and_separate):
    root, mean, separate = batch_and_separate
    batch = root / "batch"
    for seed in (5, 6, 7):
        ours, theirs = batch / f"seed_{seed}", root / f"seed{seed}"
        rows, expected = _rows(ours), _rows(theirs)
        assert [r["step"] for r in rows] == [r["step"] for r in expected] and len(rows) > 6
        for a, b in zip(rows, expected):
            assert a.keys() == b.keys()
            _close([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], f"seed {seed}, step {a['step']}")
        for a, b in zip(_params(ours), _params(theirs), strict=True):
            _close(a, b, f"seed {seed}: final parameters")
        s, t = (json.loads((d / "summary.json").read_text()) for d in (ours, theirs))
        for key in ("val/loss", "train/loss", "test/mse", "test/elbo", "test/iwae_nll", "test/pca_mse"):
            _close(s[key], t[key], f"seed {seed}: {key}")
        assert s["status"] == "finished" and s["seed_batch"] == 3 and s["steps"] == t["steps"] == 36
        snaps = sorted(p.name for p in (ours / "snapshots").iterdir())
        assert snaps == sorted(p.name for p in (theirs / "snapshots").iterdir()) and len(snaps) == 5  # probe + 4
        for name in snaps:
            with np.load(ours / "snapshots" / name) as a, np.load(theirs / "snapshots" / name) as b:
                for key in ("z", "grad", "loss") if name != "probe.npz" else ("x", "index"):
                    _close(a[key], b[key], f"seed {seed}: {name} {key}")
                if name != "probe.npz":  # decoded images are stored as float16: equal to one rounding step
                    np.testing.assert_allclose(a["samples"], b["samples"], atol=2.5e-4)
        # the run's config is the separate run's, but for its W&B group and tags
        ours_cfg, theirs_cfg = (OmegaConf.load(d / "config.yaml") for d in (ours, theirs))
        assert ours_cfg.logger.group == sweep_group(batch) and ours_cfg.logger.tags == ["seed_batch=3"]
        ours_cfg.logger, theirs_cfg.logger = None, None
        assert ours_cfg == theirs_cfg and ours_cfg.seed == seed and ours_cfg.trainer.num_seeds == 1
    # the seeds differ, and the batch reports their mean
    finals = [json.loads((batch / f"seed_{s}" / "summary.json").read_text())["val/loss"] for s in (5, 6, 7)]
    assert len(set(finals)) == 3
    assert mean == pytest.approx(np.mean(finals)) == pytest.approx(np.mean(list(separate.values())), rel=1e-5)
    summary = json.loads((batch / "summary.json").read_text())
    assert summary["runs"] == ["seed_5", "seed_6", "seed_7"] and summary["status"] == "finished"
    assert summary["val/loss_mean"] == pytest.approx(np.mean(finals))
    assert summary["val/loss_std"] == pytest.approx(np.std(finals, ddof=1))


def test_the_report_shows_a_seed_batch_as_its_runs(batch_and_separate):
    root = batch_and_separate[0] / "batch"
    runs, varied = report.load_runs(root)
    assert [r.name for r in runs] == ["seed_5", "seed_6", "seed_7"] and varied == ["seed"]
    assert [r.params["seed"] for r in runs] == ["5", "6", "7"]


def test_a_seed_batch_through_the_cli_logs_a_wandb_run_per_seed_in_one_group(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "model.latent_dim=2,3", "trainer.num_seeds=2", "encoder.hidden=[16]", "decoder.hidden=[16]",
                     "trainer.epochs=2", "eval.enabled=false", "snapshot.every=0", "logger.mode=offline",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"2 jobs finished in {sweep}" in result.stderr  # a seed batch is one job
    names = set()
    for job, k in (("0", 2), ("1", 3)):
        assert json.loads((sweep / job / "summary.json").read_text())["runs"] == ["seed_0", "seed_1"]
        for seed in (0, 1):
            wb = read_run(sweep / job / f"seed_{seed}")
            assert wb.exit_code == 0 and wb.group == sweep_group(sweep)
            assert wb.config["seed"] == seed and wb.config["trainer"]["num_seeds"] == 1
            assert wb.config["model"]["latent_dim"] == k and f"model.latent_dim={k}" in wb.tags and "seed_batch=2" in wb.tags
            assert wb.summary["val/loss"] == json.loads((sweep / job / f"seed_{seed}" / "summary.json").read_text())["val/loss"]
            names.add(wb.name)
    assert names == {"vanilla-z2-s0", "vanilla-z2-s1", "vanilla-z3-s0", "vanilla-z3-s1"}
    runs, varied = report.load_runs(sweep)
    assert len(runs) == 4 and varied == ["model.latent_dim", "seed"] and all(r.ok for r in runs)


def test_a_diverged_model_stops_logging_while_the_others_go_on(tmp_path):
    cfg = validate(compose_config("trainer.num_seeds=2", "logger.mode=disabled"))
    trackers = [LocalTracker(tmp_path / f"seed_{i}", {}) for i in range(2)]
    runs = [SeedRun(cfg.seed, t, None, TrainRows(4, lambda s: 0.1 * np.ones_like(s, dtype=float)), None, batched=True) for t in trackers]
    good = {"loss": np.array([1.0, 0.9, 0.8, 0.7]), "count": np.full(4, 128.0)}
    bad = {"loss": np.array([1.0, 0.9, np.nan, 0.7]), "count": np.full(4, 128.0)}
    host_segment(runs[0], good, {"val/loss": 0.5}, 0, 4, 4, 8, 1)
    host_segment(runs[1], bad, {"val/loss": math.nan}, 0, 4, 4, 8, 1)
    assert runs[0].diverged_at is None and runs[1].diverged_at == 3 and runs[1].stopped_at == 0
    for tracker in trackers:
        tracker.finish("finished")
    assert _rows(tmp_path / "seed_1") == [] and _rows(tmp_path / "seed_0") == [
        {"step": 4, "epoch": 1, "train/loss": pytest.approx(0.85), "train/lr": 0.1, "val/loss": 0.5}]
    assert runs[0].host["train_loss"] == pytest.approx(0.85) and runs[0].host["best"] == 0.5


def test_one_model_of_a_real_seed_batch_diverges_while_the_others_train_on(tmp_path):
    """A real vmapped batch of 3 (seeds 3-5; layers3d, SGD at lr 0.2, 6 epochs of 8 steps): seed 5
    diverges at step 10 when trained alone; in the batch it stops there with its last good
    checkpoint while seeds 3 and 4 train to the end with their separate runs' numbers."""
    args = ("dataset=layers3d", "optimizer=sgd", "optimizer.lr=0.2", "trainer.epochs=6", "trainer.checkpoint_every=8",
            "snapshot.every=0", "eval.enabled=false", "logger.mode=disabled", "trainer.progress=off")
    run(compose_config(*args, "seed=3", "trainer.num_seeds=3"), tmp_path / "batch")
    for seed in (3, 5):
        run(compose_config(*args, f"seed={seed}"), tmp_path / f"alone{seed}")
    alone = {seed: json.loads((tmp_path / f"alone{seed}" / "summary.json").read_text()) for seed in (3, 5)}
    ours = {seed: json.loads((tmp_path / "batch" / f"seed_{seed}" / "summary.json").read_text()) for seed in (3, 4, 5)}
    assert (alone[3]["status"], alone[5]["status"], alone[5]["diverged_at_step"]) == ("finished", "diverged", 10)
    assert (ours[5]["status"], ours[5].get("diverged_at_step"), ours[5].get("last_checkpoint_step")) == (
        "diverged", 10, 8), ours[5]
    assert [(ours[seed]["status"], ours[seed]["steps"]) for seed in (3, 4)] == [("finished", 48)] * 2
    assert json.loads((tmp_path / "batch" / "summary.json").read_text())["statuses"] == ["finished", "finished", "diverged"]
    # each model's rows are its separate run's: the diverged one's end before step 10, the others' go on
    for seed in (3, 5):
        rows, expected = _rows(tmp_path / "batch" / f"seed_{seed}"), _rows(tmp_path / f"alone{seed}")
        assert [r["step"] for r in rows] == [r["step"] for r in expected]
        for a, b in zip(rows, expected, strict=True):
            # SGD at the edge of stability amplifies the vmapped program's float differences: within
            # 1e-5 for two epochs, 1.3e-3 (measured) by the end; the diverging model's are 5e-5 at step 8
            rel = 1e-4 if seed == 5 else 1e-5 if a["step"] <= 16 else 1e-2
            assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=rel) for k in a), (a, b)
    assert max(r["step"] for r in _rows(tmp_path / "batch" / "seed_5")) < 10
    assert max(r["step"] for r in _rows(tmp_path / "batch" / "seed_4")) == 48

    def checkpoints(seed):
        return sorted(int(p.name) for p in (tmp_path / "batch" / f"seed_{seed}" / "checkpoints").iterdir() if p.name.isdigit())

    assert checkpoints(5)[-1] == 8 and checkpoints(3)[-1] == checkpoints(4)[-1] == 48
    assert all(np.isfinite(leaf).all() for leaf in _params(tmp_path / "batch" / "seed_5"))  # the kept state is sound


@pytest.mark.parametrize("override,message", [
    ("trainer.num_seeds=0", "must be > 0"),
    ("trainer.parallel=pmap", "not a copy of each model per device"),  # (sharded spreads its models: test_batched_sharded)
    ("trainer.feed=stream", "trainer.feed=memory or auto"),
    ("trainer.unroll=on", "trainer.unroll=auto or off"),
])
def test_settings_a_seed_batch_cannot_honour_are_refused(override, message):
    seeds = [] if override.startswith("trainer.num_seeds") else ["trainer.num_seeds=2"]
    with pytest.raises(ConfigError, match=message) as e:
        validate(compose_config(*seeds, override))
    assert e.value.key == "trainer.num_seeds" or override.startswith("trainer.num_seeds")


def test_a_seed_batch_resumes_from_the_newest_checkpoint_all_its_runs_have(batch_and_separate, tmp_path):
    import shutil

    reference = batch_and_separate[0] / "batch"
    batch = tmp_path / "batch"
    shutil.copytree(reference, batch)
    # seed 6 lost its last checkpoint (as if killed while the batch's checkpoints were written):
    # the whole batch goes back to step 35, the newest step every run has
    shutil.rmtree(batch / "seed_6" / "checkpoints" / "36")
    for seed in (5, 6, 7):
        assert (batch / f"seed_{seed}" / "checkpoints" / "35").is_dir()
    mean = run(compose_config(*SMALL, "seed=5", "trainer.num_seeds=3", f"trainer.resume={batch}"), tmp_path / "session")
    assert mean == batch_and_separate[1]
    for seed in (5, 6, 7):
        ours, theirs = batch / f"seed_{seed}", reference / f"seed_{seed}"
        assert _rows(ours) == _rows(theirs)  # rows past step 35 were dropped and logged again, the same
        for a, b in zip(_params(ours), _params(theirs), strict=True):
            np.testing.assert_array_equal(a, b)
        assert json.loads((ours / "summary.json").read_text())["resumed_from_step"] == 35


def test_a_seed_batch_whose_data_does_not_fit_device_memory_is_refused_before_compiling():
    from aejax.data import Dataset
    from aejax.assemble import check_against_data
    from aejax.training.feed import memory_budget

    rows = memory_budget() // (784 * 4) + 1  # one row more than fits: a broadcast view, nothing allocated
    big = Dataset("big", np.broadcast_to(np.zeros((1, 784), np.float32), (rows, 784)), None,
                  np.zeros((10, 784), np.float32), np.zeros(10, np.int64), ("x",), True)
    cfg = validate(compose_config("trainer.num_seeds=2", "logger.mode=disabled"))
    with pytest.raises(ConfigError, match=r"do not fit its budget .* run the seeds as separate jobs") as e:
        check_against_data(cfg, big)
    assert e.value.key == "trainer.num_seeds"
    one = validate(compose_config("logger.mode=disabled"))
    check_against_data(one, big)  # one model streams what does not fit: no error


def test_resuming_a_seed_batch_without_checkpoints_names_where_they_were_looked_for(tmp_path):
    from aejax.experiment import resume_target

    cfg = validate(compose_config("trainer.num_seeds=2", f"trainer.resume={tmp_path}", "logger.mode=disabled"))
    (tmp_path / "checkpoints" / "12").mkdir(parents=True)  # a single run's checkpoint is not the batch's
    with pytest.raises(ConfigError, match=r"no checkpoint to resume from in .*/seed_\*/checkpoints"):
        resume_target(cfg, tmp_path)
