"""aejax from Python (a notebook, a script of one's own): ``compose`` and ``train``.

``train(["model.latent_dim=8", "trainer.epochs=20"])`` runs what ``aejax-train model.latent_dim=8
trainer.epochs=20`` runs (the same configs, validation, run directory, W&B run and summary) and
hands back the objects: the summary, the run directory, the trained model and its history.
``model=`` and ``data=`` take objects instead of the configured networks and dataset.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from omegaconf import DictConfig, OmegaConf

Overrides = Union[Sequence[str], DictConfig]


def _search_path(config_dir: Optional[Union[str, Path]]) -> list[str]:
    if config_dir is None:
        return []
    path = Path(config_dir).expanduser().resolve()
    if not path.is_dir():
        from aejax.errors import ConfigError

        raise ConfigError("config_dir", f"{path} is not a directory (a folder of config groups, e.g. "
                                        "conf/encoder/res.yaml)")
    return [f"hydra.searchpath=[file://{path}]"]


def compose(overrides: Overrides = (), *, config_dir: Optional[Union[str, Path]] = None,
            validated: bool = True) -> DictConfig:
    """The config ``aejax-train <overrides>`` runs, composed from aejax's configs (plus the config
    groups of ``config_dir``, as ``--config-dir`` adds them), validated unless ``validated=False``.
    A DictConfig passes through (validated)."""
    from aejax.config import validate

    if isinstance(overrides, DictConfig):
        cfg = overrides
    else:
        from hydra import compose as hydra_compose
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        from aejax.startup import config_dir as aejax_configs

        if isinstance(overrides, str):
            raise TypeError("overrides is a list of strings, e.g. ['model.latent_dim=8'], not one string")
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=aejax_configs(), version_base="1.3", job_name="aejax"):
            cfg = hydra_compose("config", overrides=[*_search_path(config_dir), *overrides])
    return validate(cfg) if validated else cfg


@dataclass
class Result:
    """A trained run. ``summary``: what its summary.json holds (``status``, ``val/loss``, ``test/*``,
    ...); ``run_dir``; ``model``: the trained ``nnx.Module`` (None if training diverged);
    ``history``: the rows of its metrics.jsonl. A seed batch's result holds its runs in ``seeds``
    (its own summary has the mean and spread over seeds, and no model)."""
    summary: dict[str, Any]
    run_dir: Path
    model: Any = None
    seeds: list["Result"] = field(default_factory=list)

    @property
    def history(self) -> list[dict[str, Any]]:
        from aejax.rundir import read_metrics

        return read_metrics(self.run_dir) if not self.seeds else []


def train(overrides: Overrides = (), *, run_dir: Optional[Union[str, Path]] = None,
          model: Optional[Union[Callable[..., Any], Any]] = None, data: Any = None,
          config_dir: Optional[Union[str, Path]] = None) -> Result:
    """Train as ``aejax-train`` does and return the run.

    - ``overrides``: command-line overrides (``["variant=vae", "model.latent_dim=8"]``) or a config
      from ``compose``.
    - ``run_dir``: where the run is written (default ``outputs/<date>/<time>``, as the command).
    - ``model``: an ``aejax.Autoencoder`` (trained from its own parameters) or a factory
      ``key -> Autoencoder`` (called once per seed), instead of the configured encoder and decoder;
      its ``latent_dim`` and ``head`` must match ``model.latent_dim`` and ``variant.head``.
    - ``data``: an ``aejax.data.Dataset``, or a mapping of arrays (``x_train``, ``x_test``, optional
      ``y_train``, ``y_test``, ``class_names``), instead of the configured dataset.
    - ``config_dir``: a folder of one's own config groups (``encoder/res.yaml``, ...).

    Invalid settings raise ``aejax.errors.ConfigError`` before anything is compiled.
    """
    from aejax.experiment import run_all
    from aejax.startup import setup_compile_cache

    raw = compose(overrides, config_dir=config_dir, validated=False)
    if data is not None:
        from aejax.data.array import as_dataset

        data = as_dataset(data, name=str(OmegaConf.select(raw, "dataset.name", default="data")))
    setup_compile_cache()
    when = _dt.datetime.now()
    run_dir = Path(run_dir) if run_dir is not None else Path("outputs") / f"{when:%Y-%m-%d}" / f"{when:%H-%M-%S}"
    typed = None if isinstance(overrides, DictConfig) else list(overrides)  # what a resume may not change
    runs = run_all(raw, run_dir, model=_factory(model), data=data, overrides=typed)
    results = [Result(r.summary, r.run_dir, r.model) for r in runs]
    if len(results) == 1:
        return results[0]
    from aejax.rundir import read_summary

    return Result(read_summary(run_dir), run_dir, None, results)


def _factory(model: Any) -> Optional[Callable[..., Any]]:
    """A factory ``key -> module`` from what ``train(model=...)`` was given."""
    if model is None:
        return None
    from flax import nnx

    if isinstance(model, nnx.Module):
        graphdef, state = nnx.split(model)
        return lambda key: nnx.merge(graphdef, state)
    if callable(model):
        return model
    raise TypeError(f"model must be an nnx.Module (an aejax.Autoencoder) or a factory key -> module, got {type(model)}")
