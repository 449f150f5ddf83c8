"""The rows of docs/bad-input.md not covered elsewhere: each bad input and the error it gets.

Covered elsewhere: unknown options, wrong types and out-of-range values (test_config.py,
test_cli.py), a dataset missing offline (test_mnist_family.py), W&B unreachable and the key
(test_wandb_tracker.py, test_reliability.py), damaged checkpoints and a full disk
(test_reliability.py).
"""
import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import compose_config, offline_env, tmpfs

from aejax.assemble import check_against_data
from aejax.data import load_dataset
from aejax.errors import ConfigError, DataError
from aejax.experiment import run


@pytest.mark.parametrize("overrides,warned", [
    (("dataset=line2d", "model.latent_dim=2"), True),  # 2-D points through a 2-D code
    (("dataset=line2d", "model.latent_dim=2", "variant=denoising", "variant.corruption.kind=gaussian"), False),
    (("dataset=line2d", "model.latent_dim=1"), False),
    (("model.latent_dim=64",), True),  # 8x8 digits, 64 values
    (("model.latent_dim=64", "variant=sparse"), False),
])
def test_a_bottleneck_as_wide_as_the_input_without_a_regularizer_is_warned_about(overrides, warned, caplog):
    cfg = compose_config(*overrides, "logger.mode=disabled")
    with caplog.at_level(logging.WARNING):
        check_against_data(cfg, load_dataset(cfg.dataset))
    assert ("the identity is learnable" in caplog.text) == warned


def test_a_damaged_dataset_cache_says_how_to_rebuild_it(prepared_fashion_mnist, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(prepared_fashion_mnist, copy)
    (train,) = copy.glob("aejax_fashion_mnist/*/*train.array_record*")
    data = bytearray(train.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = b"\xff" * 4096
    train.write_bytes(bytes(data))
    cfg = compose_config("dataset=fashion_mnist", f"dataset.data_dir={copy}", "logger.mode=disabled")
    with pytest.raises(DataError) as err:
        load_dataset(cfg.dataset)
    message = str(err.value)
    assert "the prepared files of fashion_mnist are damaged" in message
    assert f"delete {copy / 'aejax_fashion_mnist'}" in message and "aejax-data prepare fashion_mnist" in message


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only file system: even root cannot write there."""
    with tmpfs(tmp_path / "ro", "1m") as mount:
        (mount / "old-run").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount


def test_a_read_only_output_directory_is_refused_before_anything_runs(read_only_dir, tmp_path):
    with pytest.raises(ConfigError, match="hydra.run.dir: cannot write to the run directory .*Read-only file system"):
        run(compose_config("logger.mode=disabled"), read_only_dir / "old-run")
    # from the shell: Hydra itself cannot create its folder there and says where and why
    result = subprocess.run([sys.executable, "-m", "aejax", f"hydra.run.dir={read_only_dir / 'new'}",
                             "logger.mode=disabled"], cwd=tmp_path, env=offline_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1 and "Read-only file system" in result.stderr
    assert str(read_only_dir / "new") in result.stderr


def test_resuming_needs_a_checkpoint_and_the_same_config(tmp_path):
    with pytest.raises(ConfigError, match="trainer.resume: no checkpoint to resume from"):
        run(compose_config("logger.mode=disabled", f"trainer.resume={tmp_path}"), tmp_path / "new")
    run(compose_config("logger.mode=disabled", "trainer.epochs=2", "eval.enabled=false", "snapshot.every=0"),
        tmp_path / "first")
    with pytest.raises(ConfigError, match=r"was trained with another config: trainer.epochs=3 \(was 2\)"):
        run(compose_config("logger.mode=disabled", "trainer.epochs=3", "eval.enabled=false", "snapshot.every=0",
                           f"trainer.resume={tmp_path / 'first'}"), tmp_path / "second")
    rows_before = (tmp_path / "first" / "metrics.jsonl").read_text()
    # the same config continues (here: a finished run, so nothing is trained again)
    run(compose_config("logger.mode=disabled", "trainer.epochs=2", "eval.enabled=false", "snapshot.every=0",
                       f"trainer.resume={tmp_path / 'first'}"), tmp_path / "second")
    assert (tmp_path / "first" / "metrics.jsonl").read_text() == rows_before
    assert np.isfinite(float(json.loads((tmp_path / "first" / "summary.json").read_text())["val/loss"]))
