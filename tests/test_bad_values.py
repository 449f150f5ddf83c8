"""Bad numbers are refused before anything is compiled or written (docs/bad-input.md, "Bad values").

Each value below used to be accepted: it compiled into a run that diverged, crashed after training
(the eval settings) or wrote NaN into summary.json. Now validation names the key (exit 2).
"""
import pytest
from conftest import compose_config, run_cli

from aejax.assemble import check_against_data
from aejax.data import load_dataset
from aejax.errors import ConfigError


@pytest.mark.parametrize("overrides,key,says", [
    (("optimizer.lr=nan",), "optimizer.lr", "must be a finite number, got nan"),
    (("optimizer.lr=inf",), "optimizer.lr", "must be a finite number, got inf"),
    (("optimizer.grad_clip=nan",), "optimizer.grad_clip", "finite"),
    (("optimizer.final_lr_fraction=1.5",), "optimizer.final_lr_fraction", "must be in [0, 1]"),
    (("optimizer.b1=1.0",), "optimizer.b1", "must be in [0, 1), got 1.0"),
    (("optimizer.b2=-0.1",), "optimizer.b2", "must be in [0, 1)"),
    (("optimizer.eps=-1e-8",), "optimizer.eps", "must be >= 0"),
    (("optimizer=adamw", "optimizer.weight_decay=-0.1"), "optimizer.weight_decay", "must be >= 0"),
    (("optimizer=sgd", "optimizer.momentum=1.0"), "optimizer.momentum", "must be in [0, 1)"),
    (("optimizer.warmup_steps=-1",), "optimizer.warmup_steps", "must be >= 0"),
    (("variant=sparse", "variant.terms.l1.weight=nan"), "variant.terms.l1.weight", "finite"),
    (("variant=vae", "variant.terms.kl.weight=-inf"), "variant.terms.kl.weight", "finite"),
    (("variant=denoising", "variant.corruption.kind=gaussian", "variant.corruption.sigma=inf"),
     "variant.corruption.sigma", "finite"),
    (("variant=denoising", "variant.corruption.rate=nan"), "variant.corruption.rate", "finite"),
    (("logger.init_timeout=inf",), "logger.init_timeout", "finite"),
    (("seed=-1",), "seed", "must be in [0, 2147483647], got -1"),
    (("seed=2147483647", "trainer.num_seeds=2"), "seed", "up to 2147483648"),
    (("dataset.test_size=1.0",), "dataset.test_size", "must be in (0, 1)"),
    (("dataset.split_seed=-3",), "dataset.split_seed", "must be in [0,"),
    (("snapshot.figure_budget=nan",), "snapshot.figure_budget", "finite"),
    (("distributed.timeout=0",), "distributed.timeout", "must be > 0"),
])
def test_a_bad_number_is_refused_naming_its_key(overrides, key, says):
    with pytest.raises(ConfigError) as caught:
        compose_config(*overrides, "logger.mode=disabled")
    assert caught.value.key == key and says in str(caught.value)


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "not-a-folder"
    file.write_text("")
    with pytest.raises(ConfigError, match="dataset.data_dir: .* is a file, not a folder"):
        compose_config("dataset=mnist", f"dataset.data_dir={file}", "logger.mode=disabled")


@pytest.mark.parametrize("overrides,key,says", [
    (("eval.knn_k=2000",), "eval.knn_k", "use eval.knn_k <= 1437"),
    (("eval.probe_examples=1",), "eval.probe_examples", "the linear probe needs two or more"),
    (("eval.anomaly={normal_classes:[0,1,2,3,4,5,6,7,8,9]}",), "eval.anomaly.normal_classes", "every test class"),
])
def test_eval_settings_the_data_cannot_honour_are_refused_before_training(overrides, key, says):
    cfg = compose_config(*overrides, "logger.mode=disabled")
    with pytest.raises(ConfigError) as caught:
        check_against_data(cfg, load_dataset(cfg.dataset))
    assert caught.value.key == key and says in str(caught.value)


@pytest.mark.parametrize("override,says", [
    ("optimizer.lr=nan", "aejax: invalid config: optimizer.lr: must be a finite number, got nan"),
    ("eval.knn_k=2000", "aejax: invalid config: eval.knn_k: 2000 neighbours"),
])
def test_the_cli_exits_2_and_writes_nothing(tmp_path, override, says):
    run_dir = tmp_path / "run"
    out = run_cli(f"hydra.run.dir={run_dir}", override, "trainer.epochs=1", "logger.mode=disabled", cwd=tmp_path)
    assert out.returncode == 2 and says in out.stderr, out.stderr
    assert {p.name for p in run_dir.iterdir()} <= {".hydra", "aejax.log"}  # Hydra's; no config, metrics, summary
