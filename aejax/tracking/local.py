"""The run directory as a tracking sink: ``config.yaml``, ``metrics.jsonl``, ``summary.json``
(written through ``aejax.rundir``, which owns their names and format).

Snapshots write their arrays and images into the run directory themselves (``snapshots/``,
``media/``), so media logged here need no copy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aejax import rundir


class LocalTracker:
    """With ``resume``, the run directory's files are continued: the summary is kept and the
    metrics are appended after ``rewind`` drops the rows past the resumed checkpoint."""

    reads_media = False  # media files are in the run directory already: nothing to wait for (Trackers)

    def __init__(self, run_dir: Path, config: dict[str, Any], resume: bool = False):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_config(self.run_dir, config)
        self._summary: dict[str, Any] = rundir.read_summary(self.run_dir) if resume else {}
        self._summary["status"] = rundir.RUNNING
        self._metrics = open(self.run_dir / rundir.METRICS, "a" if resume else "w")
        rundir.write_summary(self.run_dir, self._summary)

    @property
    def values(self) -> dict[str, Any]:
        """The summary so far (on resume: the earlier session's, e.g. its ``wandb_id``)."""
        return dict(self._summary)

    def rewind(self, step: int) -> None:
        """Keep the logged rows up to ``step`` (a resumed checkpoint's); later ones are logged again.
        A torn row (the run was killed mid-write) is dropped with them."""
        self._metrics.close()
        rows = [row for row in rundir.read_metrics(self.run_dir) if row.get("step", step + 1) <= step]
        rundir.write_metrics(self.run_dir, rows)
        self._metrics = open(self.run_dir / rundir.METRICS, "a")

    def log(self, row: dict[str, float]) -> None:
        self._metrics.write(rundir.metrics_line(row))
        self._metrics.flush()

    def log_media(self, step: int, media) -> None:
        """Nothing to do: the files behind the media are already in the run directory."""

    def summary(self, values: dict[str, Any]) -> None:
        self._summary.update(values)
        rundir.write_summary(self.run_dir, self._summary)

    def finish(self, status: str) -> None:
        self._metrics.close()
        self.summary({"status": status})
