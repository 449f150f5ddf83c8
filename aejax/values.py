"""The numbers of a config: every numeric field finite and in range, checked with its key named.

``check_numbers`` runs inside ``aejax.config.validate``, before any data is read, anything
compiled or any file written: a NaN or an infinity anywhere in the config (a learning rate, a term's
weight, a noise level, a timeout, the keys of a ``_target_``), a seed JAX and numpy cannot take,
a dataset's split fraction outside (0, 1) or a folder that is a file is refused here (exit 2)
instead of compiling into a run that diverges or crashes after training. The checks of each
part's own settings live with the part (``aejax.training.optim.check``, ``aejax.variants``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aejax.errors import ConfigError
from aejax.rundir import flatten

SEED_MAX = 2**31 - 1  # JAX takes a seed batch's seeds as int32 (numpy takes any seed >= 0)


def check_finite(cfg: DictConfig) -> None:
    """Every float of the config is finite (NaN, inf and -inf are refused, naming the key)."""
    for key, value in flatten(OmegaConf.to_container(cfg, resolve=True)).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number, got {value}")
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, float) and not math.isfinite(item):
                    raise ConfigError(f"{key}[{i}]", f"must be a finite number, got {item}")


def check_seed(cfg: DictConfig) -> None:
    last = cfg.seed + cfg.trainer.num_seeds - 1
    if not 0 <= cfg.seed <= SEED_MAX or last > SEED_MAX:
        span = f" (with trainer.num_seeds={cfg.trainer.num_seeds}, up to {last})" if last != cfg.seed else ""
        raise ConfigError("seed", f"must be in [0, {SEED_MAX}]{span}, got {cfg.seed}")


def check_dataset(cfg: DictConfig) -> None:
    """The keys most datasets share: a split fraction in (0, 1), seeds >= 0, folders that are not files."""
    for key, value in cfg.dataset.items():
        name = f"dataset.{key}"
        if key == "test_size" and isinstance(value, (int, float)) and not 0 < value < 1:
            raise ConfigError(name, f"must be in (0, 1) (the fraction of examples held out), got {value}")
        if key.endswith("seed") and isinstance(value, int) and not 0 <= value <= SEED_MAX:
            raise ConfigError(name, f"must be in [0, {SEED_MAX}], got {value}")
        if key.endswith("_dir") and isinstance(value, str) and Path(value).expanduser().exists() \
                and not Path(value).expanduser().is_dir():
            raise ConfigError(name, f"{value} is a file, not a folder: point {name} at a directory")


def check_snapshot(cfg: DictConfig) -> None:
    budget = cfg.snapshot.figure_budget
    if budget is not None and budget < 0:
        raise ConfigError("snapshot.figure_budget", f"must be >= 0 (a fraction of the training time) or null, got {budget}")


def check_numbers(cfg: DictConfig) -> None:
    """The checks above, in the order a user reads the config."""
    check_finite(cfg)
    check_seed(cfg)
    check_dataset(cfg)
    check_snapshot(cfg)
    if cfg.distributed.timeout <= 0:
        raise ConfigError("distributed.timeout", f"must be > 0 (seconds), got {cfg.distributed.timeout}")


def in_range(key: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
             what: str = "") -> None:
    """Refuse ``value`` outside ``[low, high]`` (``(`` / ``)`` with ``low_open`` / ``high_open``)."""
    if value is None:
        return
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(key, f"must be in {span}{what}, got {value}")
