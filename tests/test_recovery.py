"""Resume reads what a crash leaves (docs/bad-input.md, "Recovery"): a torn last line of
metrics.jsonl, a garbled summary.json, a missing config.yaml or a truncated snapshot .npz after a
kill -9 each made resume fail with a raw traceback. Each is now recovered from, and the resumed
run is the uninterrupted one: the same metrics, final state, val/loss and snapshots."""
import numpy as np
import pytest
from conftest import offline_env  # noqa: F401  (conftest first: the CPU devices)
from interrupted import RUN, assert_same_run, checkpoint_steps, reference_run, start, summary, train, wait_for_checkpoint

# snapshots every 5 epochs (60 steps), and enough checkpoints kept to go back before one
RECOVER = (*RUN, "snapshot.every=5", "snapshot.probe_size=64", "snapshot.images=false", "trainer.checkpoint_keep=10")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory, *RECOVER)


def _snapshot_steps(run_dir):
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir / "snapshots").glob("step_*.npz"))


def _tear_metrics(run_dir):
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 9999, "train/lo')  # a kill mid-write: no closing brace, no newline


def _garble_summary(run_dir):
    (run_dir / "summary.json").write_text('{"status": "running", "wandb_id": ')


def _remove_config(run_dir):
    (run_dir / "config.yaml").unlink()


def _truncate_snapshot(run_dir):
    """Cut the newest snapshot that has a checkpoint before it to half its size."""
    checkpoints = checkpoint_steps(run_dir)
    target = max(s for s in _snapshot_steps(run_dir) if 0 < s <= checkpoints[-1] and checkpoints[0] < s)
    path = run_dir / "snapshots" / f"step_{target:07d}.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return target


@pytest.mark.parametrize("damage", [_tear_metrics, _garble_summary, _remove_config, _truncate_snapshot])
def test_resume_recovers_from_what_a_crash_leaves(tmp_path, reference, damage):
    run_dir = tmp_path / "run"
    proc = start(run_dir, run=RECOVER)
    wait_for_checkpoint(run_dir, proc, at_least=72)  # past the snapshot of step 60
    proc.kill()
    proc.communicate()
    damage(run_dir)
    out = train(f"hydra.run.dir={run_dir}", *RECOVER, "trainer.resume=true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert_same_run(run_dir, reference)
    assert summary(run_dir)["steps"] == 480 and (run_dir / "config.yaml").is_file()
    assert _snapshot_steps(run_dir) == _snapshot_steps(reference)
    for step in _snapshot_steps(reference):
        name = f"step_{step:07d}.npz"
        with np.load(run_dir / "snapshots" / name) as a, np.load(reference / "snapshots" / name) as b:
            np.testing.assert_array_equal(a["z"], b["z"])
