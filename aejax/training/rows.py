"""The host's bookkeeping of logged rows, kept in checkpoints so a resumed run logs the same rows."""
from __future__ import annotations

from typing import Any

import numpy as np


class TrainRows:
    """Turns per-step metrics into one row per ``every`` steps: count-weighted means."""

    def __init__(self, every: int, schedule):
        self.every, self.schedule = every, schedule
        self.sums: dict[str, float] = {}
        self.count = 0.0

    def add(self, metrics: dict[str, np.ndarray], first_step: int, last: bool) -> dict[int, dict[str, float]]:
        """Rows for the steps ending a window; with ``last``, the final partial window too."""
        rows = {}
        counts = metrics["count"]
        steps = np.arange(first_step - 1, first_step - 1 + len(counts))
        lrs = np.broadcast_to(np.asarray(self.schedule(steps)), steps.shape)  # one call; constant schedules give a scalar
        for i in range(len(counts)):
            for name, values in metrics.items():
                if name != "count":
                    self.sums[name] = self.sums.get(name, 0.0) + float(values[i]) * float(counts[i])
            self.count += float(counts[i])
            step = first_step + i
            if step % self.every == 0 or (last and i == len(counts) - 1):
                rows[step] = {f"train/{k}": v / self.count for k, v in self.sums.items()}
                rows[step]["train/lr"] = float(lrs[i])
                self.sums, self.count = {}, 0.0
        return rows

    def state(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count}

    def load(self, state: dict[str, Any]) -> None:
        self.sums, self.count = dict(state["sums"]), float(state["count"])
