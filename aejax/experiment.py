"""One job: validate the config, load the data, train, track, summarise."""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
from omegaconf import DictConfig, OmegaConf

from aejax.analysis.evaluate import evaluate, normal_classes_only
from aejax.config import validate
from aejax.data import Dataset, load_dataset
from aejax.errors import ConfigError
from aejax.models import build_autoencoder, resolve_output
from aejax.tracking import open_trackers
from aejax.training.epoch import steps_per_epoch
from aejax.training.loop import fit
from aejax.training.optim import learning_rate
from aejax.variants import build_objective


def check_against_data(cfg: DictConfig, data: Dataset) -> None:
    """Checks that need the dataset, still before anything is compiled or written.

    The model is built and the objective traced abstractly on one batch (shapes only, nothing
    compiled), so every error a network or a term raises for its config (an unknown activation,
    widths or patches that do not fit the data) surfaces here as a ConfigError.
    """
    if cfg.trainer.batch_size > data.num_train:
        raise ConfigError("trainer.batch_size",
                          f"{cfg.trainer.batch_size} is larger than the {data.num_train} training examples of {data.name}")
    if cfg.variant.recon == "bce" and not data.unit_range:
        raise ConfigError("variant.recon", f"bce needs data in [0, 1]; {data.name} is real-valued (use mse)")
    if cfg.model.output == "sigmoid" and not data.unit_range:
        raise ConfigError("model.output", f"a sigmoid output cannot fit {data.name}, which is real-valued (use auto or identity)")
    corruption = cfg.variant.corruption
    if corruption is not None and corruption.kind == "salt_pepper" and not data.unit_range:
        raise ConfigError("variant.corruption.kind", f"salt_pepper sets values to 0 or 1; {data.name} is real-valued")
    output = resolve_output(cfg.model.output, data.unit_range)
    objective = build_objective(cfg.variant)

    def one_step():
        model = build_autoencoder(cfg, data.example_shape, output, jax.random.key(0))
        x = jnp.zeros((2, *data.example_shape))
        return objective(model, x, jnp.ones(2), jax.random.key(0), jnp.zeros((), jnp.int32))

    jax.eval_shape(one_step)
    steps = steps_per_epoch(data.num_train, cfg.trainer.batch_size, cfg.trainer.drop_last)
    learning_rate(cfg.optimizer, steps * cfg.trainer.epochs)


def run(cfg: DictConfig, run_dir: Path) -> float:
    """Train the configured autoencoder; return the final validation loss (for sweepers)."""
    cfg = validate(cfg)
    data = load_dataset(cfg.dataset)
    if cfg.eval.anomaly is not None:
        data = normal_classes_only(data, cfg.eval.anomaly)
    check_against_data(cfg, data)

    trackers = open_trackers(cfg.logger, run_dir, OmegaConf.to_container(cfg))
    status = "failed"
    try:
        result = fit(cfg, data, trackers, run_dir)
        if cfg.eval.enabled:
            key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
            result.summary.update(evaluate(cfg, data, result.graphdef, result.state.params, key))
        trackers.summary({**result.summary, "run_dir": str(run_dir)})
        status = "finished"
    finally:
        trackers.finish(status)
    _print_summary(cfg, data, result.summary, run_dir, trackers)
    return result.summary["val/loss"]


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
