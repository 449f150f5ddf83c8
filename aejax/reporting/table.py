"""The comparison table of ``aejax-report``: a row per run (its status, the varied parameters,
the untrained model's validation loss and the final metrics), as Markdown and CSV."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Optional

from aejax.reporting.runs import Run
from aejax.rundir import FINISHED

# Final metrics shown when any run has them, in this order.
METRICS = ("val/loss", "val/mse", "train/loss", "val/loss_best", "test/mse", "test/pca_mse", "test/ae_pca_ratio",
           "test/probe_accuracy", "test/knn_accuracy", "test/iwae_nll", "test/active_units", "anomaly/auroc",
           "epochs", "train_time_s", "compile_time_s")


def metric_columns(runs: list[Run]) -> list[str]:
    return [m for m in METRICS if any(m in run.summary for run in runs)]


INITIAL = "val/loss@0"  # the untrained model's validation loss (metrics.jsonl, step 0)


def _initial_loss(run: Run) -> Optional[float]:
    first = run.rows[0] if run.rows else {}
    return first.get("val/loss") if first.get("step") == 0 else None


def _problem(run: Run) -> str:
    """Why a run did not finish: its error, or where it diverged."""
    if run.summary.get("error"):
        return str(run.summary["error"])
    if run.status == "diverged" and "diverged_at_step" in run.summary:
        return f"NaN/Inf loss at step {run.summary['diverged_at_step']}"
    return ""


def table(runs: list[Run], varied: list[str]) -> tuple[list[str], list[list[Any]]]:
    """The columns and the raw cells of the comparison table (numbers stay numbers)."""
    metrics = metric_columns(runs)
    initial = [INITIAL] if any(_initial_loss(run) is not None for run in runs) else []
    errors = any(_problem(run) for run in runs)
    header = ["run", "status", *varied, *initial, *metrics, *(["error"] if errors else [])]
    rows = []
    for run in runs:
        row = [run.name, run.status, *(run.params.get(k, "") for k in varied), *([_initial_loss(run)] if initial else []),
               *(run.summary.get(m) for m in metrics)]
        if errors:
            row.append(_problem(run))
        rows.append(row)
    return header, rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [_cell(v) for v in row]
        if row[1] != FINISHED:  # failed, diverged, running (killed), missing
            cells[1] = f"**{cells[1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
