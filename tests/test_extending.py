"""docs/extending.md, run as a user would: its files written into a fresh directory outside aejax
(a package ``mypkg`` and a config dir ``conf``), its commands run through the real CLI with that
directory on PYTHONPATH, and its Python example run as a script. The numbers are checked against
hand counts and against the run's own logged terms."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import offline_env

DOC = Path(__file__).resolve().parent.parent / "docs" / "extending.md"
FAST = ["trainer.epochs=2", "logger.mode=disabled", "snapshot.every=0", "trainer.progress=off"]


def doc_blocks() -> tuple[dict[str, str], list[str]]:
    """``({path: text}, [command, ...])`` from the doc's ``<!-- file: PATH -->`` and ``<!-- command -->`` blocks."""
    text = DOC.read_text()
    files, commands = {}, []
    for marker, body in re.findall(r"<!-- (file: [^ ]+|command) -->\n```[a-z]*\n(.*?)```", text, re.S):
        if marker == "command":
            commands += [line for line in body.splitlines() if line.strip()]
        else:
            files[marker.split(": ", 1)[1]] = body
    return files, commands


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user")
    files, _ = doc_blocks()
    for path, body in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(body)
    (root / "mypkg" / "__init__.py").touch()
    return root


def run_user(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**offline_env(), "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "aejax", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)


def doc_command(index: int) -> list[str]:
    """The doc's command ``index`` as arguments to ``python -m aejax``."""
    words = shlex.split(doc_blocks()[1][index])
    assert words[0] == "aejax-train"
    return words[1:]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_the_doc_has_each_example_under_30_lines():
    files, commands = doc_blocks()
    assert {"mypkg/nets.py", "mypkg/data.py", "mypkg/terms.py", "conf/encoder/res.yaml", "conf/dataset/waves.yaml",
            "conf/experiment/waves_res.yaml", "notebook.py"} <= set(files)
    for path in ("mypkg/data.py", "mypkg/terms.py", "conf/experiment/waves_res.yaml"):
        assert len(files[path].splitlines()) < 30, path
    assert len(files["mypkg/nets.py"].split("\n\n\nclass SmallDecoder")[0].splitlines()) < 30  # the encoder
    assert len(commands) == 5


def test_an_own_encoder_and_decoder_train_and_have_the_hand_counted_parameters(user_dir):
    run_dir = user_dir / "runs" / "nets"
    result = run_user(user_dir, *doc_command(0), *FAST, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(run_dir)
    # ResEncoder(64, blocks=3) on 64 inputs, a 64 -> 2 bottleneck, SmallDecoder(64): 2 -> 64 -> 64
    encoder = (64 * 64 + 64) + 3 * (64 * 64 + 64)
    assert s["status"] == "finished" and s["num_params"] == encoder + (64 * 2 + 2) + (2 * 64 + 64) + (64 * 64 + 64)
    assert "aejax: res/small vanilla autoencoder" in result.stdout
    assert np.isfinite(s["test/mse"]) and s["test/mse"] < s["test/pca_mse"] * 5


def test_an_own_dataset_function_is_loaded_with_its_labels(user_dir):
    run_dir = user_dir / "runs" / "waves"
    result = run_user(user_dir, *doc_command(1), *FAST, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on waves (960 train / 240 test)" in result.stdout
    s = summary(run_dir)
    assert s["status"] == "finished" and 0 <= s["test/probe_accuracy"] <= 1  # the labels reached the probe
    from omegaconf import OmegaConf

    assert OmegaConf.load(run_dir / "config.yaml").dataset.noise == 0.1


def test_an_own_term_is_weighted_into_the_loss_and_logged_under_its_name(user_dir):
    run_dir = user_dir / "runs" / "term"
    result = run_user(user_dir, *doc_command(2), *FAST, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "train/decor" in r]
    assert len(trained) == 2 and all("val/decor" in r for r in trained)
    for r in trained:  # loss = recon + 0.1 * decor, as means over the same examples
        assert r["train/loss"] == pytest.approx(r["train/recon"] + 0.1 * r["train/decor"], rel=1e-5)
        assert r["val/loss"] == pytest.approx(r["val/recon"] + 0.1 * r["val/decor"], rel=1e-5)
    assert trained[0]["train/decor"] > 0


def test_an_own_preset_runs_and_sweeps_under_the_joblib_and_submitit_launchers(user_dir):
    one = user_dir / "runs" / "preset"
    result = run_user(user_dir, *doc_command(3), *FAST, f"hydra.run.dir={one}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(one)["status"] == "finished" and "res/small decorrelated" in result.stdout
    sweep = user_dir / "runs" / "sweep"
    result = run_user(user_dir, *doc_command(4), "hydra.launcher.n_jobs=2", *FAST, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    from omegaconf import OmegaConf

    dims = []
    for job in ("0", "1"):
        assert summary(sweep / job)["status"] == "finished"
        dims.append(OmegaConf.load(sweep / job / "config.yaml").model.latent_dim)
    assert sorted(dims) == [2, 4]
    submitit = user_dir / "runs" / "submitit"  # jobs pickled and run by submitit in another process
    result = run_user(user_dir, "--config-dir", "conf", "-m", "+experiment=waves_res", "model.latent_dim=3",
                      "hydra/launcher=submitit_local", *FAST, f"hydra.sweep.dir={submitit}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(submitit / "0")["status"] == "finished" and summary(submitit / "0")["num_params"] == (
        (32 * 64 + 64) + 2 * (64 * 64 + 64) + (64 * 3 + 3) + (3 * 64 + 64) + (64 * 32 + 32))  # waves of 32 values


def test_own_networks_train_as_a_seed_batch_data_parallel_and_resumed(user_dir):
    nets = ["--config-dir", "conf", "encoder=res", "decoder=small", *FAST]
    batch = user_dir / "runs" / "batch"
    result = run_user(user_dir, *nets, "trainer.num_seeds=2", f"hydra.run.dir={batch}")
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = summary(batch / "seed_0"), summary(batch / "seed_1")
    assert a["status"] == b["status"] == "finished" and a["test/mse"] != b["test/mse"]

    sharded = user_dir / "runs" / "sharded"
    result = run_user(user_dir, *nets, "trainer.parallel=sharded", "trainer.batch_size=64",
                      "trainer.checkpoint_every=23", f"hydra.run.dir={sharded}")
    assert result.returncode == 0, result.stderr[-3000:]
    first = summary(sharded)
    assert first["devices"] == 8
    shutil.rmtree(sharded / "checkpoints" / "46")  # as if killed after the checkpoint of step 23
    resumed = run_user(user_dir, *nets, "trainer.parallel=sharded", "trainer.batch_size=64",
                       "trainer.checkpoint_every=23", f"trainer.resume={sharded}", f"hydra.run.dir={sharded}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = summary(sharded)  # the own modules restored from the checkpoint train on to the same numbers
    assert again["resumed_from_step"] == 23 and again["val/loss"] == first["val/loss"]


def test_the_python_example_runs(user_dir):
    env = {**offline_env(), "PYTHONPATH": os.pathsep.join([str(user_dir), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "notebook.py"], cwd=user_dir, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if not line.startswith(("aejax:", " "))]  # not the summaries
    mse, rows, run_dir = printed[0].split()
    assert float(mse) == summary(Path(user_dir / run_dir))["test/mse"] and int(rows) == 6  # step 0 and 5 epochs
    assert printed[1] == "finished (2, 2)"
