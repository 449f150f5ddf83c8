"""One job: validate the config (once), load the data, assemble the parts, train, track, evaluate, summarise."""
from __future__ import annotations

import errno
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from flax import nnx
from omegaconf import DictConfig, OmegaConf, open_dict

from aejax import distributed
from aejax.analysis.code_figures import write_code_figure
from aejax.analysis.evaluate import evaluate, needed_splits, normal_classes_only
from aejax.assemble import Assembled, assemble, load_data
from aejax.config import validate
from aejax.data import Dataset
from aejax.errors import ConfigError, RunError
from aejax.resume import IGNORED_ON_RESUME, resume_target  # noqa: F401  (also imported from here)
from aejax.rundir import FINISHED, BatchDir, read_metrics, read_summary, seed_dir, sweep_group
from aejax.runlock import finished_already, own
from aejax.tracking import PartsLine, Trackers, check_logger, open_trackers
from aejax.training.checkpoint import saved_config
from aejax.training.loop import fit_seeds
from aejax.training.parallel import first_replica
from aejax.training.preemption import EXIT_PREEMPTED, Preempted
from aejax.training.state import variables

log = logging.getLogger(__name__)


def _check_writable(run_dir: Path, key: str) -> None:
    """Refuse a run directory that cannot be written (a read-only mount, no permission) up front."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".aejax-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(key, f"cannot write to the run directory {run_dir} ({e.strerror or e}); "
                               "pick a writable one with hydra.run.dir=...") from None


def seed_config(cfg: DictConfig, index: int) -> DictConfig:
    """The config of model ``index`` of a seed batch: the config of the equivalent separate run
    (``seed + index``, ``trainer.num_seeds=1``)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg))
    OmegaConf.set_struct(out, OmegaConf.is_struct(cfg))
    with open_dict(out):
        out.seed = cfg.seed + index
        out.trainer.num_seeds = 1
    return out


def seed_runs(raw: DictConfig, cfg: DictConfig, run_dir: Path) -> list[tuple[DictConfig, Path]]:
    """``(config, run directory)`` of each run: the run itself, or for ``trainer.num_seeds=n`` the
    ``n`` runs of the seed batch, ``RUN_DIR/seed_<s>``, each with the config of the equivalent
    separate run (its seed, its own W&B name) in the batch's W&B group. ``cfg`` is validated once;
    only the logger's values are resolved again per seed (a name like ``...-s${seed}``)."""
    n = cfg.trainer.num_seeds
    if n == 1:
        return [(cfg, run_dir)]
    out = []
    for i in range(n):
        member, member_raw = seed_config(cfg, i), OmegaConf.create(OmegaConf.to_container(raw))
        with open_dict(member_raw):
            member_raw.seed = member.seed
        with open_dict(member):
            member.logger = OmegaConf.merge(member.logger, OmegaConf.to_container(member_raw.logger, resolve=True))
            if member.logger.group is None:  # outside a multirun: the batch is the group
                member.logger.group = sweep_group(run_dir)
            member.logger.tags = [*member.logger.tags, f"seed_batch={n}"]
        out.append((member, seed_dir(run_dir, member.seed)))
    return out


@dataclass
class Result:
    """One trained run: ``summary`` (what summary.json holds), ``run_dir``, ``model`` (the trained
    ``nnx.Module``; None for a run that diverged) and ``history`` (the rows of metrics.jsonl)."""
    summary: dict[str, Any]
    run_dir: Path
    model: Optional[nnx.Module]
    status: str = "finished"

    @property
    def history(self) -> list[dict[str, Any]]:
        return read_metrics(self.run_dir)


def run(cfg: DictConfig, run_dir: Path, overrides: Optional[Sequence[str]] = None) -> float:
    """Train the configured autoencoder(s); return the final validation loss (for sweepers; the
    mean over a seed batch; +inf when training diverged). A run stopped by SIGTERM/SIGINT saves a
    checkpoint and exits with ``EXIT_PREEMPTED``. ``overrides``: the command line's, as typed (what a
    resume may take from the run it continues: ``aejax.resume``)."""
    results = run_all(cfg, run_dir, overrides=overrides)
    losses = [r.summary["val/loss"] if r.status == "finished" else math.inf for r in results]
    return float(np.mean(losses)) if all(math.isfinite(v) for v in losses) else math.inf


def run_all(raw: DictConfig, run_dir: Path, model: Optional[Callable[[jax.Array], nnx.Module]] = None,
            data: Optional[Dataset] = None, overrides: Optional[Sequence[str]] = None) -> list[Result]:
    """Train what ``raw`` configures (with ``model``: a factory ``key -> module`` instead of its
    encoder and decoder; with ``data``: this dataset instead of its dataset); one result per run.
    A resume continues with the run's own config (``aejax.resume``; ``overrides``: the command's)."""
    cfg = validate(raw)  # once per job
    distributed.initialize(cfg.distributed)  # before JAX uses a device
    run_dir, resume, resumed = resume_target(cfg, distributed.shared_run_dir(Path(run_dir)), overrides)
    if resumed is not cfg:  # the run's own config, not the command's defaults
        raw = cfg = resumed
    writer = distributed.is_writer()  # process 0 writes the run directory (with one process: this one)
    if writer:
        check_logger(cfg.logger)
        _check_writable(run_dir, "trainer.resume" if resume else "hydra.run.dir")
    lock = own(run_dir, resume=resume, overwrite=cfg.trainer.overwrite) if writer else None
    try:
        if resume and finished_already(run_dir):  # nothing to do: its files stay as they are
            print(f"aejax: {run_dir} finished already; nothing to resume", file=sys.stderr, flush=True)
            return [Result({**read_summary(d), "run_dir": str(d)}, d, None, FINISHED)
                    for _, d in seed_runs(raw, cfg, run_dir)]
        return _run_owned(raw, cfg, run_dir, resume, writer, model, data)
    finally:
        if lock is not None:
            lock.release()


def _run_owned(raw: DictConfig, cfg: DictConfig, run_dir: Path, resume: bool, writer: bool,
               model: Optional[Callable[[jax.Array], nnx.Module]], data: Optional[Dataset]) -> list[Result]:
    """``run_all`` once the run directory is this process's."""
    data = data if data is not None else load_data(cfg.dataset)
    if cfg.eval.anomaly is not None:
        data = normal_classes_only(data, cfg.eval.anomaly)
    built = assemble(cfg, data, model)
    runs = seed_runs(raw, cfg, run_dir)
    batch = BatchDir(run_dir, cfg, [d for _, d in runs]) if len(runs) > 1 else None  # one process: the writer
    return train_runs(built, data, runs, resume, writer, run_dir, batch)


def train_runs(built: Assembled, data: Dataset, runs: list[tuple[DictConfig, Path]], resume: bool, writer: bool,
               run_dir: Path, batch: Optional[BatchDir] = None) -> list[Result]:
    """Train ``runs`` (``(config, run directory)`` of each model ``built.parts`` trains: one run, a seed
    batch's, or a batched sweep's group), evaluate and summarise each; ``run_dir`` is what a preempted
    run is resumed from."""
    trackers: list = []
    statuses = ["failed"] * len(runs)
    try:
        for run_cfg, dir_ in runs:
            trackers.append(open_trackers(run_cfg.logger, dir_, OmegaConf.to_container(run_cfg), resume=resume,
                                          concurrent=len(runs) > 1) if writer else Trackers([]))
        results = fit_seeds(built.parts, data, trackers, [d for _, d in runs], resume=resume)
        pca: dict[int, float] = {}  # the PCA baseline of each code size, the same for every model
        codes = _group_codes(built, data, results) if built.eval.enabled and writer else {}
        for i, ((run_cfg, dir_), tracker, result) in enumerate(zip(runs, trackers, results)):
            if result.status == "diverged":
                tracker.summary({**result.summary, "run_dir": str(dir_)})
                statuses[i] = "diverged"
                print(f"aejax: training diverged (a NaN/Inf loss at step {result.summary['diverged_at_step']}); "
                      f"last good checkpoint: step {result.summary['last_checkpoint_step']}; run dir: {dir_}",
                      file=sys.stderr, flush=True)
                continue
            if built.eval.enabled and writer:  # on one device, with no other process involved
                key = _eval_key(run_cfg.seed)
                line, start = PartsLine("evaluating", built.parts.trainer.progress), time.perf_counter()
                result.summary.update(evaluate(built.eval, data, result.graphdef, first_replica(variables(result.state)),
                                               key, pca_mse=pca.get(run_cfg.model.latent_dim),
                                               recon=getattr(built.parts.objective, "recon", "mse"),
                                               batch_size=built.parts.trainer.eval_batch_size, report=line,
                                               codes=codes.get(i)))
                result.summary["eval_time_s"] = round(time.perf_counter() - start, 3)
                line.close(result.summary["eval_time_s"])
                pca[run_cfg.model.latent_dim] = result.summary["test/pca_mse"]  # the same baseline for every seed
                write_code_figure(dir_, result.graphdef, first_replica(variables(result.state)), data.x_test,
                                  data.ground_truth, built.parts.trainer.eval_batch_size)
            tracker.summary({**result.summary, "run_dir": str(dir_)})
            statuses[i] = "finished"
    except Preempted as e:
        statuses = ["preempted"] * len(runs)
        for tracker in trackers:
            tracker.summary({"preempted_at_step": e.step})
        print(f"aejax: {e}; continue with `aejax-train ... trainer.resume={run_dir}`", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_PREEMPTED) from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the metrics, a snapshot, the summary: exit 4, not 1
            raise RunError(f"the disk is full ({e}); the last checkpoint is intact: free space and resume "
                           f"with trainer.resume={run_dir}") from e
        raise
    finally:
        for tracker, status in zip(trackers, statuses):
            try:
                tracker.finish(status)
            except OSError as e:  # a full disk: the error in flight says more
                log.error("could not record status %s in %s (%s)", status, run_dir, e)
        if batch is not None:
            batch.finish(statuses)
    for (run_cfg, dir_), tracker, result, status in zip(runs, trackers, results, statuses):
        if status == "finished" and writer:
            _print_summary(run_cfg, data, result.summary, dir_, tracker)
    if batch is not None:
        print(batch.describe(), flush=True)
    return [Result({**r.summary, "status": st, "run_dir": str(d)}, d, r.model if st == "finished" else None, st)
            for r, (_, d), st in zip(results, runs, statuses)]


def _group_codes(built: Assembled, data: Dataset, results: list) -> dict[int, list[dict]]:
    """A batched group's evaluation codes, each code size's models in one program (``Members.codes``);
    empty for one run or a seed batch (``evaluate`` computes its own)."""
    members = built.parts.members
    if members is None or not isinstance(data.x_train, np.ndarray):
        return {}
    params = {i: variables(r.state) for i, r in enumerate(results) if r.status != "diverged"}
    return members.codes(params, *needed_splits(built.eval, data, data.x_train), built.parts.trainer.eval_batch_size)


@jax.jit
def _eval_key(seed: int) -> jax.Array:
    """The evaluation's key (the VAE bounds' samples): one small compiled program, not three eager ones."""
    return jax.random.fold_in(jax.random.key(seed), 1)


def _print_summary(cfg: DictConfig, data: Dataset, s: dict, run_dir: Path, trackers) -> None:
    lines = [
        f"aejax: {cfg.encoder.name}/{cfg.decoder.name} {cfg.variant.name} autoencoder, z={cfg.model.latent_dim}, "
        f"on {data.name} ({data.num_train} train / {len(data.x_test)} test), seed {cfg.seed}",
        f"  {s['epochs']} epochs, {s['steps']} steps in {s['train_time_s']:.2f} s "
        f"({s['examples_per_s']:,.0f} examples/s) after {s['compile_time_s']:.2f} s compiling; {s['num_params']:,} parameters",
        f"  train/loss {s['train/loss']:.5f}   val/loss {s['val/loss']:.5f}   "
        f"(best {s['val/loss_best']:.5f} at epoch {s['val/loss_best_epoch']}; {cfg.variant.recon}, mean per value)",
    ]
    if "test/mse" in s:
        lines += _evaluation_lines(cfg, s)
    lines.append(f"  run dir: {run_dir}")
    for sink in trackers.sinks:
        if hasattr(sink, "location"):
            hint = f" (upload with `wandb sync {sink.location}`)" if sink.mode == "offline" else ""
            lines.append(f"  W&B ({sink.mode}): {sink.location}{hint}")
    print("\n".join(lines), flush=True)


def _evaluation_lines(cfg: DictConfig, s: dict) -> list[str]:
    """The summary's lines of end-of-run numbers, each with its unit."""
    ratio = s.get("test/ae_pca_ratio")
    parts = [f"test/mse {s['test/mse']:.5f} per value", f"PCA at k={cfg.model.latent_dim} {s['test/pca_mse']:.5f} " + (
        f"(AE/PCA {ratio:.2f})" if ratio is not None else "(lossless at this k: no AE/PCA ratio)")]
    parts += [f"{label} {s[key]:.1%}" for key, label in (("test/probe_accuracy", "probe"), ("test/knn_accuracy", "kNN"))
              if key in s]
    if "test/probe_accuracy" in s and cfg.eval.anomaly is not None:
        parts[-1] += f" (on the normal classes {_classes(cfg.eval.anomaly.normal_classes)}, all the probes saw)"
    if "test/iwae_nll" in s:
        parts.append(f"NLL {s['test/iwae_nll']:.2f} nats per example")
    lines = ["  " + "   ".join(parts)]
    if "anomaly/auroc" in s:
        lines.append(f"  anomaly AUROC {s['anomaly/auroc']:.3f} (PCA at k={cfg.model.latent_dim} "
                     f"{s['anomaly/pca_auroc']:.3f}, IsolationForest {s['anomaly/iforest_auroc']:.3f}, same split); "
                     f"threshold: the {cfg.eval.anomaly.percentile:g}th percentile of {s['anomaly/threshold_examples']:,} "
                     f"training errors flags {s['anomaly/detection_rate']:.1%} of the other classes, "
                     f"{s['anomaly/false_alarm_rate']:.1%} of the normal ones")
    codes = [f"{label} {s[key]:.4g}" for key, label in (
        ("test/l0", "L0 (active units per example)"), ("test/fvu", "FVU"), ("test/dead_fraction", "dead fraction"),
        ("test/mmcs", "MMCS"), ("test/recovered_fraction", "recovered>0.9"),
        ("test/codebook_perplexity", "codebook perplexity"), ("test/codebook_usage", "usage")) if s.get(key) is not None]
    if codes:
        lines.append("  " + "   ".join(codes))
    return lines


def _classes(classes) -> str:
    c = sorted(classes)
    return f"{c[0]}-{c[-1]}" if len(c) > 2 and c == list(range(c[0], c[-1] + 1)) else ",".join(map(str, c))
