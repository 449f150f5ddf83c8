"""One group of a batched sweep, from its jobs' configs to their run directories.

Each job is checked and claimed as ``aejax.experiment.run_all`` does it for one job (validated,
its resume target, its run directory writable and locked); the group loads the dataset once,
assembles every job (its own model, objective, optimizer and schedule), cuts the group into
programs that fit the memory budget and trains each program with ``experiment.train_runs``,
which writes every job's files exactly as its separate run does. A job that fails before
training is recorded failed and left out; a program that fails marks its jobs failed and the
next program goes on.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
from omegaconf import DictConfig

from aejax.assemble import Assembled, assemble, build_optimizer, load_data
from aejax.batching.grouping import optimizer_values, split
from aejax.batching.members import Members, own_state_shapes, per_model
from aejax.batching.objective import CODE_SIZE, Overlay, objective_values
from aejax.config import validate
from aejax.rundir import read_summary
from aejax.runlock import finished_already, own
from aejax.tracking import check_logger
from aejax.training.feed import memory_budget

log = logging.getLogger(__name__)


@dataclass
class Job:
    """A job of the group: its config (labelled for the sweep), run directory and number; after
    training, ``value`` is what the launcher returns for it (its final ``val/loss``, None if not finished)."""
    raw: DictConfig
    run_dir: Path
    num: Any
    value: Optional[float] = None


@dataclass
class _Ready:
    job: Job
    cfg: DictConfig
    resume: bool
    built: Optional[Assembled] = None


def _claim(job: Job, locks: list) -> Optional[_Ready]:
    """Validate and claim a job's run directory (as ``run_all`` does); None if it finished already."""
    from aejax.experiment import _check_writable, resume_target

    cfg = validate(job.raw)
    run_dir, resume, cfg = resume_target(cfg, job.run_dir)  # a resumed job keeps its run's own config
    check_logger(cfg.logger)
    _check_writable(run_dir, "trainer.resume" if resume else "hydra.run.dir")
    locks.append(own(run_dir, resume=resume, overwrite=cfg.trainer.overwrite))
    if resume and finished_already(run_dir):
        print(f"aejax: {run_dir} finished already; nothing to resume", file=sys.stderr, flush=True)
        job.value = read_summary(run_dir).get("val/loss")
        return None
    return _Ready(job, cfg, resume)


def model_bytes(ready: _Ready, example_values: int) -> int:
    """About what one model of the group needs on the device: its state (parameters and optimizer
    state) three times over (with its gradients and updates), and a batch's activations, forward
    and backward, at the input and at every layer (a layer's width: the last axis of its weights;
    a convolution's activations are larger, so keep ``hydra.launcher.memory_mb`` for conv nets)."""
    parts = ready.built.parts
    shapes = own_state_shapes(parts.model, parts.optimizer)
    state = sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(shapes)
                if not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key))
    widths = sum(a.shape[-1] for a in jax.tree.leaves(shapes.params) if a.ndim)
    return 3 * state + 2 * 4 * parts.trainer.batch_size * (example_values + widths)


def _program(chunk: list[_Ready], num_train: int) -> Assembled:
    """The assembled parts of one program: the template's (the largest code), with every member."""
    from aejax.training.epoch import steps_per_epoch

    if len(chunk) == 1:
        return chunk[0].built
    template = max(chunk, key=lambda r: r.cfg.model.latent_dim)
    tparts = template.built.parts
    total = steps_per_epoch(num_train, tparts.trainer.batch_size, tparts.trainer.drop_last) * tparts.trainer.epochs
    # only the values that differ ride per model; the others stay constants of the program, as in each
    # separate run (a traced b1 or eps rounds differently from a constant one, and that adds up)
    # (a padded model's code size among them: a Gaussian head samples its own units only)
    values = [{**optimizer_values(r.cfg), **objective_values(r.cfg), CODE_SIZE: r.cfg.model.latent_dim} for r in chunk]
    varying = sorted(k for k in values[0] if len({v[k] for v in values}) > 1)
    values = [{k: v[k] for k in varying} for v in values]
    opt_cfg = template.cfg.optimizer
    tx = per_model(lambda v: build_optimizer(Overlay(opt_cfg, v), total)[0], values[0])
    members = Members(seeds=[r.cfg.seed for r in chunk], models=[r.built.parts.model for r in chunk],
                      txs=[r.built.parts.optimizer for r in chunk], values=values,
                      schedules=[r.built.parts.schedule for r in chunk],
                      latent_dims=[r.cfg.model.latent_dim for r in chunk],
                      configs=[r.built.parts.config for r in chunk], template=tparts.model, tx=tx)
    # the figures' budget is a share of the training time: the program's n jobs share its time, so each
    # gets 1/n of it (else each would draw as many figures as the whole time allows, n times the host work)
    budget = tparts.snapshot.figure_budget
    snapshot = dataclasses.replace(tparts.snapshot, figure_budget=None if budget is None else budget / len(chunk))
    parts = dataclasses.replace(tparts, optimizer=tx, members=members, seed=chunk[0].cfg.seed, config=None,
                                snapshot=snapshot, trainer=dataclasses.replace(tparts.trainer, num_seeds=len(chunk)))
    return Assembled(parts, template.built.eval)


def programs(ready: list[_Ready], data_bytes: int, example_values: int, max_models: Optional[int],
             budget: Optional[int] = None) -> list[list[_Ready]]:
    """The group cut into programs: fresh and resumed jobs apart, each part as large as the memory
    budget (``budget`` bytes, default the device's, less the training split, on each device the
    models are spread over under ``trainer.parallel=sharded``) and ``max_models`` allow."""
    from aejax.training.parallel import data_mesh

    budget = (budget or memory_budget()) - data_bytes
    mesh = data_mesh(ready[0].cfg.trainer.parallel) if ready else None
    devices = mesh.size if mesh is not None else 1
    out = []
    for resume in (False, True):
        part = [r for r in ready if r.resume == resume]
        if not part:
            continue
        if budget <= 0:  # the split alone does not fit: one job at a time, as the basic launcher runs them
            log.warning("the training split (%.1f MiB) does not fit the memory budget: %d jobs run one by one",
                        data_bytes / 2**20, len(part))
            out += [[r] for r in part]
            continue
        # the largest code needs the most (the others are padded to it): one model's shapes traced, not n
        per_model = model_bytes(max(part, key=lambda r: r.cfg.model.latent_dim), example_values)
        sizes = split(len(part), per_model, budget, max_models, devices)
        if len(sizes) > 1:
            log.warning("a group of %d jobs is cut into %d programs of %s models (about %.1f MiB per model, "
                        "%.1f MiB budget%s%s)", len(part), len(sizes), "/".join(map(str, sizes)), per_model / 2**20,
                        budget / 2**20, f" on each of {devices} devices" if devices > 1 else "",
                        f", hydra.launcher.max_models={max_models}" if max_models else "")
        start = 0
        for size in sizes:
            out.append(part[start:start + size])
            start += size
    return out


def run_group(jobs: list[Job], max_models: Optional[int] = None, budget: Optional[int] = None) -> None:
    """Train the jobs of one group (equal signatures); set each job's ``value``. Failures are
    recorded in the jobs' run directories (the sweep goes on); a preemption stops the sweep."""
    from aejax.analysis.evaluate import normal_classes_only
    from aejax.experiment import train_runs
    from aejax.sweep import report_failure

    locks: list = []
    try:
        ready = []
        for job in jobs:
            try:
                if (r := _claim(job, locks)) is not None:
                    ready.append(r)
            except Exception as e:
                report_failure(e, job.raw, job.run_dir, job.num)
        if not ready:
            return
        try:
            data = load_data(ready[0].cfg.dataset)
            if ready[0].cfg.eval.anomaly is not None:
                data = normal_classes_only(data, ready[0].cfg.eval.anomaly)
        except Exception as e:
            for r in ready:
                report_failure(e, r.job.raw, r.job.run_dir, r.job.num)
            return
        built, traced = [], set()
        for r in ready:
            try:  # one job of each code size is checked on an abstract batch; the others change no shape
                r.built = assemble(r.cfg, data, trace=r.cfg.model.latent_dim not in traced)
                traced.add(r.cfg.model.latent_dim)
                built.append(r)
            except Exception as e:
                report_failure(e, r.job.raw, r.job.run_dir, r.job.num)
        for chunk in programs(built, data.train_bytes, int(np.prod(data.example_shape)), max_models, budget):
            nums = ", ".join(f"#{r.job.num}" for r in chunk)
            print(f"aejax: jobs {nums} train as one program of {len(chunk)} models", file=sys.stderr, flush=True)
            try:
                results = train_runs(_program(chunk, data.num_train), data, [(r.cfg, r.job.run_dir) for r in chunk],
                                     chunk[0].resume, True, chunk[0].job.run_dir)
            except Exception as e:
                for r in chunk:
                    report_failure(e, r.job.raw, r.job.run_dir, r.job.num)
                continue
            for r, res in zip(chunk, results):
                value = res.summary.get("val/loss")
                r.job.value = float(value) if res.status == "finished" and value is not None and math.isfinite(value) else None
    finally:
        for lock in locks:
            lock.release()
