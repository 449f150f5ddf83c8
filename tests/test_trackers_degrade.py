"""A tracker never kills a run (docs/bad-input.md, "Trackers"): W&B failing at open or during the
run leaves one warning line and the run goes on with its run directory; ``logger.mode=online``
without credentials is refused before training (exit 2) with the fix; an empty or unknown
``WANDB_MODE`` is ignored instead of crashing every W&B run."""
import json
import logging

import pytest
import wandb
from conftest import offline_env, wandb_server_refusing_keys
from omegaconf import OmegaConf

from aejax.config import LoggerConfig
from aejax.tracking import GuardedSink, LocalTracker, Trackers
from aejax.tracking.wandb_tracker import WandbTracker

SHORT = ("trainer.epochs=2", "eval.enabled=false", "snapshot.every=0", "trainer.progress=off",
         "encoder.hidden=[16]", "decoder.hidden=[16]")


def _cli(tmp_path, *args, **env):
    import subprocess
    import sys

    full = {**offline_env(), **env}
    for key in [k for k, v in env.items() if v is None]:
        full.pop(key)
    return subprocess.run([sys.executable, "-m", "aejax", *args], cwd=tmp_path, env=full, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("value", ["", "bogus"])
def test_an_empty_or_unknown_wandb_mode_is_ignored(tmp_path, value):
    run_dir = tmp_path / "run"
    out = _cli(tmp_path, f"hydra.run.dir={run_dir}", *SHORT, "logger.mode=offline", WANDB_MODE=value)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))  # W&B still logs, offline
    if value:
        assert "WANDB_MODE='bogus' is not a W&B mode" in out.stdout + out.stderr


def test_online_without_credentials_is_refused_before_training(tmp_path):
    (tmp_path / "home").mkdir()  # no ~/.netrc
    run_dir = tmp_path / "run"
    out = _cli(tmp_path, f"hydra.run.dir={run_dir}", *SHORT, "logger.mode=online", WANDB_MODE=None,
               HOME=str(tmp_path / "home"))
    assert out.returncode == 2, out.stderr
    assert "logger.mode: logger.mode=online needs W&B credentials" in out.stderr and "wandb login" in out.stderr
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "summary.json").exists()


def test_online_with_a_refused_key_trains_and_says_so_in_one_line(tmp_path):
    """A W&B server on 127.0.0.1 that answers 401 to everything; logger.mode=online asked for it."""
    run_dir = tmp_path / "run"
    with wandb_server_refusing_keys() as url:
        out = _cli(tmp_path, f"hydra.run.dir={run_dir}", *SHORT, "logger.mode=online", "logger.init_timeout=20",
                   WANDB_MODE=None, WANDB_API_KEY="f" * 40, WANDB_BASE_URL=url)
    assert out.returncode == 0, out.stderr
    lines = [line for line in (out.stdout + out.stderr).splitlines() if "W&B failed while opening" in line]
    assert len(lines) == 1 and f"logging to its run directory {run_dir} only" in lines[0]
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "finished" and "wandb_id" not in s
    assert [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())] == [0, 12, 24]


def test_a_wandb_run_that_ends_underneath_the_training_does_not_stop_it(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    local = LocalTracker(tmp_path, {})
    real = WandbTracker(OmegaConf.structured(LoggerConfig(mode="offline")), tmp_path, {})
    trackers = Trackers([local, GuardedSink(real, "W&B", tmp_path)])
    trackers.log({"step": 1, "epoch": 1, "train/loss": 0.5})
    real.run.finish()  # W&B's run ends (its service gone): every later call raises UsageError
    with caplog.at_level(logging.WARNING):
        trackers.log({"step": 2, "epoch": 2, "train/loss": 0.25})
        trackers.log({"step": 3, "epoch": 3, "train/loss": 0.125})
        trackers.summary({"val/loss": 0.1})
        trackers.finish("finished")
    wandb.teardown()
    warned = [r.getMessage() for r in caplog.records if "W&B failed" in r.getMessage()]
    assert len(warned) == 1 and "while running (log)" in warned[0] and "UsageError" in warned[0]
    assert not hasattr(trackers.sinks[1], "location")  # the summary printout skips it
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert json.loads((tmp_path / "summary.json").read_text()) == {"status": "finished", "val/loss": 0.1}
