"""The run directory as a tracking sink: ``config.yaml``, ``metrics.jsonl``, ``summary.json``.

Snapshots write their arrays and images into the run directory themselves (``snapshots/``,
``media/``), so media logged here need no copy.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class LocalTracker:
    """With ``resume``, the run directory's files are continued: the summary is kept and the
    metrics are appended after ``rewind`` drops the rows past the resumed checkpoint."""

    def __init__(self, run_dir: Path, config: dict[str, Any], resume: bool = False):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        self._summary: dict[str, Any] = {}
        if resume and (self.run_dir / "summary.json").is_file():
            self._summary = json.loads((self.run_dir / "summary.json").read_text())
        self._summary["status"] = "running"
        self._metrics = open(self.run_dir / "metrics.jsonl", "a" if resume else "w")
        write_json_atomic(self.run_dir / "summary.json", self._summary)

    @property
    def values(self) -> dict[str, Any]:
        """The summary so far (on resume: the earlier session's, e.g. its ``wandb_id``)."""
        return dict(self._summary)

    def rewind(self, step: int) -> None:
        """Keep the logged rows up to ``step`` (a resumed checkpoint's); later ones are logged again."""
        self._metrics.close()
        path = self.run_dir / "metrics.jsonl"
        rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(row + "\n" for row in rows))
        os.replace(tmp, path)
        self._metrics = open(path, "a")

    def log(self, row: dict[str, float]) -> None:
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()

    def log_media(self, step: int, media) -> None:
        """Nothing to do: the files behind the media are already in the run directory."""

    def summary(self, values: dict[str, Any]) -> None:
        self._summary.update(values)
        write_json_atomic(self.run_dir / "summary.json", self._summary)

    def finish(self, status: str) -> None:
        self._metrics.close()
        self.summary({"status": status})
