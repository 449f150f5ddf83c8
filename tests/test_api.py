"""The Python API: ``aejax.train`` runs what the CLI runs and hands back usable objects."""
from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

import aejax
from aejax.data import load_dataset
from aejax.errors import ConfigError

TINY = ["encoder.hidden=[16]", "trainer.epochs=3", "logger.mode=disabled", "snapshot.every=0", "trainer.progress=off"]


def test_train_returns_the_model_whose_reconstructions_give_the_runs_test_mse(tmp_path):
    run = aejax.train(TINY, run_dir=tmp_path / "run")
    assert run.run_dir == tmp_path / "run" and run.summary == {**json.loads((tmp_path / "run" / "summary.json")
                                                                             .read_text()), "run_dir": str(run.run_dir)}
    data = load_dataset(aejax.compose(TINY).dataset)
    recon = np.asarray(run.model(data.x_test))  # the trained nnx.Module, called on the test split
    mse = float(np.mean((recon.astype(np.float64) - data.x_test) ** 2))
    assert mse == pytest.approx(run.summary["test/mse"], rel=1e-5)
    assert [row["step"] for row in run.history] == [0, 12, 24, 36]  # step 0, then one row per epoch
    assert run.history[-1]["val/loss"] == run.summary["val/loss"]


def test_train_takes_data_and_a_model_as_objects(tmp_path):
    rng = np.random.default_rng(0)
    data = {"x_train": rng.random((256, 12), dtype=np.float32), "x_test": rng.random((64, 12), dtype=np.float32)}

    class Encoder(nnx.Module):  # [B, 12] -> [B, 6], the contract's `features`
        def __init__(self, rngs):
            self.dense, self.features = nnx.Linear(12, 6, rngs=rngs), 6

        def __call__(self, x):
            return nnx.relu(self.dense(x))

    def factory(key):
        rngs = nnx.Rngs(params=key)
        return aejax.Autoencoder.around(Encoder(rngs), nnx.Linear(2, 12, rngs=rngs), latent_dim=2, rngs=rngs)

    run = aejax.train(TINY, data=data, model=factory, run_dir=tmp_path / "own")
    assert run.summary["status"] == "finished" and run.summary["num_params"] == (12 * 6 + 6) + (6 * 2 + 2) + (2 * 12 + 12)
    assert run.model.encode(data["x_test"][:5]).shape == (5, 2)
    assert "test/probe_accuracy" not in run.summary  # no labels given

    with pytest.raises(ConfigError, match="model.latent_dim"):
        aejax.train([*TINY, "model.latent_dim=3"], data=data, model=factory, run_dir=tmp_path / "bad")
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_compose_validates_and_names_the_key():
    cfg = aejax.compose(["model.latent_dim=8", "variant=vae"])
    assert cfg.model.latent_dim == 8 and cfg.variant.head == "gaussian"
    with pytest.raises(ConfigError, match="trainer.epochs"):
        aejax.compose(["trainer.epochs=0"])
    with pytest.raises(TypeError, match="list of strings"):
        aejax.compose("model.latent_dim=8")


def test_an_optimizer_by_target_is_the_builtin_one(tmp_path):
    """optax.sgd named by _target_ (with aejax's lr and schedule) trains exactly as optimizer=sgd."""
    builtin = aejax.train([*TINY, "optimizer=sgd", "optimizer.lr=0.05"], run_dir=tmp_path / "builtin")
    cfg = aejax.compose([*TINY, "optimizer=sgd"], validated=False)
    cfg.optimizer = {"_target_": "optax.sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False}  # conf/optimizer/sgd.yaml
    target = aejax.train(cfg, run_dir=tmp_path / "target")
    assert target.summary["val/loss"] == builtin.summary["val/loss"]
    assert target.summary["train/loss"] == builtin.summary["train/loss"]


@pytest.mark.parametrize("override,message", [
    ("+encoder._target_=nopkg.Nets", "encoder._target_: cannot import 'nopkg.Nets': ModuleNotFoundError"),
    ("+encoder._target_=aejax.models.NoSuch", "encoder._target_: 'aejax.models' has no 'NoSuch'"),
    ("+variant.terms.mine._target_=aejax.models.NoSuch", "variant.terms.mine._target_: 'aejax.models' has no 'NoSuch'"),
    ("+encoder._target_=aejax.models.Autoencoder", "encoder._target_: Autoencoder cannot be called with"),
])
def test_a_target_that_cannot_be_imported_or_called_stops_the_cli_with_exit_2(tmp_path, override, message):
    from conftest import run_cli

    result = run_cli(override, "logger.mode=disabled", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2 and f"aejax: invalid config: {message}" in result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()  # nothing trained or written
