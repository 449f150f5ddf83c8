"""Multiruns: one W&B group per sweep, job names and tags that say what varies, failed jobs
recorded in their run directories, and a non-zero exit status when any job failed.

A sweep is resumable: the same command again with ``trainer.resume=true`` (and the same
``hydra.sweep.dir``) leaves its finished jobs untouched, resumes the preempted and failed ones
from their checkpoints and runs afresh those that have none (never started, or failed before their
first checkpoint). A preempted or unfinished sweep prints that command (``resume_command``).

Two halves, because a launcher may run jobs in other processes (joblib) or on other hosts
(submitit): ``SweepCallback`` runs in the launching process at the start and end of the multirun
(registered in ``conf/config.yaml`` under ``hydra.callbacks``), the job side is called by the CLI in
each job. They share only files: ``sweep.json`` in the sweep directory, and each job's
``summary.json`` (both read and written through ``aejax.rundir``).
"""
from __future__ import annotations

import math
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from aejax import rundir
from aejax.errors import ConfigError, DataError, RunDirTaken, RunError
from aejax.rundir import FINISHED, SEED_PREFIX, SWEEP_FILE, sweep_group  # sweep_group: also imported from here
from aejax.runlock import holds_run

# What the default run name (logger.name) already says; other varied keys are appended to it.
NAMED_KEYS = {"variant", "variant.name", "model.latent_dim", "seed"}
DEFAULT_NAME = "${variant.name}-z${model.latent_dim}-s${seed}"
MAX_TAG = 64  # W&B's limit on a tag's length


def _key(key: str) -> str:
    """An override's key without its ``+``/``++``/``~`` prefix."""
    return key.lstrip("+~")


def _short(key: str) -> str:
    """``optimizer.lr`` -> ``lr``, ``experiment/intro_part@_global_`` -> ``intro_part``."""
    return key.split("@")[0].replace("/", ".").split(".")[-1]


def varied_keys(config: DictConfig) -> list[str]:
    """The keys a multirun sweeps: the sweeper's ``params`` (read by the basic and the Optuna
    sweeper) and the command line's overrides, the latter winning for the same key as in Hydra's
    sweepers; a key is varied if its last value is a sweep (``a=1,2``, ``range(..)``, ``interval(..)``)."""
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    items = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    final = {}
    for override in OverridesParser.create().parse_overrides(items):
        final[_key(override.get_key_element())] = override.is_sweep_override()
    return [key for key, swept in final.items() if swept]


def label_job(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """Give a multirun job its W&B group, name and tags (unless the user set them)."""
    varied = rundir.read_json(Path(hydra_cfg.sweep.dir) / SWEEP_FILE).get("varied", [])
    parser = OverridesParser.create()
    values = {_key(o.get_key_element()): o.get_value_element_as_str()
              for o in parser.parse_overrides(list(hydra_cfg.overrides.task))}
    swept = [(key, values[key]) for key in varied if key in values]
    logger = cfg.logger
    with open_dict(cfg):
        if logger.group is None:
            logger.group = sweep_group(hydra_cfg.sweep.dir)
        if OmegaConf.to_container(logger, resolve=False).get("name") == DEFAULT_NAME:
            extra = [f"{_short(k)}={v}" for k, v in swept if k not in NAMED_KEYS]
            logger.name = "-".join([DEFAULT_NAME, *extra])  # still resolved per run (a seed batch's seeds)
        logger.tags = [*logger.tags, *(f"{k}={v}"[:MAX_TAG] for k, v in swept)]


def resume_command(sweep_dir: Path) -> str:
    """The command that continues the sweep in ``sweep_dir``: its overrides, its directory, resume."""
    overrides = rundir.read_json(Path(sweep_dir) / SWEEP_FILE).get("overrides", [])
    keep = [o for o in overrides if _key(o.split("=", 1)[0]) not in ("trainer.resume", "hydra.sweep.dir")]
    return shlex.join(["aejax-train", "--multirun", *keep, f"hydra.sweep.dir={sweep_dir}", "trainer.resume=true"])


def unfinished_jobs(sweep_dir: Path) -> list[tuple[Path, str]]:
    """``(job directory, status)`` of every job of the sweep that has not finished."""
    jobs = rundir.find_runs(sweep_dir, jobs=True)
    return [(job, status) for job in jobs if (status := rundir.run_status(job)) != FINISHED]


def _has_checkpoint(run_dir: Path) -> bool:
    return any(rundir.checkpoint_steps(d) for d in [run_dir, *run_dir.glob(f"{SEED_PREFIX}*")])


def prepare_resume(cfg: DictConfig, run_dir: Path) -> None:
    """A job of a resumed sweep (``trainer.resume=true``) with nothing to resume (never started, or
    failed before its first checkpoint) runs afresh, replacing what a failed attempt left; the others
    resume (a finished one: nothing to do)."""
    if cfg.trainer.resume is not True or rundir.run_status(run_dir) == FINISHED or _has_checkpoint(run_dir):
        return
    with open_dict(cfg):
        cfg.trainer.resume = False
        cfg.trainer.overwrite = holds_run(run_dir)


def record_failure(run_dir: Path, cfg: DictConfig, error: BaseException) -> None:
    """Mark the job failed in its ``summary.json`` (with the error), writing a ``config.yaml``
    if the job failed before its run directory had one (an invalid combination, missing data).
    A finished run is left as it is (a resume of it that failed changes nothing)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if rundir.run_status(run_dir) == FINISHED:
        return
    summary = rundir.read_summary(run_dir)
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    summary.update(status=rundir.FAILED, error=f"{type(error).__name__}: {message}"[:500])
    rundir.write_summary(run_dir, summary)
    if not (run_dir / rundir.CONFIG).exists():
        try:
            rundir.write_config(run_dir, cfg, resolve=True)
        except Exception:  # the failure may be an interpolation that does not resolve
            rundir.write_config(run_dir, cfg)


def report_preempted(exit: SystemExit, sweep_dir: Path) -> None:
    """For a job's exit with ``EXIT_PREEMPTED`` (the whole sweep stops): say what is left and how to go on."""
    from aejax.training.preemption import EXIT_PREEMPTED

    if exit.code == EXIT_PREEMPTED:
        lines = [f"aejax: the sweep in {sweep_dir} was preempted; unfinished jobs:"]
        lines += [f"  {job.relative_to(sweep_dir)}: {status}" for job, status in unfinished_jobs(sweep_dir)]
        lines += ["  (and any not started yet)", f"continue it with: {resume_command(sweep_dir)}"]
        print("\n".join(lines), file=sys.stderr, flush=True)


def report_failure(error: Exception, cfg: DictConfig, run_dir: Path, num: Any) -> None:
    """A job failed with ``error``: recorded in its run directory, said on stderr; the sweep goes on."""
    if not isinstance(error, RunDirTaken):  # another run's directory is left as it is
        record_failure(run_dir, cfg, error)
    if isinstance(error, ConfigError):
        print(f"aejax: invalid config: {error}", file=sys.stderr)
    elif isinstance(error, DataError):
        print(f"aejax: data unavailable: {error}", file=sys.stderr)
    elif isinstance(error, RunError):
        print(f"aejax: {error}", file=sys.stderr)
    else:
        traceback.print_exception(error)
    print(f"aejax: job {num} failed ({run_dir}); the sweep goes on", file=sys.stderr, flush=True)


def run_job(cfg: DictConfig, hydra_cfg: DictConfig, run_dir: Path) -> Optional[float]:
    """One multirun job: any exception is recorded in the run directory and the sweep goes on.

    Returns the final ``val/loss`` for sweepers, or None for a failed or diverged job (Optuna then
    marks the trial failed; a NaN would stop its study).
    """
    from aejax.experiment import run

    try:
        label_job(cfg, hydra_cfg)
        prepare_resume(cfg, run_dir)
        value = run(cfg, run_dir)
    except SystemExit as e:
        report_preempted(e, Path(hydra_cfg.sweep.dir))
        raise
    except Exception as e:
        report_failure(e, cfg, run_dir, hydra_cfg.job.num)
        return None
    status = rundir.run_status(run_dir)
    if status != FINISHED or value is None or not math.isfinite(value):
        return None
    return float(value)


class SweepCallback(Callback):
    """Registered in conf/config.yaml: notes what a multirun varies for its jobs, and at the end
    exits with status 1 if any job did not finish (failed, diverged, or never wrote a summary)."""

    def __init__(self) -> None:
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1.0  # coarse file-system clocks
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        launcher = [o for o in OmegaConf.select(config, "hydra.overrides.hydra", default=None) or () if o.split("=", 1)[0] in ("hydra/launcher", "hydra.launcher")
                    or o.startswith("hydra.launcher.")]  # a resume runs the sweep with the same launcher
        rundir.write_json_atomic(sweep_dir / SWEEP_FILE, {"varied": varied_keys(config), "group": sweep_group(sweep_dir),
                                                   "overrides": [*launcher, *config.hydra.overrides.task]})

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        resumed = OmegaConf.select(config, "trainer.resume") is True  # the jobs already there are this sweep's
        jobs = rundir.find_runs(sweep_dir, jobs=True, since=0.0 if resumed else self.started)  # a seed batch: one job
        failed = [(job, status) for job in jobs if (status := rundir.run_status(job)) != FINISHED]
        if not failed:
            print(f"aejax: {len(jobs)} jobs finished in {sweep_dir}; compare them with `aejax-report {sweep_dir}`",
                  file=sys.stderr, flush=True)
            return
        lines = [f"aejax: {len(failed)} of {len(jobs)} jobs did not finish in {sweep_dir}:"]
        for job, status in failed:
            summary = rundir.read_summary(job)
            error = summary.get("error") or (f"NaN/Inf loss at step {summary['diverged_at_step']}"
                                             if "diverged_at_step" in summary else "")
            lines.append(f"  {job.relative_to(sweep_dir)}: {status}" + (f" ({error})" if error else ""))
        lines.append(f"the others are complete; compare them with `aejax-report {sweep_dir}`")
        lines.append(f"continue the unfinished ones with: {resume_command(sweep_dir)}")
        print("\n".join(lines), file=sys.stderr, flush=True)
        sys.exit(1)
