"""The runs ``aejax-report`` compares: each run directory read back (through ``aejax.rundir``)
as a ``Run``, and the parameters that vary across them."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from aejax import rundir
from aejax.rundir import FINISHED, find_runs  # find_runs: also imported from here

GROUPS = ("encoder", "decoder", "variant", "dataset", "optimizer", "trainer", "logger")
IGNORED = ("logger.", "hydra.")  # never "what varies": names, tags and groups follow from the rest
SEED, LATENT = "seed", "model.latent_dim"


@dataclass
class Run:
    path: Path
    name: str  # relative to the report's root
    status: str
    config: dict[str, Any]  # flattened: "model.latent_dim" -> 2
    overrides: Optional[dict[str, str]]  # Hydra's task overrides of the job, key -> value as typed
    summary: dict[str, Any]
    rows: list[dict[str, float]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)  # the varied parameters, filled in by load_runs

    @property
    def ok(self) -> bool:
        return self.status == FINISHED


def _override_key(key: str) -> str:
    return key.lstrip("+~")


def _overrides(run: Path) -> Optional[dict[str, str]]:
    items = rundir.read_overrides(run)
    if items is None:
        return None
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        key = _override_key(key).split("@")[0]  # experiment/intro_part@_global_ -> experiment/intro_part
        if not key.startswith("hydra."):
            out[key] = value
    return out


def load_run(path: Path, root: Path) -> Run:
    node = rundir.read_config(path)
    config = OmegaConf.to_container(node, resolve=False) if node is not None else None
    overrides = _overrides(path)
    if overrides is None and path.name in rundir.seed_batch_runs(path.parent) and isinstance(config, dict):
        overrides = _overrides(path.parent)  # a seed batch's run: the batch's overrides, with its own seed
        if overrides is not None:
            overrides.pop("trainer.num_seeds", None)
            overrides["seed"] = str(config.get("seed"))
    summary = rundir.read_summary(path)
    return Run(path=path, name=str(path.relative_to(root)) if path != root else path.name,
               status=rundir.status_of(summary),
               config=rundir.flatten(config) if isinstance(config, dict) else {},
               overrides=overrides, summary=summary, rows=rundir.read_metrics(path))


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def varied_parameters(runs: list[Run]) -> list[str]:
    """The parameters that differ across runs: Hydra's overrides when every run has them (as the
    user typed them: ``variant=vae``), else the differing config values (a group by its name)."""
    if runs and all(run.overrides is not None for run in runs):
        keys = list(dict.fromkeys(k for run in runs for k in run.overrides))  # type: ignore[union-attr]
        varied = [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]  # type: ignore[union-attr]
        for run in runs:
            run.params = {k: run.overrides.get(k, "") for k in varied}  # type: ignore[union-attr]
        return varied
    keys = list(dict.fromkeys(k for run in runs for k in run.config if not k.startswith(IGNORED)))
    varied = [k for k in keys if len({_fmt_value(run.config.get(k)) for run in runs}) > 1]
    named = {g for g in GROUPS if f"{g}.name" in varied}  # variant=vae says what variant.recon etc. are
    varied = [k for k in varied if k.split(".")[0] not in named or k == f"{k.split('.')[0]}.name"]
    labels = [k.split(".")[0] if k.split(".")[0] in named else k for k in varied]  # variant.name -> variant
    for run in runs:
        run.params = {label: _fmt_value(run.config[k]) if k in run.config else "" for label, k in zip(labels, varied)}
    return labels


def objective(run: Run) -> str:
    """What a run's ``val/loss`` and ``train/loss`` measure: its reconstruction loss, head, terms and
    corruption (``mse``, ``bce + kl``, ``mse + l1 (0.001)``, ...); runs with different objectives
    have losses on different scales."""
    c = run.config
    terms = sorted({k.split(".")[2] for k in c if k.startswith("variant.terms.") and k.count(".") >= 3})
    parts = [str(c.get("variant.recon", "mse"))] + [f"{t} ({c.get(f'variant.terms.{t}.weight')})" for t in terms]
    corrupted = any(k.startswith("variant.corruption.") and v is not None for k, v in c.items())
    return " + ".join(parts) + (", corrupted input" if corrupted else "")


def load_runs(root: Path) -> tuple[list[Run], list[str]]:
    runs = [load_run(path, root) for path in find_runs(root)]
    return runs, varied_parameters(runs)

