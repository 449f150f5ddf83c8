"""One job: validate the config, load the data, train, track, summarise."""
from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from aejax import distributed
from aejax.analysis.evaluate import check_labels_for_anomaly, evaluate, normal_classes_only, without_labels
from aejax.config import validate
from aejax.data import Dataset, load_dataset
from aejax.errors import ConfigError
from aejax.models import build_autoencoder, resolve_output
from aejax.tracking import Trackers, open_trackers
from aejax.tracking.local import write_json_atomic
from aejax.training.epoch import steps_per_epoch
from aejax.training.feed import memory_budget
from aejax.training.loop import fit_seeds, seed_config
from aejax.training.parallel import first_replica, layout
from aejax.training.preemption import EXIT_PREEMPTED, Preempted
from aejax.training.optim import learning_rate
from aejax.variants import build_objective

log = logging.getLogger(__name__)


def check_against_data(cfg: DictConfig, data: Dataset) -> None:
    """Checks that need the dataset, still before anything is compiled or written.

    The model is built and the objective traced abstractly on one batch (shapes only, nothing
    compiled), so every error a network or a term raises for its config (an unknown activation,
    widths or patches that do not fit the data) surfaces here as a ConfigError.
    """
    if cfg.trainer.batch_size > data.num_train:
        raise ConfigError("trainer.batch_size",
                          f"{cfg.trainer.batch_size} is larger than the {data.num_train} training examples of {data.name}")
    if cfg.trainer.num_seeds > 1 and data.train_bytes > memory_budget():
        raise ConfigError("trainer.num_seeds", f"a seed batch keeps the training split in device memory, and the "
                                               f"{data.train_bytes / 2**30:.1f} GiB of {data.name} do not fit its budget "
                                               f"({memory_budget() / 2**30:.1f} GiB): run the seeds as separate jobs "
                                               f"(seed=0,1,2 --multirun)")
    if cfg.trainer.num_seeds > 1 and jax.process_count() > 1:
        raise ConfigError("trainer.num_seeds", f"a seed batch runs on one device; the {jax.process_count()} processes "
                                               "of distributed.* train one model: run the seeds as separate jobs")
    parallel = layout(cfg.trainer.parallel)
    if jax.process_count() > 1 and parallel.name != "sharded":
        raise ConfigError("trainer.parallel", f"{cfg.trainer.parallel} trains on one process's devices; the "
                                              f"{jax.process_count()} processes of distributed.* train one model over all "
                                              "their devices with trainer.parallel=sharded (or auto)")
    if cfg.trainer.num_seeds == 1 and cfg.trainer.batch_size % parallel.size:
        n, fit = parallel.size, -(-cfg.trainer.batch_size // parallel.size) * parallel.size
        raise ConfigError("trainer.batch_size", f"{cfg.trainer.batch_size} does not split evenly over the {n} "
                                                f"devices of trainer.parallel={parallel.name}: use a multiple of {n} "
                                                f"(e.g. trainer.batch_size={fit}) or trainer.parallel=none")
    if cfg.variant.recon == "bce" and not data.unit_range:
        raise ConfigError("variant.recon", f"bce needs data in [0, 1]; {data.name} is real-valued (use mse)")
    if cfg.model.output == "sigmoid" and not data.unit_range:
        raise ConfigError("model.output", f"a sigmoid output cannot fit {data.name}, which is real-valued (use auto or identity)")
    corruption = cfg.variant.corruption
    if corruption is not None and corruption.kind == "salt_pepper" and not data.unit_range:
        raise ConfigError("variant.corruption.kind", f"salt_pepper sets values to 0 or 1; {data.name} is real-valued")
    if cfg.eval.anomaly is not None:
        check_labels_for_anomaly(data)
    if note := without_labels(data, probe=cfg.eval.enabled and cfg.eval.probe, snapshots=cfg.snapshot.every > 0):
        log.warning(note)
    output = resolve_output(cfg.model.output, data.unit_range)
    objective = build_objective(cfg.variant)

    def one_step():
        model = build_autoencoder(cfg, data.example_shape, output, jax.random.key(0))
        x = jnp.zeros((2, *data.example_shape))
        return objective(model, x, jnp.ones(2), jax.random.key(0), jnp.zeros((), jnp.int32))

    jax.eval_shape(one_step)
    width = int(np.prod(data.example_shape))
    unregularized = not cfg.variant.terms and cfg.variant.corruption is None and cfg.variant.head == "deterministic"
    if cfg.model.latent_dim >= width and unregularized:
        log.warning("model.latent_dim=%d is as wide as the %d values of each %s example and %s has no "
                    "regularizer or corruption: the identity is learnable, so the codes need not capture "
                    "any structure (narrow the bottleneck, or use a sparse/denoising/contractive variant)",
                    cfg.model.latent_dim, width, data.name, cfg.variant.name)
    steps = steps_per_epoch(data.num_train, cfg.trainer.batch_size, cfg.trainer.drop_last)
    learning_rate(cfg.optimizer, steps * cfg.trainer.epochs)


IGNORED_ON_RESUME = ("trainer.resume", "trainer.progress", "logger.mode", "logger.init_timeout", "distributed.mode",
                     "distributed.coordinator", "distributed.num_processes", "distributed.process_id",
                     "distributed.timeout")


def resume_target(cfg: DictConfig, run_dir: Path) -> tuple[Path, bool]:
    """``(run directory, resume?)`` for ``trainer.resume`` (false, true: this run dir, or a run dir).

    A run is continued only with the config it was trained with (up to the keys in
    ``IGNORED_ON_RESUME``): anything else would not continue that run but start another one.
    """
    setting = cfg.trainer.resume
    if setting is False:
        return run_dir, False
    target = run_dir if setting is True else Path(str(setting)).expanduser()
    n = cfg.trainer.num_seeds
    runs = [target] if n == 1 else [seed_dir(target, cfg.seed + i) for i in range(n)]
    if not any(p.name.isdigit() for run in runs for p in (run / "checkpoints").glob("*")):
        hint = ("trainer.resume=true continues the run in hydra.run.dir (set it to that run's directory)"
                if setting is True else "pass the directory of a run trained with checkpoints (trainer.checkpoint_every > 0)")
        where = target / "checkpoints" if n == 1 else target / "seed_*" / "checkpoints"
        raise ConfigError("trainer.resume", f"no checkpoint to resume from in {where}: {hint}")
    saved = OmegaConf.load(target / "config.yaml")
    differ = [key for key in _leaf_keys(OmegaConf.to_container(cfg)) | _leaf_keys(OmegaConf.to_container(saved))
              if key not in IGNORED_ON_RESUME and OmegaConf.select(cfg, key) != OmegaConf.select(saved, key)]
    if differ:
        shown = ", ".join(f"{k}={OmegaConf.select(cfg, k)!r} (was {OmegaConf.select(saved, k)!r})" for k in sorted(differ)[:5])
        raise ConfigError("trainer.resume", f"{target} was trained with another config: {shown}; "
                                            "resume with the settings it was started with")
    return target, True


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


def _leaf_keys(node: Any, prefix: str = "") -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_leaf_keys(v, f"{prefix}{k}.") for k, v in node.items())) if node else {prefix[:-1]}
    return {prefix[:-1]}


def seed_dir(run_dir: Path, seed: int) -> Path:
    """The directory of a seed batch's run with ``seed``."""
    return run_dir / f"seed_{seed}"


def seed_runs(cfg: DictConfig, run_dir: Path) -> list[tuple[DictConfig, Path]]:
    """``(config, run directory)`` of each run: the run itself, or for ``trainer.num_seeds=n`` the
    ``n`` runs of the seed batch, ``RUN_DIR/seed_<s>``, each with the validated config of the
    equivalent separate run (its seed, its own W&B name) in the batch's W&B group."""
    n = OmegaConf.select(cfg, "trainer.num_seeds", default=1)
    if n == 1:
        return [(validate(cfg), run_dir)]
    from aejax.sweep import sweep_group

    out = []
    for i in range(n):
        member = seed_config(cfg, i)
        with open_dict(member):
            if member.logger.group is None:  # outside a multirun: the batch is the group
                member.logger.group = sweep_group(run_dir)
            member.logger.tags = [*member.logger.tags, f"seed_batch={n}"]
        out.append((validate(member), seed_dir(run_dir, member.seed)))
    return out


def run(cfg: DictConfig, run_dir: Path) -> float:
    """Train the configured autoencoder(s); return the final validation loss (for sweepers; the
    mean over a seed batch; +inf when training diverged). A run stopped by SIGTERM/SIGINT saves a
    checkpoint and exits with ``EXIT_PREEMPTED``."""
    raw, cfg = cfg, validate(cfg)
    distributed.initialize(cfg.distributed)  # before JAX uses a device
    run_dir, resume = resume_target(cfg, distributed.shared_run_dir(Path(run_dir)))
    writer = distributed.is_writer()  # process 0 writes the run directory (with one process: this one)
    if writer:
        _check_writable(run_dir, "trainer.resume" if resume else "hydra.run.dir")
    data = load_dataset(cfg.dataset)
    if cfg.eval.anomaly is not None:
        data = normal_classes_only(data, cfg.eval.anomaly)
    check_against_data(cfg, data)
    runs = seed_runs(raw, run_dir)
    batch = BatchDir(run_dir, cfg, [d for _, d in runs]) if len(runs) > 1 else None  # one process: the writer

    trackers: list = []
    statuses = ["failed"] * len(runs)
    try:
        for run_cfg, dir_ in runs:
            trackers.append(open_trackers(run_cfg.logger, dir_, OmegaConf.to_container(run_cfg), resume=resume,
                                          concurrent=batch is not None) if writer else Trackers([]))
        results = fit_seeds(cfg, data, trackers, [d for _, d in runs], resume=resume)
        pca = None
        for i, ((run_cfg, dir_), tracker, result) in enumerate(zip(runs, trackers, results)):
            if result.status == "diverged":
                tracker.summary({**result.summary, "run_dir": str(dir_)})
                statuses[i] = "diverged"
                print(f"aejax: training diverged (a NaN/Inf loss at step {result.summary['diverged_at_step']}); "
                      f"last good checkpoint: step {result.summary['last_checkpoint_step']}; run dir: {dir_}",
                      file=sys.stderr, flush=True)
                continue
            if cfg.eval.enabled and writer:  # on one device, with no other process involved
                key = jax.random.fold_in(jax.random.key(run_cfg.seed), 1)
                result.summary.update(evaluate(OmegaConf.to_object(run_cfg.eval), data, result.graphdef,
                                               first_replica(result.state.params), key, pca_mse=pca,
                                               recon=build_objective(run_cfg.variant).recon,
                                               batch_size=run_cfg.trainer.eval_batch_size))
                pca = result.summary["test/pca_mse"]  # the same baseline for every seed
            tracker.summary({**result.summary, "run_dir": str(dir_)})
            statuses[i] = "finished"
    except Preempted as e:
        statuses = ["preempted"] * len(runs)
        for tracker in trackers:
            tracker.summary({"preempted_at_step": e.step})
        print(f"aejax: {e}; continue with `aejax-train ... trainer.resume={run_dir}`", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_PREEMPTED) from None
    finally:
        for tracker, status in zip(trackers, statuses):
            tracker.finish(status)
        if batch is not None:
            batch.finish(statuses)
    for (run_cfg, dir_), tracker, result, status in zip(runs, trackers, results, statuses):
        if status == "finished" and writer:
            _print_summary(run_cfg, data, result.summary, dir_, tracker)
    losses = [r.summary["val/loss"] if st == "finished" else math.inf for r, st in zip(results, statuses)]
    if batch is not None:
        print(batch.describe(), flush=True)
    return float(np.mean(losses)) if all(math.isfinite(v) for v in losses) else math.inf


class BatchDir:
    """The directory of a seed batch: its ``config.yaml`` (with ``trainer.num_seeds``) and a
    ``summary.json`` naming the runs (``runs``) with the mean and spread of their final metrics."""

    def __init__(self, run_dir: Path, cfg: DictConfig, runs: list[Path]):
        self.run_dir, self.runs = run_dir, runs
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        self.summary: dict[str, Any] = {"status": "running", "num_seeds": len(runs),
                                        "runs": [str(p.relative_to(run_dir)) for p in runs]}
        write_json_atomic(run_dir / "summary.json", self.summary)

    def finish(self, statuses: list[str]) -> None:
        self.summary["statuses"] = statuses
        worst = [s for s in ("preempted", "failed", "diverged") if s in statuses]
        self.summary["status"] = worst[0] if worst else "finished"
        finals = [json.loads((p / "summary.json").read_text()) if (p / "summary.json").is_file() else {}
                  for p in self.runs]
        for key in ("val/loss", "train/loss", "test/mse", "test/probe_accuracy", "test/knn_accuracy"):
            values = [f[key] for f, st in zip(finals, statuses) if st == "finished" and key in f]
            if values:
                self.summary[f"{key}_mean"] = float(np.mean(values))
                self.summary[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        write_json_atomic(self.run_dir / "summary.json", self.summary)

    def describe(self) -> str:
        s = self.summary
        if "val/loss_mean" not in s:
            return f"aejax: seed batch of {s['num_seeds']} in {self.run_dir}: {s['status']}"
        return (f"aejax: seed batch of {s['num_seeds']} ({', '.join(s['runs'])}): val/loss "
                f"{s['val/loss_mean']:.5f} ± {s['val/loss_std']:.5f} (mean ± std over seeds); {s['status']}")


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
        parts = [f"test/mse {s['test/mse']:.5f}", f"PCA at k={cfg.model.latent_dim} {s['test/pca_mse']:.5f} "
                 f"(AE/PCA {s['test/ae_pca_ratio']:.2f})"]
        parts += [f"{label} {s[key]:.1%}" for key, label in (("test/probe_accuracy", "probe"), ("test/knn_accuracy", "kNN"))
                  if key in s]
        parts += [f"{label} {s[key]:.4g}" for key, label in (("test/iwae_nll", "NLL"), ("anomaly/auroc", "anomaly AUROC"))
                  if key in s]
        lines.append("  " + "   ".join(parts))
    lines.append(f"  run dir: {run_dir}")
    for sink in trackers.sinks:
        if hasattr(sink, "location"):
            hint = f" (upload with `wandb sync {sink.location}`)" if sink.mode == "offline" else ""
            lines.append(f"  W&B ({sink.mode}): {sink.location}{hint}")
    print("\n".join(lines), flush=True)
