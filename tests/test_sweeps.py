"""Multiruns through the real CLI: launchers, one W&B group per sweep, failed jobs, the report,
the experiment presets and the compile cache."""
import csv
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_config, offline_env, run_cli
from omegaconf import OmegaConf

from aejax import report
from aejax.cli import config_dir
from aejax.sweep import SweepCallback, label_job, run_job, sweep_group
from aejax.tracking.wandb_file import read_run

TINY = ("encoder.hidden=[16]", "decoder.hidden=[16]", "trainer.epochs=2", "eval.enabled=false", "snapshot.every=0")


def _cli(*args: str, cwd: Path, **env: str):
    """run_cli with extra environment variables."""
    return subprocess.run([sys.executable, "-m", "aejax", *args], cwd=cwd, env={**offline_env(), **env},
                          capture_output=True, text=True, timeout=300)


def _jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_2x2_multirun_gives_4_runs_in_one_wandb_group_and_a_report(tmp_path, launcher, capsys):
    sweep = tmp_path / "sweep"
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    result = run_cli("-m", "model.latent_dim=2,4", "variant=vanilla,vae", *TINY, "logger.mode=offline", *extra,
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"4 jobs finished in {sweep}" in result.stderr
    jobs = _jobs(sweep)
    assert len(jobs) == 4
    seen = set()
    for job in jobs:
        assert _summary(job)["status"] == "finished"
        wb = read_run(job)
        k, variant = wb.config["model"]["latent_dim"], wb.config["variant"]["name"]
        seen.add((k, variant))
        assert wb.exit_code == 0 and wb.group == sweep_group(sweep) == f"{tmp_path.name}/sweep"
        assert wb.name == f"{variant}-z{k}-s0"  # only the latent size and the variant vary: the default name says it
        assert sorted(wb.tags) == sorted([f"model.latent_dim={k}", f"variant={variant}"])
        assert wb.config["dataset"]["name"] == "digits" and wb.config["seed"] == 0
        assert wb.config["variant"]["recon"] == ("bce" if variant == "vae" else "mse")
        assert wb.config["logger"]["group"] == wb.group  # the logged config says it too
        assert wb.summary["val/loss"] == _summary(job)["val/loss"]
    assert seen == set(itertools.product([2, 4], ["vanilla", "vae"]))

    assert report.main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    rows = _csv_rows(sweep / "report.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"finished"}
    for row in rows:  # the report's numbers are the summaries'
        summary = _summary(sweep / row["run"])
        assert float(row["val/loss"]) == summary["val/loss"] and float(row["train/loss"]) == summary["train/loss"]
        assert (row["model.latent_dim"], row["variant"]) in {(str(k), v) for k, v in seen}
        first = json.loads((sweep / row["run"] / "metrics.jsonl").read_text().splitlines()[0])
        assert first["step"] == 0 and float(row["val/loss@0"]) == first["val/loss"]
        assert (f"| {row['run']} | finished | {row['model.latent_dim']} | {row['variant']} | {first['val/loss']:.4g} | "
                f"{summary['val/loss']:.4g} |") in printed
    for name in ("final_loss_vs_latent_dim.png", "loss_curves.png"):
        assert (sweep / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![final_loss_vs_latent_dim](final_loss_vs_latent_dim.png)" in (sweep / "report.md").read_text()


def test_a_failing_job_is_recorded_the_sweep_completes_and_the_exit_status_says_so(tmp_path):
    """vae (BCE) on line2d, which is real-valued, fails when it meets the data; the other three run.
    Through the joblib launcher (jobs in worker processes); the basic launcher's failed jobs are
    the Optuna test's."""
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "dataset=digits,line2d",
                     "variant=vanilla,vae", *TINY, "logger.mode=offline", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 1
    assert "1 of 4 jobs did not finish" in result.stderr
    message = "ConfigError: variant.recon: bce needs data in [0, 1]; line2d is real-valued (use mse)"
    assert message in result.stderr
    statuses = {}
    for job in _jobs(sweep):
        config = OmegaConf.load(job / "config.yaml")
        statuses[(config.dataset.name, config.variant.name)] = _summary(job)
    assert statuses[("line2d", "vae")] == {"status": "failed", "error": message}
    good = [s for key, s in statuses.items() if key != ("line2d", "vae")]
    assert len(good) == 3 and all(s["status"] == "finished" for s in good)
    groups = {read_run(job).group for job in _jobs(sweep) if (job / "wandb").exists()}
    assert groups == {sweep_group(sweep)}

    out = run_cli(str(sweep), cwd=tmp_path, command=(sys.executable, "-m", "aejax.report"))
    assert out.returncode == 0, out.stderr
    rows = _csv_rows(sweep / "report.csv")
    assert sorted(r["status"] for r in rows) == ["failed", "finished", "finished", "finished"]
    (failed,) = [r for r in rows if r["status"] == "failed"]
    assert (failed["dataset"], failed["variant"], failed["error"], failed["val/loss"]) == ("line2d", "vae", message, "")
    assert "| **failed** | line2d | vae |" in out.stdout and "4 runs: 3 finished, 1 did not finish" in (sweep / "report.md").read_text()
    assert (sweep / "loss_curves.png").exists()


def test_an_optuna_search_goes_on_past_a_failed_trial(tmp_path):
    """hydra/sweeper=aejax_optuna: a trial that fails (vae on real-valued line2d) returns None, which
    Optuna records as a failed trial, instead of a NaN, which would stop the study."""
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "hydra/sweeper=aejax_optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
                     "hydra.sweeper.n_trials=2", "dataset=choice(digits,line2d)", "variant=vae", *TINY,
                     "logger.mode=disabled", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 1 and "1 of 2 jobs did not finish" in result.stderr  # the seed's draws: line2d, digits
    (good,) = [job for job in _jobs(sweep) if _summary(job)["status"] == "finished"]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert dict(best.best_params) == {"dataset": "digits"} and best.best_value == _summary(good)["val/loss"]


def _hydra(tmp_path: Path, task: list[str], num: int = 0):
    return OmegaConf.create({"sweep": {"dir": str(tmp_path)}, "overrides": {"task": task}, "job": {"num": num}})


def test_an_exception_during_training_marks_the_job_failed_and_returns_none(tmp_path, monkeypatch):
    import aejax.experiment

    def explode(*args, **kwargs):
        raise FloatingPointError("the loss is nan at step 3")

    monkeypatch.setattr(aejax.experiment, "fit_seeds", explode)
    cfg = compose_config("logger.mode=disabled", "seed=3", validated=False)
    run_dir = tmp_path / "0"
    assert run_job(cfg, _hydra(tmp_path, ["seed=3"]), run_dir) is None
    assert _summary(run_dir) == {"status": "failed", "error": "FloatingPointError: the loss is nan at step 3"}
    assert OmegaConf.load(run_dir / "config.yaml").seed == 3  # written by the run when it started


def test_a_job_that_fails_during_training_is_recorded_and_the_sweep_goes_on(tmp_path):
    """A real failure mid-training, through the CLI: job 0's checkpoint folder is a file, so its
    first checkpoint (after an epoch of training) cannot be written; job 1 trains to the end."""
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "checkpoints").write_text("not a folder")
    result = run_cli("-m", "seed=0,1", *TINY, "trainer.checkpoint_every=12", "logger.mode=disabled",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 1 and "1 of 2 jobs did not finish" in result.stderr
    message = (f"CheckpointError: could not write the checkpoint of step 12 to {sweep / '0' / 'checkpoints'} "
               f"([Errno 20] Not a directory: '{sweep / '0' / 'checkpoints'}'); no earlier checkpoint exists")
    assert _summary(sweep / "0") == {"status": "failed", "error": message}
    assert "aejax: job 0 failed" in result.stderr and "Traceback" not in result.stderr
    assert [json.loads(line)["step"] for line in (sweep / "0" / "metrics.jsonl").read_text().splitlines()] == [0, 12]
    finished = _summary(sweep / "1")
    assert finished["status"] == "finished" and finished["steps"] == 24
    assert sorted(p.name for p in (sweep / "1" / "checkpoints").iterdir() if p.name.isdigit()) == ["12", "24"]


def test_the_callback_names_what_varies_and_exits_1_unless_every_job_finished(tmp_path, capsys):
    config = OmegaConf.create({"hydra": {
        "sweep": {"dir": str(tmp_path)},
        "overrides": {"task": ["model.latent_dim=2", "optimizer.lr=1e-3,1e-2", "+experiment=bottleneck_sweep"]},
        "sweeper": {"params": {"model.latent_dim": "2,4,8", "variant": "vanilla,vae"}}}})
    callback = SweepCallback()
    callback.on_multirun_start(config)
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep["varied"] == ["variant", "optimizer.lr"]  # model.latent_dim=2 on the command line pins it

    job = ["variant=vae", "optimizer.lr=1e-2", "model.latent_dim=2"]
    cfg = compose_config(*job, "logger.mode=disabled", validated=False)
    label_job(cfg, _hydra(tmp_path, job))
    assert cfg.logger.group == sweep_group(tmp_path)
    assert cfg.logger.name == "vae-z2-s0-lr=0.01"  # the default name, and what else varies
    assert list(cfg.logger.tags) == ["variant=vae", "optimizer.lr=0.01"]

    for num, status in enumerate(["finished", "diverged", "finished"]):
        (tmp_path / str(num)).mkdir()
        (tmp_path / str(num) / "summary.json").write_text(json.dumps({"status": status}))
    with pytest.raises(SystemExit) as exit_:
        callback.on_multirun_end(config)
    assert exit_.value.code == 1
    assert "1 of 3 jobs did not finish" in capsys.readouterr().err
    (tmp_path / "1" / "summary.json").write_text(json.dumps({"status": "finished"}))
    callback.on_multirun_end(config)  # all finished: returns


def test_the_report_marks_diverged_runs_and_compares_what_varies_without_hydra_files(tmp_path):
    """Runs copied out of their sweep (no .hydra/): the varied parameters come from the configs."""
    for i, (variant, recon, k, seed, status, loss) in enumerate([
            ("vanilla", "mse", 2, 0, "finished", 0.04), ("vanilla", "mse", 2, 1, "finished", 0.06),
            ("vanilla", "mse", 8, 0, "finished", 0.02), ("vae", "bce", 2, 0, "diverged", float("nan"))]):
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(
            {"seed": seed, "model": {"latent_dim": k}, "variant": {"name": variant, "recon": recon},
             "logger": {"name": f"{variant}-z{k}-s{seed}"}})))
        summary = {"status": status, "val/loss": loss, "test/pca_mse": 0.05 / k}
        if status == "diverged":
            summary["diverged_at_step"] = 5
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "epoch": 0, "val/loss": 0.1}) + "\n" +
                                           json.dumps({"step": 9, "epoch": 1, "val/loss": loss, "train/loss": loss}) + "\n")
    table, written = report.write_report(tmp_path, tmp_path / "out", metric="val/loss")
    header = table.splitlines()[0]
    assert header == "| run | status | seed | model.latent_dim | variant | val/loss@0 | val/loss | test/pca_mse | error |"  # not variant.recon
    assert "| run3 | **diverged** | 0 | 2 | vae | 0.1 | nan | 0.025 | NaN/Inf loss at step 5 |" in table
    assert "| run1 | finished | 1 | 2 | vanilla | 0.1 | 0.06 | 0.025 |  |" in table
    assert {p.name for p in written} == {"report.md", "report.csv", "final_loss_vs_latent_dim.png", "loss_curves.png"}


# The presets in conf/experiment and the number of jobs of their documented multirun.
PRESETS = {"bottleneck_sweep": 36, "variant_comparison": 10, "first_principles_digits": 5, "explorer_bowtie": 1,
           "interactive_intro": 2, "sae_superposition": 6, "vq_digits": 4}
SMOKE = ("trainer.epochs=1", "eval.enabled=false", "logger.mode=disabled", "snapshot.probe_size=64", "snapshot.images=false")


def _composed(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_every_experiment_preset_composes_to_its_documented_study():
    assert sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml")) == sorted(PRESETS)
    for preset, jobs in PRESETS.items():
        cfg = _composed(f"+experiment={preset}")
        size = 1
        for values in (cfg.hydra.sweeper.params or {}).values():
            size *= len(str(values).split(","))
        assert size == jobs, preset
        compose_config(f"+experiment={preset}")  # validates
    bowtie = compose_config("+experiment=explorer_bowtie")
    assert (bowtie.encoder.hidden, bowtie.model.latent_dim, bowtie.variant.recon, bowtie.model.output) == ([128, 32], 2, "bce", "sigmoid")
    digits = compose_config("+experiment=first_principles_digits")
    assert (digits.dataset.name, digits.encoder.hidden, digits.optimizer.lr, digits.trainer.batch_size,
            digits.trainer.epochs, digits.dataset.split_seed, digits.snapshot.grid) == ("digits", [32, 16], 1e-3, 128, 100, 42, 10)
    parts = [compose_config("+experiment=interactive_intro", f"experiment/intro_part@_global_={part}")
             for part in ("layers3d", "fashion_mnist")]
    assert [(p.dataset.name, p.encoder.hidden, p.optimizer.lr) for p in parts] == [
        ("layers3d", [], 0.1), ("fashion_mnist", [128, 32], 1e-3)]
    assert compose_config("+experiment=bottleneck_sweep", "model.latent_dim=64").encoder.hidden == [256, 128]


def test_the_experiment_presets_run(tmp_path, prepared_fashion_mnist):
    """All but interactive_intro as the jobs of one multirun (one job each: a swept +experiment
    leaves the presets' own sweeps out), with the Fashion-MNIST prepared for the tests as TFDS's
    default data dir."""
    sweep = tmp_path / "sweep"
    presets = [p for p in sorted(PRESETS) if p != "interactive_intro"]
    result = _cli("-m", f"+experiment={','.join(presets)}", *SMOKE, f"hydra.sweep.dir={sweep}", cwd=tmp_path,
                  TFDS_DATA_DIR=str(prepared_fashion_mnist))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dict(zip(presets, _jobs(sweep)))
    assert all(_summary(job)["status"] == "finished" for job in jobs.values())
    bowtie = json.loads((jobs["explorer_bowtie"] / "metrics.jsonl").read_text().splitlines()[0])
    assert bowtie["step"] == 0 and abs(bowtie["val/loss"] - 0.693) < 0.05  # BCE of an untrained sigmoid output: about ln 2
    assert (jobs["explorer_bowtie"] / "snapshots" / "step_0000000.npz").exists()
    assert _summary(jobs["first_principles_digits"])["num_params"] == 5346


def test_the_interactive_intro_multirun_runs_both_parts(tmp_path, prepared_fashion_mnist):
    sweep = tmp_path / "sweep"
    result = _cli("-m", "+experiment=interactive_intro", *SMOKE, f"hydra.sweep.dir={sweep}", cwd=tmp_path,
                  TFDS_DATA_DIR=str(prepared_fashion_mnist))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _jobs(sweep)
    assert [OmegaConf.load(job / "config.yaml").dataset.name for job in jobs] == ["layers3d", "fashion_mnist"]
    assert all(_summary(job)["status"] == "finished" and (job / "snapshots" / "step_0000000.npz").exists() for job in jobs)
    assert read_names(sweep) == ["vanilla-z2-s0-intro_part=layers3d", "vanilla-z2-s0-intro_part=fashion_mnist"]


def read_names(sweep: Path) -> list[str]:
    return [OmegaConf.load(job / "config.yaml").logger.name for job in _jobs(sweep)]


def test_the_compile_cache_is_filled_and_read_and_a_cached_run_computes_the_same(tmp_path):
    """Two identical jobs in one process: the second loads its executables from the cache. JAX
    logs each persistent-cache lookup (JAX_DEBUG_LOG_MODULES): the first job's misses are the
    second job's hits, key for key."""
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    result = _cli("-m", "seed=0,0", *TINY, "logger.mode=disabled", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
                  AEJAX_COMPILE_CACHE=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                  JAX_DEBUG_LOG_MODULES="jax._src.compiler")
    assert result.returncode == 0, result.stderr
    lookups = re.findall(r"persistent compilation cache (hit|miss) for '([^']+)' with key '([^']+)'",
                         result.stderr, flags=re.IGNORECASE)
    misses = {key: name for kind, name, key in lookups if kind.lower() == "miss"}
    hits = {key: name for kind, name, key in lookups if kind.lower() == "hit"}
    files = {p.name for p in cache.iterdir()}
    # the first job compiled and wrote; the second job read what it compiled again, the training step included
    assert hits and set(hits) <= set(misses) and {f"{key}-cache" for key in hits} <= files
    assert any(re.search("epoch|chunk|segment|step", name) for name in hits.values()), sorted(hits.values())
    order = [(kind.lower(), key) for kind, _, key in lookups]
    assert all(order.index(("miss", key)) < order.index(("hit", key)) for key in hits)
    first, second = _jobs(sweep)
    assert (first / "metrics.jsonl").read_text() == (second / "metrics.jsonl").read_text()
    off = subprocess.run([sys.executable, "-c", "import os, aejax.cli as c; print(c.setup_compile_cache())"],
                         env={**os.environ, "AEJAX_COMPILE_CACHE": "off"}, capture_output=True, text=True)
    assert off.stdout.strip() == "None"
