"""A disk that fills up under a real run (docs/bad-input.md, "Resources"): exit 4 with the
documented message and ``status: failed`` (it used to exit 1 with a traceback and leave the run
``running``); the checkpoints before it are intact, and once space is freed the resume gives the
uninterrupted run."""
import pytest
from conftest import tmpfs
from interrupted import RUN, assert_same_run, checkpoint_steps, start, summary, train, wait_for_checkpoint


@pytest.fixture
def disk(tmp_path):
    with tmpfs(tmp_path / "disk", "8m") as mount:
        yield mount


def _fill(disk):
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_disk_that_fills_up_mid_run_exits_4_and_the_run_resumes_once_freed(tmp_path, disk):
    reference = tmp_path / "reference"
    assert train(f"hydra.run.dir={reference}", *RUN, cwd=tmp_path).returncode == 0
    run_dir = disk / "run"
    proc = start(run_dir)
    wait_for_checkpoint(run_dir, proc, at_least=24)
    _fill(disk)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 4, err
    assert "the disk is full" in err and "is intact: free space and resume with trainer.resume=" in err
    assert "Traceback" not in err.split("aejax: ")[-1]
    assert summary(run_dir)["status"] == "failed"
    kept = checkpoint_steps(run_dir)
    assert kept and not list((run_dir / "checkpoints").glob("*tmp*"))  # the unfinished write is gone
    (disk / "filler").unlink()
    out = train(f"hydra.run.dir={run_dir}", *RUN, "trainer.resume=true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert summary(run_dir)["resumed_from_step"] == kept[-1]
    assert_same_run(run_dir, reference)
