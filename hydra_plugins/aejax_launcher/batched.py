"""``hydra/launcher=aejax_batched``: the jobs of a multirun that can share one compiled program
train together as vmapped models (``aejax.batching``); the others run one after another, as the
basic launcher runs them.

Every job still goes through Hydra's ``run_job`` (its ``hydra.sweep.dir/<num>/`` with ``.hydra/``,
its log, the callbacks), with a task function that only labels it for the sweep and decides its
resume; then its group trains, and the job's return value is its final ``val/loss`` as the basic
launcher's would be. Which jobs group together is in ``aejax.batching.grouping`` and docs/sweeps.md.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


def _group_key(config: DictConfig) -> Optional[str]:
    """The job's group (None: it runs alone): its signature, and whether it starts afresh or
    resumes from which checkpoint (a program's models start, and resume, together)."""
    from aejax import rundir
    from aejax.batching.grouping import alone, signature
    from aejax.config import validate

    task = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])  # 4x cheaper than a full copy
    try:
        cfg = validate(task)
    except Exception:  # its own run says what is wrong
        return None
    if (why := alone(cfg)) is not None:
        log.info("job %s runs alone: %s", config.hydra.job.num, why)
        return None
    where = "fresh"
    if cfg.trainer.resume is True:
        run_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        if rundir.run_status(run_dir) == rundir.FINISHED:
            return None
        steps = rundir.checkpoint_steps(run_dir)
        where = f"resume@{max(steps)}" if steps else "fresh"
    elif cfg.trainer.resume is not False:
        return None
    return f"{where}:{signature(cfg)}"


def _prepare(cfg: DictConfig):
    """The task function of a batched job: label it for the sweep and settle its resume."""
    from aejax.batching.group import Job
    from aejax.sweep import label_job, prepare_resume, report_failure

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        label_job(cfg, hydra_cfg)
        prepare_resume(cfg, run_dir)
    except Exception as e:
        report_failure(e, cfg, run_dir, hydra_cfg.job.num)
        return None
    return Job(cfg, run_dir, hydra_cfg.job.num)


def _job_logs(configs: list[DictConfig]) -> list[logging.Handler]:
    """The group's log lines (its training, each job's summary) into every job's log file
    (``<job dir>/<hydra.job.name>.log``, where the basic launcher writes a job's lines)."""
    handlers = []
    for config in configs:
        path = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir) / f"{config.hydra.job.name}.log"
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        logging.getLogger().addHandler(handler)
        handlers.append(handler)
    return handlers


class _Compositions:
    """The job configs Hydra's sweeper composed to check its batch (``validate_batch_is_legal``), kept
    for ``launch``, which would compose each again (each once: a job's config is its own object)."""

    def __init__(self, compose):
        self.compose, self.kept = compose, {}

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        config = self.compose(master_config, sweep_overrides)
        self.kept[(id(master_config), tuple(sweep_overrides))] = config
        return config

    def take(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        config = self.kept.pop((id(master_config), tuple(sweep_overrides)), None)
        return config if config is not None else self.compose(master_config, sweep_overrides)


def _keep_compositions(loader) -> _Compositions:
    """Have ``loader`` (the run's config loader, which the sweeper shares) keep what it composes."""
    compose = loader.load_sweep_config
    if not isinstance(compose, _Compositions):
        compose = _Compositions(compose)
        loader.load_sweep_config = compose
    return compose


class BatchedLauncher(Launcher):
    def __init__(self, max_models: Optional[int] = None, memory_mb: Optional[float] = None) -> None:
        self.max_models, self.memory_mb = max_models, memory_mb
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        self._composed = _keep_compositions(hydra_context.config_loader)

    def _run(self, config: DictConfig, task_function) -> JobReturn:
        ret = run_job(hydra_context=self.hydra_context, task_function=task_function, config=config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from aejax.batching.group import run_group
        from aejax.batching.grouping import group_jobs
        from aejax.startup import setup_compile_cache
        from aejax.sweep import report_preempted

        setup_globals()
        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        logging.getLogger("jax").setLevel(logging.WARNING)
        setup_compile_cache()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        configs = []
        for idx, overrides in enumerate(job_overrides):
            idx += initial_job_idx
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            config = self._composed.take(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = idx
            configs.append(config)
        plan = group_jobs([_group_key(c) for c in configs])
        log.info("aejax_batched is launching %d jobs as %d programs: %s", len(configs), len(plan),
                 "; ".join(",".join(str(initial_job_idx + i) for i in g) for g in plan))
        returns: dict[int, JobReturn] = {}
        budget = int(self.memory_mb * 2**20) if self.memory_mb else None
        for group in plan:
            if len(group) == 1:
                returns[group[0]] = self._run(configs[group[0]], self.task_function)
                continue
            for i in group:
                returns[i] = self._run(configs[i], _prepare)
            jobs = {i: returns[i].return_value for i in group}
            handlers = _job_logs([configs[i] for i in group])
            try:
                run_group([job for job in jobs.values() if job is not None], self.max_models, budget)
            except SystemExit as e:
                report_preempted(e, sweep_dir)
                raise
            finally:
                for handler in handlers:
                    logging.getLogger().removeHandler(handler)
                    handler.close()
            for i, job in jobs.items():
                returns[i].return_value = None if job is None else job.value
        return [returns[i] for i in range(len(configs))]
