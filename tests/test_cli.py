"""The real `aejax-train` command, end to end, in a subprocess as a user runs it."""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli

from aejax.tracking.wandb_file import read_run

EPOCHS = 4


def _console_script() -> str:
    """The `aejax-train` that `pip install` put beside this interpreter."""
    path = Path(sysconfig.get_path("scripts")) / "aejax-train"
    if not path.exists():
        pytest.fail(f"aejax-train is not installed in {path.parent}: run `pip install -e .`")
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One offline run of the default experiment for a few epochs, with the bar forced on."""
    run_dir = tmp_path_factory.mktemp("run")
    command = (_console_script(),)
    result = run_cli(f"trainer.epochs={EPOCHS}", "logger.mode=offline", "trainer.progress=on",
                     "logger.tags=[smoke,digits]", f"hydra.run.dir={run_dir}", cwd=run_dir, command=command)
    assert result.returncode == 0, result.stderr
    return run_dir, result


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_metrics_and_summary_are_written_and_the_loss_went_down(trained):
    run_dir, _ = trained
    rows = _rows(run_dir)
    assert [r["step"] for r in rows] == [0, 12, 24, 36, 48]  # 1437 examples / 128 -> 12 steps per epoch
    assert [r["epoch"] for r in rows] == list(range(EPOCHS + 1))
    assert rows[-1]["val/loss"] < rows[0]["val/loss"] and rows[-1]["train/loss"] < rows[1]["train/loss"]
    assert all(r["train/lr"] == pytest.approx(1e-3) for r in rows[1:])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["val/loss"] == rows[-1]["val/loss"]
    assert summary["val/loss_best"] == min(r["val/loss"] for r in rows)
    assert summary["steps"] == 48 and summary["num_params"] == 5346  # 64-32-16-2-16-32-64 with biases
    # start-up is counted from the process's start, so it includes compiling; the log says the same
    assert 0 < summary["compile_time_s"] < summary["first_step_s"]
    logged = re.search(r"first training step ([\d.]+) s after the process started \(compiling took ([\d.]+) s\)",
                       (run_dir / "aejax.log").read_text())
    assert logged and [float(v) for v in logged.groups()] == pytest.approx(
        [summary["first_step_s"], summary["compile_time_s"]], abs=0.0051)
    config = (run_dir / "config.yaml").read_text()
    assert "latent_dim: 2" in config and "name: vanilla-z2-s0" in config  # resolved, no ${...}


def test_the_offline_wandb_run_holds_the_same_numbers(trained):
    run_dir, _ = trained
    rows = _rows(run_dir)
    wb = read_run(run_dir)
    assert wb.exit_code == 0 and wb.project == "aejax" and wb.name == "vanilla-z2-s0"
    assert wb.tags == ["smoke", "digits"] and wb.job_type == "train"
    assert wb.config["model"]["latent_dim"] == 2 and wb.config["dataset"]["name"] == "digits"
    assert wb.config["optimizer"]["lr"] == pytest.approx(1e-3)
    # the numbers; snapshots add media (tables, images, histograms: dicts with a _type) at some steps
    history = [{k: v for k, v in h.items() if not k.startswith("_") and not isinstance(v, dict)} for h in wb.history]
    assert history == rows
    assert [h["_step"] for h in wb.history] == [r["step"] for r in rows]
    assert wb.summary["val/loss"] == rows[-1]["val/loss"]
    assert wb.summary["val/loss_best"] == min(r["val/loss"] for r in rows)
    assert wb.summary["status"] == "finished"


def test_the_console_shows_a_progress_bar_and_a_final_summary(trained):
    run_dir, result = trained
    assert f"0/{EPOCHS} [" in result.stderr and "epoch/s" in result.stderr  # tqdm's bar (trainer.progress=on)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"val/loss {summary['val/loss']:.5f}" in result.stdout
    assert "W&B (offline)" in result.stdout and str(run_dir) in result.stdout


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    result = run_cli("trainer.epochs=1", "logger.mode=disabled", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1/1 [" not in result.stderr and "epoch 1/1" in result.stdout + result.stderr  # a log line instead
    assert not (tmp_path / "wandb").exists()


def test_cfg_job_prints_the_composed_config_with_overrides(tmp_path):
    result = run_cli("model.latent_dim=8", "optimizer=sgd", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for line in ("latent_dim: 8", "name: sgd", "batch_size: 128", "name: digits", "mode: auto"):
        assert line in result.stdout
    assert not any(tmp_path.iterdir())  # printing the config runs nothing


@pytest.mark.parametrize("override,code,message", [
    ("model.latent_dim=0", 2, "model.latent_dim: must be > 0, got 0"),
    ("trainer.batch_size=abc", 2, "invalid config: trainer.batch_size: Value 'abc'"),
    ("dataset=nope", 1, "Could not find 'dataset/nope'"),
    ("trainer.batch_size=5000", 2, "larger than the 1437 training examples"),
])
def test_invalid_overrides_fail_with_a_message_that_names_the_problem(tmp_path, override, code, message):
    result = run_cli(override, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == code
    assert message in result.stderr
    assert not (tmp_path / "metrics.jsonl").exists()


def test_python_dash_m_and_the_console_script_are_the_same_app(tmp_path):
    a = run_cli("--cfg", "job", cwd=tmp_path)
    b = run_cli("--cfg", "job", cwd=tmp_path, command=(_console_script(),))
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout


def test_a_wheel_install_finds_its_configs(tmp_path):
    """`pip install .` (not editable) ships conf/ inside the package as aejax/conf."""
    repo, src = Path(__file__).resolve().parents[1], tmp_path / "src"
    for folder in ("aejax", "conf", "hydra_plugins"):  # build from a copy, so the repo gets no build/ folder
        shutil.copytree(repo / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("aejax-*.whl")
    assert "hydra_plugins/aejax_launcher/fault_tolerant_joblib.py" in zipfile.ZipFile(wheel).namelist()
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    # Only the wheel: drop the import hook of an editable install, which would supply what the wheel lacks.
    only_wheel = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in repr(f)]; "
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    # every subpackage is in the wheel (the experiment module imports them all)
    code = only_wheel + "import aejax.experiment, aejax.cli as c; print(c.__file__); print(c.config_dir())"
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    module, conf = where.stdout.split()
    assert module.startswith(str(tmp_path / "site")) and conf == str(tmp_path / "site" / "aejax" / "conf")
    job = subprocess.run([sys.executable, "-c", only_wheel + "import runpy; runpy.run_module('aejax', run_name='__main__')",
                          "--cfg", "job"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert job.returncode == 0 and "latent_dim: 2" in job.stdout


def test_the_command_imports_no_library_that_training_does_not_need_first():
    """Start-up time: scikit-learn, SciPy (evaluation), matplotlib (snapshot figures), orbax
    (checkpoints), grain (the stream feed), TFDS (datasets), W&B are imported where they are used."""
    code = ("import sys, aejax.cli, aejax.experiment, aejax.training.loop; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert {"jax", "flax", "hydra"} <= loaded
    assert not loaded & {"sklearn", "scipy", "matplotlib", "orbax", "grain", "tensorflow_datasets", "wandb"}


def test_data_that_cannot_be_had_exits_3_with_what_to_do(tmp_path):
    """The documented exit code 3 through the real command: Fashion-MNIST neither prepared nor
    downloadable (a mirror on a port nobody listens on)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    result = run_cli("dataset=fashion_mnist", f"dataset.data_dir={tmp_path / 'data'}", f"dataset.base_url={url}",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, command=(_console_script(),))
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("aejax: data unavailable: fashion_mnist is not prepared in")
    assert f"{url}train-images-idx3-ubyte.gz cannot be fetched" in result.stderr
    assert "aejax-data prepare fashion_mnist --source-dir DIR" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_run_whose_checkpoints_cannot_be_read_exits_4(tmp_path):
    """The documented exit code 4 through the real command: resuming a run whose every checkpoint
    is damaged."""
    run_dir = tmp_path / "run"
    first = run_cli("trainer.epochs=2", "trainer.checkpoint_every=12", "logger.mode=disabled", "eval.enabled=false",
                    "snapshot.every=0", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "running"}))  # as a kill -9 leaves it
    damaged = [f for f in (run_dir / "checkpoints").rglob("*") if f.is_file()]
    for f in damaged:
        f.write_bytes(b"\x00garbage")
    result = run_cli("trainer.epochs=2", "trainer.checkpoint_every=12", "logger.mode=disabled", "eval.enabled=false",
                     "snapshot.every=0", f"trainer.resume={run_dir}", f"hydra.run.dir={tmp_path / 'session'}",
                     cwd=tmp_path, command=(_console_script(),))
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith(f"aejax: no readable checkpoint in {run_dir / 'checkpoints'}: ")
    assert result.stderr.rstrip().endswith("Delete the folder to start afresh.") and "Traceback" not in result.stderr
    assert all(f.read_bytes() == b"\x00garbage" for f in damaged)  # nothing was overwritten
