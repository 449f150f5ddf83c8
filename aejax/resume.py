"""``trainer.resume``: which run a job continues, and with which config.

A run is continued with the config it was trained with: its ``config.yaml`` (or, when that is
lost, the copy in its checkpoints). ``aejax-train trainer.resume=RUN_DIR`` alone therefore
continues that run as it was started; settings that do not change the numbers (``IGNORED_ON_RESUME``:
the logger's mode, the progress bar, how processes join) are taken from the command. A value the
command sets that differs from the run's is refused, naming it: it would not continue that run
but start another one. Which values the command sets comes from its overrides as typed (Hydra's
task overrides, or ``aejax.train``'s list); without them (a composed config handed over as a whole)
every differing value is refused.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from aejax.errors import ConfigError
from aejax.rundir import CHECKPOINTS, SEED_PREFIX, flatten, read_config, seed_dir
from aejax.runlock import finished_already
from aejax.training.checkpoint import saved_config

log = logging.getLogger(__name__)

IGNORED_ON_RESUME = ("trainer.resume", "trainer.overwrite", "trainer.progress", "logger.mode", "logger.init_timeout",
                     "distributed.mode", "distributed.coordinator", "distributed.num_processes",
                     "distributed.process_id", "distributed.timeout")
_ABSENT = object()
EVERYTHING = ""  # an override that may set any key (a `@package _global_` preset such as +experiment=...)


def override_keys(overrides: Sequence[str], config: DictConfig) -> set[str]:
    """The dotted keys (or key prefixes: ``variant`` for ``variant=vae``) that ``overrides`` set;
    ``EVERYTHING`` for one that can set any key (``+experiment=...``, a ``@_global_`` package)."""
    keys = set()
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key == "hydra" or key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        name, _, package = key.partition("@")
        dotted = (package or name).replace("/", ".")
        absent = OmegaConf.select(config, dotted, default=_ABSENT) is _ABSENT
        keys.add(EVERYTHING if package == "_global_" or absent else dotted)
    return keys


def _set_by(key: str, user_keys: Optional[set[str]]) -> bool:
    if user_keys is None or EVERYTHING in user_keys:
        return True
    return any(key == k or key.startswith(k + ".") for k in user_keys)


def _saved(target: Path, cfg: DictConfig) -> Optional[DictConfig]:
    """The run's config.yaml, or the copy in its (or its seeds') latest checkpoint."""
    saved = read_config(target)
    if saved is not None:
        return saved
    runs = [target, *sorted(target.glob(f"{SEED_PREFIX}*"))]
    copy = next(filter(None, (saved_config(run) for run in runs)), None)
    if copy is None:
        return None
    log.warning("%s has no readable config.yaml: using the copy in its checkpoint of step %d", target, copy[0])
    return OmegaConf.create(copy[1])


def _differ(a: DictConfig, b: DictConfig) -> list[str]:
    keys = set(flatten(OmegaConf.to_container(a))) | set(flatten(OmegaConf.to_container(b)))
    return sorted(k for k in keys if k not in IGNORED_ON_RESUME and OmegaConf.select(a, k) != OmegaConf.select(b, k))


def _shown(cfg: DictConfig, saved: DictConfig, keys: list[str]) -> str:
    return ", ".join(f"{k}={OmegaConf.select(cfg, k)!r} (was {OmegaConf.select(saved, k)!r})" for k in keys[:5])


def resumed_config(cfg: DictConfig, saved: DictConfig, target: Path,
                   overrides: Optional[Sequence[str]]) -> tuple[DictConfig, list[str]]:
    """``(config to continue with, keys taken from the run)``: the run's ``saved`` config with the
    command's values of ``IGNORED_ON_RESUME``. A differing value the command set is refused."""
    differ = _differ(cfg, saved)
    user_keys = None if overrides is None else override_keys(overrides, cfg)
    refused = [k for k in differ if _set_by(k, user_keys)]
    if refused:
        raise ConfigError("trainer.resume", f"{target} was trained with another config: {_shown(cfg, saved, refused)}; "
                                            "resume with the settings it was started with (trainer.resume=RUN_DIR "
                                            "alone continues it with them)")
    if not differ:
        return cfg, []
    out = OmegaConf.create(OmegaConf.to_container(saved))
    with open_dict(out):
        for key in IGNORED_ON_RESUME:
            if OmegaConf.select(cfg, key, default=None) is not None or OmegaConf.select(out, key, default=None) is not None:
                OmegaConf.update(out, key, OmegaConf.select(cfg, key, default=None), merge=False)
    from aejax.config import validate

    return validate(out), differ


def resume_target(cfg: DictConfig, run_dir: Path,
                  overrides: Optional[Sequence[str]] = None) -> tuple[Path, bool, DictConfig]:
    """``(run directory, resume?, config)`` for ``trainer.resume`` (false, true: this run dir, or a
    run dir). The config is ``cfg`` for a fresh run, else the one the run was trained with
    (``resumed_config``)."""
    setting = cfg.trainer.resume
    if setting is False:
        return run_dir, False, cfg
    target = run_dir if setting is True else Path(str(setting)).expanduser()
    saved = _saved(target, cfg)
    base = saved if saved is not None else cfg
    n, seed = int(OmegaConf.select(base, "trainer.num_seeds", default=1)), int(OmegaConf.select(base, "seed", default=0))
    runs = [target] if n == 1 else [seed_dir(target, seed + i) for i in range(n)]
    if not finished_already(target) and not any(p.name.isdigit() for run in runs for p in (run / CHECKPOINTS).glob("*")):
        hint = ("trainer.resume=true continues the run in hydra.run.dir (set it to that run's directory)"
                if setting is True else "pass the directory of a run trained with checkpoints (trainer.checkpoint_every > 0)")
        where = target / CHECKPOINTS if n == 1 else target / f"{SEED_PREFIX}*" / CHECKPOINTS
        raise ConfigError("trainer.resume", f"no checkpoint to resume from in {where}: {hint}")
    if saved is None:
        raise ConfigError("trainer.resume", f"{target} has no readable config.yaml, and its checkpoints hold no "
                                            "copy of the config to compare this config with")
    config, adopted = resumed_config(cfg, saved, target, overrides)
    if adopted:
        log.info("resuming %s with its own config (%d values not on the command line: %s)", target, len(adopted),
                 ", ".join(adopted[:5]) + (", ..." if len(adopted) > 5 else ""))
    return target, True, config
