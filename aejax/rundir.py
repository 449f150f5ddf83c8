"""The run directory's files: their names, writing and reading them, finding runs.

Everything that reads or writes a run directory by name goes through here: the run
(``aejax.experiment``, ``aejax.tracking.local``), sweeps (``aejax.sweep``), ``aejax-report`` and
``aejax-explore``. A run directory holds::

    config.yaml      the validated config of the run (interpolations as written)
    summary.json     the run's status and final metrics, rewritten atomically as it goes
    metrics.jsonl    one JSON object per logged step, appended
    checkpoints/ snapshots/ media/ wandb/    written by their owners
    .hydra/overrides.yaml                    Hydra's, in a multirun job
    seed_<s>/        the runs of a seed batch (``trainer.num_seeds > 1``), each a run directory;
                     the batch's own summary.json names them (``runs``)
    .aejax.lock      held while a run writes the directory (``aejax.runlock.RunLock``): its PID and host

and a multirun's sweep directory ``sweep.json`` (what the sweep varies, its W&B group).

What is written is strict JSON (no ``NaN``/``Infinity``): a non-finite float is written as
``null``, so any JSON reader can load the files. Reading is forgiving: a missing or garbled
``summary.json`` reads as ``{}``, and a line of ``metrics.jsonl`` that is not a JSON object (the
torn last line a kill mid-write leaves, anywhere in the file) is skipped.

A bottom layer: the standard library, numpy and (imported when needed) OmegaConf; no JAX, so
that ``aejax-explore`` starts without it.
"""
from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

CONFIG = "config.yaml"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
SWEEP_FILE = "sweep.json"
CHECKPOINTS = "checkpoints"
SNAPSHOTS = "snapshots"
MEDIA = "media"
CODES_FIGURE = "media/codes.png"  # a sparse dictionary's or a codebook's figure (aejax.analysis.code_figures)
WANDB = "wandb"
HYDRA_OVERRIDES = ".hydra/overrides.yaml"
SEED_PREFIX = "seed_"
LOCK = ".aejax.lock"

# A run's status in its summary.json (``status``); MISSING when it has no readable summary.
RUNNING, FINISHED, DIVERGED, FAILED, PREEMPTED = "running", "finished", "diverged", "failed", "preempted"
MISSING, UNKNOWN = "missing", "unknown"


# ----------------------------------------------------------------------------------------------
# Writing


def _finite(node: Any) -> Any:
    """``node`` with every non-finite float (NaN, +-inf) replaced by None."""
    if isinstance(node, float) and not math.isfinite(node):
        return None
    if isinstance(node, dict):
        return {key: _finite(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_finite(value) for value in node]
    return node


def _write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file and a rename: a reader sees the old or the new file.
    On a full disk a file no larger than before is rewritten in place (the status of a run stopped
    by the full disk still reaches its summary.json)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:  # a full disk: rewrite the file in place, which reuses its own space
        tmp.unlink(missing_ok=True)
        if e.errno not in (errno.ENOSPC, errno.EDQUOT) or not path.exists() or len(text) > path.stat().st_size + 4096:
            raise
        path.write_text(text)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as strict JSON (non-finite floats as null), atomically."""
    _write_text_atomic(path, json.dumps(_finite(data), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / SUMMARY, summary)


def metrics_line(row: dict[str, Any]) -> str:
    """One line of ``metrics.jsonl`` (with its newline), strict JSON as the other files."""
    return json.dumps(_finite(row), allow_nan=False) + "\n"


def write_metrics(run_dir: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace ``metrics.jsonl`` with ``rows``, atomically."""
    _write_text_atomic(Path(run_dir) / METRICS, "".join(metrics_line(row) for row in rows))


def write_config(run_dir: Path, config: Any, *, resolve: bool = False) -> None:
    """Write ``config.yaml`` (a DictConfig or a plain dict), atomically."""
    from omegaconf import OmegaConf

    node = config if OmegaConf.is_config(config) else OmegaConf.create(config)
    _write_text_atomic(Path(run_dir) / CONFIG, OmegaConf.to_yaml(node, resolve=resolve))


# ----------------------------------------------------------------------------------------------
# Reading


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when the file is missing, unreadable, garbled or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run's ``summary.json``; ``{}`` when it is missing or garbled."""
    return read_json(Path(run_dir) / SUMMARY)


def status_of(summary: dict[str, Any]) -> str:
    """The status in a summary read by ``read_summary``: ``running``, ``finished``, ...;
    ``missing`` for an empty one (no readable summary.json), ``unknown`` when it does not say."""
    return str(summary.get("status", UNKNOWN)) if summary else MISSING


def run_status(run_dir: Path) -> str:
    """The run's status from its summary.json (``status_of``)."""
    return status_of(read_summary(run_dir))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of the run's ``metrics.jsonl`` in order; ``[]`` when there is none.

    A line that is not a JSON object is skipped, wherever it is: a kill mid-write leaves a torn
    last line, and a run resumed after one used to append to it, which leaves it in the middle;
    the rows around it are intact and kept. Blank lines are skipped too.
    """
    try:
        lines = (Path(run_dir) / METRICS).read_text().splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _read_yaml(path: Path) -> Any:
    """A YAML file as OmegaConf's node, or None when it is missing or does not parse."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.load(path)
    except (OSError, ValueError, OmegaConfBaseException, yaml.YAMLError):
        return None


def read_config(run_dir: Path):
    """The run's ``config.yaml`` as a DictConfig (interpolations as written); None when it is
    missing, does not parse or is not a mapping."""
    from omegaconf import DictConfig

    config = _read_yaml(Path(run_dir) / CONFIG)
    return config if isinstance(config, DictConfig) else None


def read_overrides(run_dir: Path) -> Optional[list[str]]:
    """Hydra's overrides of a multirun job (``.hydra/overrides.yaml``) as typed; None without them."""
    from omegaconf import ListConfig, OmegaConf

    items = _read_yaml(Path(run_dir) / HYDRA_OVERRIDES)
    return [str(item) for item in OmegaConf.to_container(items)] if isinstance(items, ListConfig) else None


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as dotted keys: ``{"model": {"latent_dim": 2}}`` -> ``{"model.latent_dim": 2}``;
    an empty dict stays a leaf (``{"a": {}}`` -> ``{"a": {}}``)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


# ----------------------------------------------------------------------------------------------
# Checkpoints (written by aejax.training.checkpoint)


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of the run's checkpoints (``checkpoints/<step>/``), ascending."""
    folder = Path(run_dir) / CHECKPOINTS
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


# ----------------------------------------------------------------------------------------------
# Finding runs


def seed_dir(run_dir: Path, seed: int) -> Path:
    """The directory of a seed batch's run with ``seed``."""
    return Path(run_dir) / f"{SEED_PREFIX}{seed}"


def seed_batch_runs(run_dir: Path) -> list[str]:
    """The runs of a seed batch's directory (``trainer.num_seeds > 1``), relative to it; none for a run."""
    runs = read_summary(run_dir).get("runs")
    return [str(run) for run in runs] if isinstance(runs, list) else []


def _natural(path: Path) -> list[Any]:
    """A sort key that puts ``2`` before ``10`` (Hydra's job numbers)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts]


def find_runs(root: Path, *, jobs: bool = False, since: float = 0.0) -> list[Path]:
    """The run directories under ``root`` (or ``root`` itself), sorted naturally: those with a
    ``summary.json``, a ``metrics.jsonl`` or Hydra's ``.hydra/overrides.yaml`` written at or after
    ``since`` (a time stamp), none inside a ``wandb`` folder.

    A seed batch is listed as its runs (``seed_<s>``), or with ``jobs`` as one job, as a multirun
    launched it (then nothing inside another found directory is listed).
    """
    root = Path(root)
    found = set()
    for marker in (SUMMARY, METRICS, HYDRA_OVERRIDES):
        for path in root.rglob(marker):
            run = path.parent.parent if marker == HYDRA_OVERRIDES else path.parent
            if WANDB not in run.relative_to(root).parts and (since <= 0 or path.stat().st_mtime >= since):
                found.add(run)
    if jobs:
        found = {run for run in found if not any(parent in found for parent in run.parents)}
    else:
        found -= {run for run in found if seed_batch_runs(run)}
    return sorted(found, key=lambda p: _natural(p.relative_to(root)))


def sweep_group(sweep_dir: str | Path) -> str:
    """The W&B group of a sweep's jobs: the sweep directory's last two parts
    (``multirun/2026-11-21/17-40-22`` -> ``2026-11-21/17-40-22``)."""
    parts = Path(sweep_dir).resolve().parts
    return "/".join(parts[-2:])[-128:]


# ----------------------------------------------------------------------------------------------
# A seed batch's directory

BATCH_METRICS = ("val/loss", "train/loss", "test/mse", "test/probe_accuracy", "test/knn_accuracy")


class BatchDir:
    """The directory of a seed batch: its ``config.yaml`` (with ``trainer.num_seeds``) and a
    ``summary.json`` naming the runs (``runs``) with the mean and spread of their final metrics."""

    def __init__(self, run_dir: Path, cfg: Any, runs: list[Path]):
        self.run_dir, self.runs = Path(run_dir), runs
        write_config(self.run_dir, cfg)
        self.summary: dict[str, Any] = {"status": RUNNING, "num_seeds": len(runs),
                                        "runs": [str(Path(p).relative_to(self.run_dir)) for p in runs]}
        write_summary(self.run_dir, self.summary)

    def finish(self, statuses: list[str]) -> None:
        self.summary["statuses"] = statuses
        worst = [s for s in (PREEMPTED, FAILED, DIVERGED) if s in statuses]
        self.summary["status"] = worst[0] if worst else FINISHED
        finals = [read_summary(p) for p in self.runs]
        for key in BATCH_METRICS:
            values = [f[key] for f, st in zip(finals, statuses)
                      if st == FINISHED and isinstance(f.get(key), (int, float))]
            if values:
                self.summary[f"{key}_mean"] = float(np.mean(values))
                self.summary[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        write_summary(self.run_dir, self.summary)

    def describe(self) -> str:
        s = self.summary
        if "val/loss_mean" not in s:
            return f"aejax: seed batch of {s['num_seeds']} in {self.run_dir}: {s['status']}"
        return (f"aejax: seed batch of {s['num_seeds']} ({', '.join(s['runs'])}): val/loss "
                f"{s['val/loss_mean']:.5f} ± {s['val/loss_std']:.5f} (mean ± std over seeds); {s['status']}")
