"""Hydra's joblib launcher, fault tolerant: a job whose worker process dies (the out-of-memory
killer, a segfault, ``kill -9``) is marked ``failed`` in its run directory and the other jobs
run on. Selected by ``hydra/launcher=joblib`` (aejax's ``conf/hydra/launcher/joblib.yaml``).

Hydra's launcher runs every job in one pool of loky workers: one worker's death breaks the pool,
and the whole sweep stops with ``TerminatedWorkerError``, healthy jobs killed mid-run and left
``running``. Here each job gets a pool of its own (a fresh process per job, at most ``n_jobs``
at once), so a death reaches only its job. Hydra places launchers in ``hydra_plugins``.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import open_dict

log = logging.getLogger(__name__)


def _workers(n_jobs) -> int:
    cpus = os.cpu_count() or 1
    n = int(n_jobs) if n_jobs is not None else 1
    return max(1, n if n > 0 else cpus + 1 + n)  # joblib's convention: -1 all CPUs, -2 all but one


class FaultTolerantJoblibLauncher(JoblibLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.hydra_joblib_launcher._core import execute_job  # imports joblib: only when launching
        from joblib.externals.loky import ProcessPoolExecutor

        setup_globals()
        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        n = _workers(self.joblib.get("n_jobs", -1))
        log.info(f"Joblib (one process per job, fault tolerant, n_jobs={n}) is launching {len(job_overrides)} jobs")
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#{} : {}".format(initial_job_idx + idx, " ".join(filter_overrides(overrides))))
        state = Singleton.get_state()
        pending, running, results = list(enumerate(job_overrides)), {}, {}
        while pending or running:
            while pending and len(running) < n:
                idx, overrides = pending.pop(0)
                pool = ProcessPoolExecutor(max_workers=1)
                future = pool.submit(execute_job, initial_job_idx + idx, overrides, self.hydra_context, self.config,
                                     self.task_function, state)
                running[future] = (idx, overrides, pool)
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                idx, overrides, pool = running.pop(future)
                try:
                    results[idx] = future.result()
                except Exception as e:  # the worker died (TerminatedWorkerError) or could not start
                    results[idx] = self._died(initial_job_idx + idx, overrides, e)
                pool.shutdown(wait=False)
        return [results[i] for i in range(len(job_overrides))]

    def _died(self, num: int, overrides: Sequence[str], error: BaseException) -> JobReturn:
        """Record the job ``failed`` in its run directory (a finished one is left as it is)."""
        from aejax import rundir

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.num = num
        run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        reason = str(error).strip().splitlines()
        detail = next((line for line in reason if "exit codes" in line), reason[0] if reason else type(error).__name__)
        message = f"the job's worker process died ({detail.strip()}; the out-of-memory killer?)"
        if rundir.run_status(run_dir) != rundir.FINISHED:
            run_dir.mkdir(parents=True, exist_ok=True)
            summary = rundir.read_summary(run_dir)
            summary.update(status=rundir.FAILED, error=f"{type(error).__name__}: {message}"[:500])
            rundir.write_summary(run_dir, summary)
        log.error(f"job {num} failed: {message} ({run_dir}); the sweep goes on")
        ret = JobReturn(overrides=list(overrides), cfg=None, hydra_cfg=None, working_dir=str(run_dir),
                        task_name=str(cfg.hydra.job.name), status=JobStatus.COMPLETED)
        ret.return_value = None
        return ret
