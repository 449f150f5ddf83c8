"""`aejax-train trainer.resume=RUN_DIR` alone continues a run with the config it was started with
(through the real command, after a kill -9); a value on the command line that would change the
run is refused, naming it; settings that change no number are taken from the command."""
import os
import signal

import pytest
from conftest import compose_config
from interrupted import RUN, assert_same_run, reference_run, start, summary, train, wait_for_checkpoint

from aejax.errors import ConfigError
from aejax.resume import EVERYTHING, override_keys

# not the defaults: a resume that used the command's defaults would train another model
OWN = ("model.latent_dim=3", "optimizer.lr=3e-3", "dataset.test_size=0.25")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory, *RUN, *OWN)


def test_a_killed_run_continues_from_its_run_dir_alone_as_it_was_started(tmp_path, reference):
    run_dir = tmp_path / "run"
    proc = start(run_dir, *OWN)
    wait_for_checkpoint(run_dir, proc, 48)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert summary(run_dir)["status"] != "finished"

    # a value set on the command line that differs is refused, even when it is the default
    changed = train(f"trainer.resume={run_dir}", "model.latent_dim=4", "dataset.test_size=0.2", cwd=tmp_path)
    assert changed.returncode == 2, changed.stderr
    assert (f"trainer.resume: {run_dir} was trained with another config: dataset.test_size=0.2 (was 0.25), "
            "model.latent_dim=4 (was 3); resume with the settings it was started with") in changed.stderr

    out = train(f"trainer.resume={run_dir}", cwd=tmp_path)  # alone: no override repeated
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert_same_run(run_dir, reference)
    assert "z=3" in out.stdout and f"run dir: {run_dir}" in out.stdout


def test_what_a_resume_takes_from_the_command_and_what_it_refuses(tmp_path):
    from aejax.experiment import run

    first = tmp_path / "first"
    tiny = ("trainer.epochs=2", "eval.enabled=false", "snapshot.every=0", "logger.mode=disabled", "model.latent_dim=3")
    run(compose_config(*tiny), first)
    before = (first / "metrics.jsonl").read_text()
    # repeated overrides and settings that change no number (the progress bar, W&B's mode) are fine
    ok = ("trainer.epochs=2", "trainer.progress=off", "logger.mode=offline", f"trainer.resume={first}")
    run(compose_config(*ok), tmp_path / "other", overrides=ok)
    assert (first / "metrics.jsonl").read_text() == before  # finished already: nothing trained again
    bad = ("trainer.epochs=3", f"trainer.resume={first}")
    with pytest.raises(ConfigError, match=r"trainer.epochs=3 \(was 2\); resume with the settings") as e:
        run(compose_config(*bad), tmp_path / "other", overrides=bad)
    assert e.value.key == "trainer.resume" and "latent_dim" not in str(e.value)  # only what the command set
    # a config handed over whole (no overrides known): every differing value is refused
    with pytest.raises(ConfigError, match=r"model.latent_dim=2 \(was 3\)"):
        run(compose_config(f"trainer.resume={first}"), tmp_path / "other")


def test_the_keys_an_override_sets():
    typed = ["variant=vae", "model.latent_dim=8", "+variant.terms.l1.weight=1e-3", "hydra.run.dir=x", "~logger.entity"]
    cfg = compose_config(*typed[:3])
    assert override_keys(typed, cfg) == {"variant", "model.latent_dim",
                                                                          "variant.terms.l1.weight", "logger.entity"}
    assert override_keys(["dataset.nope=1"], cfg) == {EVERYTHING}  # not a key of the config: assume the worst
    assert override_keys(["+experiment=bottleneck_sweep"], cfg) == {EVERYTHING}  # a preset may set anything
    assert override_keys(["experiment/intro_part@_global_=fashion_mnist"], cfg) == {EVERYTHING}
