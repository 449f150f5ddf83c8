"""Read back a real wandb offline run (no mocks) with aejax.tracking.wandb_file."""

from collections.abc import Callable
from pathlib import Path

import pytest
import wandb

from aejax.tracking.wandb_file import WandbFileError, iter_records, read_run

STEPS = 40
LOSSES = [0.5 / (i + 1) for i in range(STEPS)]
NOTES = "x" * 70_000  # a record longer than two 32 KiB blocks: FIRST, MIDDLE and LAST chunks


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished offline run in its own folder; returns (folder, run id)."""
    root = tmp_path_factory.mktemp("wandb_run")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_SILENT", "true")
        env.delenv("WANDB_API_KEY", raising=False)
        for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            env.setenv(var, str(root / "home"))
        run = wandb.init(
            project="aejax-test", group="grid-1", name="vae-a", tags=["unit", "vae"],
            job_type="train", dir=root, mode="offline",
            config={"model": {"latent_dim": 2}, "seed": 0},
            settings=wandb.Settings(console="off"),
        )
        run.define_metric("epoch")
        run.define_metric("train/*", step_metric="epoch")
        for epoch, loss in enumerate(LOSSES, start=1):
            run.log({"train/loss": loss, "epoch": epoch, "val": {"recon": 2 * loss}})
        run.config.update({"optim": {"lr": 0.001}})
        run.summary["best/loss"] = min(LOSSES)
        run.summary["final"] = {"psnr": 30.5}
        run.summary["notes"] = NOTES
        run.summary["scratch"] = 1
        del run.summary["scratch"]
        run_id = run.id
        run.finish()
        # finish() can return before wandb-core flushes the file's last block; teardown waits
        # for the service process to exit, which closes (and flushes) the .wandb file.
        wandb.teardown()
    return root, run_id


def _run_file(root: Path) -> Path:
    (path,) = root.glob("wandb/offline-run-*/run-*.wandb")
    return path


def test_metadata_and_exit_code(offline_run: tuple[Path, str]) -> None:
    root, run_id = offline_run
    run = read_run(root)
    assert (run.run_id, run.project, run.group) == (run_id, "aejax-test", "grid-1")
    assert run.name == "vae-a"
    assert (run.tags, run.job_type, run.exit_code) == (["unit", "vae"], "train", 0)


def test_config_is_nested_and_without_wandb_key(offline_run: tuple[Path, str]) -> None:
    config = read_run(offline_run[0]).config
    assert config == {"model": {"latent_dim": 2}, "seed": 0, "optim": {"lr": 0.001}}
    assert config["model"]["latent_dim"] == 2


def test_history_rows_in_order(offline_run: tuple[Path, str]) -> None:
    history = read_run(offline_run[0]).history
    assert [row["train/loss"] for row in history] == LOSSES
    assert [row["val/recon"] for row in history] == [2 * loss for loss in LOSSES]
    assert [row["epoch"] for row in history] == list(range(1, STEPS + 1))
    assert [row["_step"] for row in history] == list(range(STEPS))
    assert all({"_timestamp", "_runtime"} <= row.keys() for row in history)


def test_summary_is_final_state(offline_run: tuple[Path, str]) -> None:
    summary = read_run(offline_run[0]).summary
    assert summary["best/loss"] == min(LOSSES)
    assert summary["final"] == {"psnr": 30.5}
    assert summary["notes"] == NOTES
    assert "scratch" not in summary
    # wandb mirrors the last history row into the summary.
    assert (summary["train/loss"], summary["val"], summary["_step"]) == (
        LOSSES[-1], {"recon": 2 * LOSSES[-1]}, STEPS - 1
    )


def test_accepts_run_dir_and_file(offline_run: tuple[Path, str]) -> None:
    path = _run_file(offline_run[0])
    assert read_run(path) == read_run(path.parent) == read_run(offline_run[0])
    assert path.stat().st_size > 2 * 32768
    assert next(iter_records(path)).WhichOneof("record_type") == "header"


def test_no_or_several_runs(tmp_path: Path) -> None:
    with pytest.raises(WandbFileError, match="found: none"):
        read_run(tmp_path)
    for name in ("offline-run-1-a", "offline-run-2-b"):
        (tmp_path / "wandb" / name).mkdir(parents=True)
        (tmp_path / "wandb" / name / "run-x.wandb").touch()
    with pytest.raises(WandbFileError, match="offline-run-1-a.*offline-run-2-b"):
        read_run(tmp_path)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def _cut_after_first_chunk_of_notes(data: bytes) -> bytes:
    # The FIRST chunk of the long summary record fills its block; cut the file right there.
    return data[: (data.index(NOTES[:1000].encode()) // 32768 + 1) * 32768]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(lambda data: _flip(data, 7), "checksum", id="first-chunk-crc"),
        pytest.param(lambda data: _flip(data, len(data) // 2), "at byte", id="byte-in-middle"),
        pytest.param(lambda data: data[:-3], "runs past", id="cut-inside-chunk"),
        pytest.param(_cut_after_first_chunk_of_notes, "incomplete", id="cut-between-chunks"),
        pytest.param(lambda data: b":W&X" + data[4:], "header", id="bad-ident"),
        pytest.param(lambda data: data[:4] + b"\0\0" + data[6:], "header", id="bad-magic"),
        pytest.param(lambda data: data[:6] + b"\x01" + data[7:], "header", id="bad-version"),
        pytest.param(lambda data: data[:5], "header", id="short-header"),
    ],
)
def test_damaged_file_raises(
    offline_run: tuple[Path, str], tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    damaged = tmp_path / "run-damaged.wandb"
    damaged.write_bytes(damage(_run_file(offline_run[0]).read_bytes()))
    with pytest.raises(WandbFileError, match=message):
        list(iter_records(damaged))


def test_a_cut_short_file_reads_up_to_the_cut_with_partial(offline_run: tuple[Path, str], tmp_path: Path) -> None:
    """A process killed while writing leaves a truncated file: ``partial`` reads what was complete."""
    data = _run_file(offline_run[0]).read_bytes()
    whole = list(iter_records(_run_file(offline_run[0])))
    cut = tmp_path / "run-cut.wandb"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(WandbFileError):
        list(iter_records(cut))
    records = list(iter_records(cut, partial=True))
    assert 0 < len(records) < len(whole)
    assert [r.SerializeToString() for r in records] == [r.SerializeToString() for r in whole[: len(records)]]
