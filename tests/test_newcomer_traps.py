"""The traps a newcomer met on a first hour: `-m ... --cfg job` (Hydra refuses the pair with a
traceback), the console's lines (placement, noise, units)."""
import json
import re
import subprocess
import sys

import pytest
import yaml
from conftest import DEBIAN_FASHION_MNIST, offline_env, run_cli


def test_multirun_cfg_job_prints_each_jobs_config_and_runs_nothing(tmp_path):
    out = run_cli("-m", "model.latent_dim=2,4", "variant=vanilla,vae", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    jobs = out.stdout.split("# job ")[1:]
    heads = [job.splitlines()[0] for job in jobs]
    assert heads == ["0 of 4: model.latent_dim=2 variant=vanilla", "1 of 4: model.latent_dim=2 variant=vae",
                     "2 of 4: model.latent_dim=4 variant=vanilla", "3 of 4: model.latent_dim=4 variant=vae"]
    configs = [yaml.safe_load(job.split("\n", 1)[1]) for job in jobs]
    assert [(c["model"]["latent_dim"], c["variant"]["name"], c["variant"]["recon"]) for c in configs] == [
        (2, "vanilla", "mse"), (2, "vae", "bce"), (4, "vanilla", "mse"), (4, "vae", "bce")]
    assert all("hydra" not in c for c in configs)
    assert list(tmp_path.iterdir()) == []  # no multirun/ folder, nothing trained
    # a preset's own sweep (hydra.sweeper.params) counts, as in the multirun itself
    preset = run_cli("-m", "+experiment=first_principles_digits", "--cfg", "job", cwd=tmp_path)
    assert preset.returncode == 0 and preset.stdout.count("# job ") == 5
    bad = run_cli("-m", "model.latent_dim=2,4", "nosuchgroup=x", "--cfg", "job", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nosuchgroup" in bad.stderr


def test_the_first_step_line_is_printed_on_its_own_line_before_the_progress_bar(tmp_path):
    """stdout (Hydra's log lines) and stderr (the bar) in one pipe, in the order they were written:
    the INFO line starts a line of its own, not the middle of the bar's."""
    out = subprocess.run([sys.executable, "-m", "aejax", "trainer.epochs=3", "trainer.progress=on", "eval.enabled=false",
                          "snapshot.every=0", "logger.mode=disabled", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=tmp_path, env=offline_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout
    before, line, _ = out.stdout.partition("][aejax.training.loop][INFO] - first training step")
    assert line and before.rsplit("\n", 1)[-1].startswith("[")  # "[date time" starts the line
    assert "epoch/s" in out.stdout.split("first training step", 1)[1]  # the bar came after it


def test_summary_numbers_carry_their_units(tmp_path):
    out = run_cli("variant=vae", "trainer.epochs=2", "snapshot.every=0", "logger.mode=disabled", "eval.iwae_samples=4",
                  "eval.iwae_examples=32", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert f"NLL {s['test/iwae_nll']:.2f} nats per example" in out.stdout
    assert f"test/mse {s['test/mse']:.5f} per value" in out.stdout
    assert re.search(r"steps in [0-9.]+ s \([0-9,]+ examples/s\) after [0-9.]+ s compiling", out.stdout)


@pytest.mark.dataset
def test_preparing_local_files_prints_one_line_and_no_download_noise(tmp_path, capfd):
    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist (installed by .ci/run)")
    from aejax.data import mnist_family

    mnist_family.prepare("fashion_mnist", data_dir=tmp_path)
    out, err = capfd.readouterr()
    assert "Unknown size" not in out + err and "Downloading" not in out + err
    assert f"aejax: preparing fashion_mnist once into {tmp_path}" in err and str(DEBIAN_FASHION_MNIST) in err


def test_integer_labels_without_class_names_are_named_by_their_numbers(tmp_path):
    """docs/datasets.md's `dataset=array dataset.path=mydata.npz` with labels and no class_names
    failed drawing its first snapshot (found by test_doc_commands)."""
    import numpy as np

    from aejax.data.array import as_dataset

    x = np.zeros((4, 3), np.float32)
    d = as_dataset({"x_train": x, "x_test": x, "y_train": np.array([0, 2, 1, 0]), "y_test": np.array([1, 1, 0, 2])}, "m")
    assert d.class_names == ("0", "1", "2")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "m.npz", x_train=rng.uniform(size=(200, 3)).astype(np.float32), y_train=np.arange(200) % 3,
             x_test=rng.uniform(size=(12, 3)).astype(np.float32), y_test=np.arange(12) % 3)
    out = run_cli("dataset=array", f"dataset.path={tmp_path / 'm.npz'}", "trainer.epochs=1", "logger.mode=disabled",
                  f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"
