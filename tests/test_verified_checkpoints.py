"""Every checkpoint records a digest of what it holds; restore checks it (docs/bad-input.md).

Orbax restores a checkpoint with a few garbled bytes (file sizes unchanged) without any error, as
other numbers: a resumed run silently became another one and overwrote the good summary.
"""
import numpy as np
import pytest
from conftest import offline_env  # noqa: F401  (conftest first: the CPU devices)
from interrupted import RUN, assert_same_run, checkpoint_steps, garble, start, train, wait_for_checkpoint
from interrupted import small_state as _state

from aejax.training.checkpoint import CheckpointError, Checkpoints



def test_a_garbled_checkpoint_is_caught_by_its_digest_and_the_one_before_is_used(tmp_path, caplog):
    checkpoints = Checkpoints(tmp_path, keep=3)
    checkpoints.save(10, _state(1.0), {"note": "ten"})
    checkpoints.save(20, _state(2.0), {"note": "twenty"})
    garble(tmp_path / "checkpoints" / "20")
    step, state, host = Checkpoints(tmp_path, keep=3).restore(_state(0.0))
    assert step == 10 and host == {"note": "ten"}
    np.testing.assert_array_equal(state.params["w"], _state(1.0).params["w"])
    assert "checkpoint of step 20" in caplog.text and "the digest it recorded differs" in caplog.text
    garble(tmp_path / "checkpoints" / "10")
    with pytest.raises(CheckpointError, match=r"no readable checkpoint .*step 20: its files changed.*"
                                              r"step 10: its files changed.*Delete the folder"):
        Checkpoints(tmp_path, keep=3).restore(_state(0.0))


def test_a_json_edit_that_still_parses_is_caught_too(tmp_path):
    checkpoints = Checkpoints(tmp_path, keep=3)
    checkpoints.save(10, _state(1.0), {"best": 0.5})
    checkpoints.save(20, _state(2.0), {"best": 0.25})
    meta = tmp_path / "checkpoints" / "20" / "host" / "metadata"
    meta.write_text(meta.read_text().replace("0.25", "0.75"))
    step, _, host = Checkpoints(tmp_path, keep=3).restore(_state(0.0))
    assert step == 10 and host == {"best": 0.5}


def test_resuming_past_a_garbled_checkpoint_gives_the_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    assert train(f"hydra.run.dir={reference}", *RUN, cwd=tmp_path).returncode == 0
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_checkpoint(run_dir, proc, at_least=36)
    proc.kill()
    proc.communicate()
    latest = checkpoint_steps(run_dir)[-1]
    garble(run_dir / "checkpoints" / str(latest))
    out = train(f"hydra.run.dir={run_dir}", *RUN, "trainer.resume=true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"checkpoint of step {latest}" in out.stderr + (run_dir / "aejax.log").read_text()
    assert_same_run(run_dir, reference)
