"""The run directory's files (aejax.rundir): strict JSON out, forgiving reads, one run finder."""
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aejax import rundir
from aejax.tracking.local import LocalTracker


def _run(path: Path, status: str = "finished", **summary) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").write_text(json.dumps({"status": status, **summary}))
    return path


def test_metrics_skip_torn_lines_wherever_they_are(tmp_path):
    """A kill mid-write leaves a torn last line; a run resumed after one used to append to it, which
    leaves it in the middle. Either way the line is skipped and every intact row kept."""
    rows = [{"step": i, "train/loss": 1.0 / (i + 1)} for i in range(4)]
    lines = [json.dumps(row) for row in rows]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 4, "train/lo')
    assert rundir.read_metrics(tmp_path) == rows
    (tmp_path / "metrics.jsonl").write_text("\n".join([lines[0], '{"step": 1, "tra' + lines[1], "", "[1, 2]", *lines[2:]]))
    assert rundir.read_metrics(tmp_path) == [rows[0], *rows[2:]]  # a torn line, a blank one, a non-object: skipped
    assert rundir.read_metrics(tmp_path / "nowhere") == []


def test_a_resumed_tracker_drops_a_torn_row_and_the_rows_past_the_checkpoint(tmp_path):
    tracker = LocalTracker(tmp_path, {"seed": 0})
    for step in range(5):
        tracker.log({"step": step, "train/loss": float(step)})
    tracker._metrics.write('{"step": 5, "train/l')  # killed mid-write
    tracker._metrics.close()
    resumed = LocalTracker(tmp_path, {"seed": 0}, resume=True)
    resumed.rewind(2)
    resumed.log({"step": 3, "train/loss": 3.5})
    resumed.finish("finished")
    assert [(r["step"], r["train/loss"]) for r in rundir.read_metrics(tmp_path)] == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.5)]
    assert (tmp_path / "metrics.jsonl").read_text().endswith("}\n")


def test_a_missing_or_garbled_summary_reads_as_empty(tmp_path):
    assert rundir.read_summary(tmp_path) == {} and rundir.run_status(tmp_path) == "missing"
    for garbled in ('{"status": "runn', "[1, 2]", "", "\x00\x01"):
        (tmp_path / "summary.json").write_text(garbled)
        assert rundir.read_summary(tmp_path) == {} and rundir.run_status(tmp_path) == "missing"
    (tmp_path / "summary.json").write_text('{"steps": 3}')
    assert rundir.run_status(tmp_path) == "unknown"
    _run(tmp_path, "diverged")
    assert rundir.run_status(tmp_path) == "diverged"


def test_json_is_written_strict_with_non_finite_floats_as_null(tmp_path):
    path = tmp_path / "summary.json"
    rundir.write_json_atomic(path, {"status": "diverged", "train/loss": math.nan, "val/loss_best": math.inf,
                                    "nested": {"a": [1.0, -math.inf]}, "ok": 0.5})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in {path.name}"))
    assert data == {"status": "diverged", "train/loss": None, "val/loss_best": None, "nested": {"a": [1.0, None]},
                    "ok": 0.5}
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file, renamed
    assert json.loads(rundir.metrics_line({"step": 1, "val/loss": math.nan})) == {"step": 1, "val/loss": None}


def test_config_round_trip_and_unreadable_configs(tmp_path):
    rundir.write_config(tmp_path, {"model": {"latent_dim": 2}, "logger": {"name": "${model.latent_dim}"}})
    cfg = rundir.read_config(tmp_path)
    assert cfg.model.latent_dim == 2 and OmegaConf.to_container(cfg)["logger"]["name"] == "${model.latent_dim}"
    (tmp_path / "config.yaml").write_text("a: [1, 2\n")
    assert rundir.read_config(tmp_path) is None
    (tmp_path / "config.yaml").write_text("- 1\n- 2\n")  # not a mapping
    assert rundir.read_config(tmp_path) is None
    assert rundir.read_config(tmp_path / "nowhere") is None


def test_flatten():
    assert rundir.flatten({"model": {"latent_dim": 2, "hidden": [16]}, "tags": {}, "seed": 0}) == {
        "model.latent_dim": 2, "model.hidden": [16], "tags": {}, "seed": 0}


def _tree(root: Path, old: float) -> None:
    """Plain runs, a seed batch, and a multirun of a plain job, a seed-batch job and a job that failed
    before it wrote anything but Hydra's files; a W&B folder and an older job that ``since`` drops."""
    _run(root / "plain" / "a")
    (root / "plain" / "b").mkdir(parents=True)
    (root / "plain" / "b" / "metrics.jsonl").write_text('{"step": 0}\n')  # killed before its summary
    batch = _run(root / "batch", num_seeds=2, runs=["seed_0", "seed_1"])
    for seed in (0, 1):
        _run(rundir.seed_dir(batch, seed))
    multirun = root / "multirun"
    for job in ("0", "1", "2", "10"):
        (multirun / job / ".hydra").mkdir(parents=True)
        (multirun / job / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
    _run(multirun / "0")
    _run(multirun / "10")
    _run(multirun / "1", runs=["seed_1", "seed_2"])
    for seed in (1, 2):
        rundir.write_config(_run(rundir.seed_dir(multirun / "1", seed)), {"seed": seed})
    (multirun / "0" / "wandb" / "run-x" / "files").mkdir(parents=True)
    (multirun / "0" / "wandb" / "run-x" / "files" / "summary.json").write_text("{}")
    os.utime(_run(root / "old") / "summary.json", (old, old))


def test_one_run_finder_for_reports_and_sweeps(tmp_path):
    _tree(tmp_path, old=time.time() - 3600)
    names = lambda paths: [str(p.relative_to(tmp_path)) for p in paths]  # noqa: E731
    # The report's view: every run, a seed batch as its runs, naturally sorted, nothing from wandb/.
    assert names(rundir.find_runs(tmp_path)) == [
        "batch/seed_0", "batch/seed_1", "multirun/0", "multirun/1/seed_1", "multirun/1/seed_2", "multirun/2",
        "multirun/10", "old", "plain/a", "plain/b"]
    # A sweep's view: the jobs as launched (a seed batch is one), touched since it started.
    assert names(rundir.find_runs(tmp_path / "multirun", jobs=True)) == ["multirun/0", "multirun/1", "multirun/2", "multirun/10"]
    assert "old" not in names(rundir.find_runs(tmp_path, jobs=True, since=time.time() - 60))
    assert rundir.find_runs(tmp_path / "plain" / "a") == [tmp_path / "plain" / "a"]  # a run dir itself
    assert rundir.seed_batch_runs(tmp_path / "batch") == ["seed_0", "seed_1"]
    assert rundir.seed_batch_runs(tmp_path / "old") == []


def test_the_report_and_the_sweep_end_read_the_same_runs(tmp_path):
    from aejax import report
    from aejax.sweep import SweepCallback

    _tree(tmp_path, old=time.time() - 3600)
    runs, _ = report.load_runs(tmp_path / "multirun")
    assert [(r.name, r.status) for r in runs] == [
        ("0", "finished"), ("1/seed_1", "finished"), ("1/seed_2", "finished"), ("2", "missing"), ("10", "finished")]
    # A seed batch's run: the batch's overrides, with its own seed.
    assert runs[1].overrides == {"seed": "1"} and runs[2].overrides == {"seed": "2"}
    callback = SweepCallback()
    with pytest.raises(SystemExit):
        callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "multirun")}}}))


def test_batch_dir_summarises_its_runs(tmp_path):
    runs = [rundir.seed_dir(tmp_path, s) for s in (3, 4, 5)]
    batch = rundir.BatchDir(tmp_path, OmegaConf.create({"trainer": {"num_seeds": 3}}), runs)
    assert rundir.read_summary(tmp_path) == {"status": "running", "num_seeds": 3, "runs": ["seed_3", "seed_4", "seed_5"]}
    _run(runs[0], **{"val/loss": 1.0})
    _run(runs[1], **{"val/loss": 3.0, "test/mse": None})
    _run(runs[2], "diverged", **{"val/loss": None})
    batch.finish(["finished", "finished", "diverged"])
    summary = rundir.read_summary(tmp_path)
    assert summary["status"] == "diverged" and summary["val/loss_mean"] == 2.0 and "test/mse_mean" not in summary
    assert "seed batch of 3" in batch.describe()
    assert rundir.read_config(tmp_path).trainer.num_seeds == 3


def test_the_explorer_and_the_report_import_no_jax():
    code = ("import sys, aejax.analysis.explorer, aejax.report, aejax.rundir; "
            "print([m for m in ('jax', 'flax', 'aejax.experiment', 'aejax.sweep') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
