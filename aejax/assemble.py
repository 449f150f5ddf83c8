"""Where a validated config becomes objects, once: the data, the model, the objective, the
optimizer and the typed settings the training core takes (``aejax.training.parts.Parts``).

Every swappable part is picked by a built-in name or by Hydra's ``_target_`` convention (a dotted
path to a callable of one's own package; see docs/extending.md):

- ``encoder._target_(**keys, in_shape, rngs)`` -> an ``nnx.Module`` mapping ``[B, *in_shape]`` to
  ``[B, features]`` with an int attribute ``features``; aejax adds the bottleneck.
- ``decoder._target_(**keys, latent_dim, out_shape, rngs)`` -> an ``nnx.Module`` mapping
  ``[B, latent_dim]`` to ``[B, *out_shape]`` logits (aejax applies ``model.output``).
- ``dataset._target_(**keys)`` -> an aejax ``Dataset`` or a mapping of arrays (``x_train``,
  ``x_test``, optional ``y_train``, ``y_test``, ``class_names``).
- ``variant.terms.<name>._target_`` -> a term ``(forward, cfg, rng, training) -> [B]``, weighted by
  its ``weight`` and logged as ``train/<name>``.
- ``optimizer._target_(learning_rate=schedule, **keys)`` -> an optax transformation (e.g.
  ``optax.lion``); ``lr``, ``schedule``, ``warmup_steps``, ``final_lr_fraction`` and ``grad_clip``
  are aejax's, as for the built-in optimizers.

``name`` is aejax's label for a part (run names, summaries) and is not passed to a ``_target_``.
Checks that need the data run here, still before anything is compiled or written: the model and
the objective are traced abstractly on one batch (shapes only), so every error a network or a
term raises for its config surfaces as a ``ConfigError`` naming the key.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from omegaconf import DictConfig, OmegaConf

from aejax.analysis.evaluate import EvalConfig, check_labels_for_anomaly, without_labels
from aejax.data import Dataset, load_dataset
from aejax.errors import ConfigError
from aejax.models import DECODERS, DTYPES, ENCODERS, Autoencoder, resolve_output
from aejax.models.sae import SPARSE_CODES, SparseAutoencoder
from aejax.models.vq import VQAutoencoder
from aejax.registry import TARGET, locate
from aejax.training.epoch import steps_per_epoch
from aejax.training.feed import memory_budget
from aejax.training.optim import OPTIMIZERS, OptimizerCommon, learning_rate
from aejax.training.parallel import layout
from aejax.training.constraints import constrained
from aejax.training.parts import Parts, TrainerConfig
from aejax.training.state import has_model_state
from aejax.variants import Objective
from aejax.variants.terms import TERMS

log = logging.getLogger(__name__)
LABEL_KEYS = (TARGET, "name", "kind")  # aejax's keys of a group, not passed to a _target_


@dataclass(frozen=True)
class Assembled:
    """A run's objects: ``parts`` for training, ``eval`` for the end-of-run evaluation."""
    parts: Parts
    eval: EvalConfig


def target_kwargs(node: DictConfig) -> dict[str, Any]:
    """A group's keys for its ``_target_``: plain Python values, nested ``_target_``s instantiated."""
    from hydra.utils import instantiate

    keys = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in LABEL_KEYS}
    return instantiate(OmegaConf.create(keys), _convert_="all") if keys else {}


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """What ``fn`` takes; for a class, its ``__init__`` less ``self`` (an ``nnx.Module``'s metaclass
    hides it behind ``*args, **kwargs``)."""
    if isinstance(fn, type):
        params = list(inspect.signature(fn.__init__).parameters.values())[1:]
        return inspect.Signature(params)
    return inspect.signature(fn)


def _call(fn: Callable[..., Any], key: str, *args, **kwargs) -> Any:
    """Call a user's ``_target_``; a wrong signature is a ConfigError naming the key."""
    try:
        _signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        raise ConfigError(key, f"{getattr(fn, '__qualname__', fn)} cannot be called with {sorted(kwargs)}: {e} "
                               "(its arguments are the group's keys, less name and _target_, plus aejax's)") from None
    except ValueError:  # no signature to inspect (a builtin): let the call say
        pass
    return fn(*args, **kwargs)


def _dtype_kwargs(fn: Callable[..., Any], dtype, group: str) -> dict[str, Any]:
    if dtype is None:
        return {}
    params = _signature(fn).parameters
    if "dtype" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return {"dtype": dtype}
    raise ConfigError("model.dtype", f"{group}._target_ {fn.__qualname__} takes no dtype=: it cannot compute in "
                                     "mixed precision (add a dtype argument, or use model.dtype=float32)")


def load_data(cfg: DictConfig) -> Dataset:
    """The dataset of a validated ``dataset`` group: a built-in ``kind`` or a ``_target_``."""
    if TARGET in cfg:
        from aejax.data.array import as_dataset

        fn = locate(cfg[TARGET], "dataset._target_")
        return as_dataset(_call(fn, "dataset._target_", **target_kwargs(cfg)), name=cfg.name)
    return load_dataset(cfg)


def build_model(cfg: DictConfig, example_shape: tuple[int, ...], output: str, key,
                data_mean: Optional[np.ndarray] = None) -> Autoencoder:
    """The encoder, bottleneck and decoder of a validated config (built-in names or ``_target_``s).

    ``model.dtype`` (float32 by default) is the computation dtype; parameters are always float32.
    A sparse code (``variant.code``: topk, batchtopk, jumprelu) is a sparse autoencoder with its own
    linear encoder and decoder, its pre-encoder bias starting at ``data_mean``; ``vq`` puts a codebook
    between the configured encoder and decoder.
    """
    rngs = nnx.Rngs(params=key)
    k, shape, v = cfg.model.latent_dim, tuple(example_shape), cfg.variant
    if v.code in SPARSE_CODES:
        return SparseAutoencoder(shape, k, v.code, k=v.k, dead_window=v.dead_window, threshold_decay=v.threshold_decay,
                                 bandwidth=v.bandwidth, threshold=v.threshold, data_mean=data_mean, output=output,
                                 rngs=rngs)
    dtype = DTYPES[cfg.model.get("dtype", "float32")]
    if TARGET in cfg.encoder:
        fn = locate(cfg.encoder[TARGET], "encoder._target_")
        encoder = _call(fn, "encoder._target_", **target_kwargs(cfg.encoder), in_shape=shape, rngs=rngs,
                        **_dtype_kwargs(fn, dtype, "encoder"))
        if not isinstance(getattr(encoder, "features", None), int):
            raise ConfigError("encoder._target_", f"{cfg.encoder[TARGET]} must return a module with an int "
                                                  "attribute `features` (the width of its output)")
    else:
        extra = {} if dtype is None else {"dtype": dtype}  # builders written for float32 only still work
        encoder = ENCODERS[cfg.encoder.name].builder(cfg.encoder, shape, rngs, **extra)
    code_width = 2 * k if cfg.variant.head == "gaussian" else k
    bottleneck = nnx.Linear(encoder.features, code_width, dtype=dtype, rngs=rngs)
    if TARGET in cfg.decoder:
        fn = locate(cfg.decoder[TARGET], "decoder._target_")
        decoder = _call(fn, "decoder._target_", **target_kwargs(cfg.decoder), latent_dim=k, out_shape=shape,
                        rngs=rngs, **_dtype_kwargs(fn, dtype, "decoder"))
    else:
        extra = {} if dtype is None else {"dtype": dtype}
        decoder = DECODERS[cfg.decoder.name].builder(cfg.decoder, k, shape, encoder, bottleneck, rngs, **extra)
    if v.code == "vq":
        return VQAutoencoder(encoder, bottleneck, decoder, k, output, codebook_size=v.codebook_size,
                             code_dim=v.code_dim, decay=v.ema_decay, restart_below=v.restart_below, rngs=rngs)
    return Autoencoder(encoder, bottleneck, decoder, k, cfg.variant.head, output)


def data_mean(data: Dataset, examples: int = 10_000) -> np.ndarray:
    """The mean training example (of the first ``examples`` when the split is streamed)."""
    x = data.x_train if isinstance(data.x_train, np.ndarray) else data.x_train[np.arange(min(examples, data.num_train))]
    return np.mean(np.asarray(x, np.float64), axis=0).astype(np.float32)


def build_objective(variant: DictConfig) -> Objective:
    """The objective of a validated ``variant`` group: built-in terms by name, others by ``_target_``."""
    terms = tuple((name, locate(term[TARGET], f"variant.terms.{name}._target_") if TARGET in term
                   else TERMS[name].builder, term) for name, term in variant.terms.items())
    return Objective(recon=variant.recon, corruption=variant.corruption, terms=terms)


def build_optimizer(cfg: DictConfig, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(transformation, schedule)`` of a validated ``optimizer`` group for a run of ``total_steps``."""
    schedule = learning_rate(cfg, total_steps)
    if TARGET in cfg:
        fn = locate(cfg[TARGET], "optimizer._target_")
        keys = {k: v for k, v in target_kwargs(cfg).items() if k not in OptimizerCommon.__dataclass_fields__}
        tx = _call(fn, "optimizer._target_", learning_rate=schedule, **keys)
    else:
        tx = OPTIMIZERS[cfg.name].builder(cfg, schedule)
    if cfg.grad_clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)
    return tx, schedule


def check_against_data(cfg: DictConfig, data: Dataset) -> None:
    """Checks that need the dataset, still before anything is compiled or written."""
    trainer = cfg.trainer
    if trainer.batch_size > data.num_train:
        raise ConfigError("trainer.batch_size",
                          f"{trainer.batch_size} is larger than the {data.num_train} training examples of {data.name}")
    if trainer.num_seeds > 1 and data.train_bytes > memory_budget():
        raise ConfigError("trainer.num_seeds", f"a seed batch keeps the training split in device memory, and the "
                                               f"{data.train_bytes / 2**30:.1f} GiB of {data.name} do not fit its budget "
                                               f"({memory_budget() / 2**30:.1f} GiB): run the seeds as separate jobs "
                                               f"(seed=0,1,2 --multirun)")
    if trainer.num_seeds > 1 and jax.process_count() > 1:
        raise ConfigError("trainer.num_seeds", f"a seed batch runs on one device; the {jax.process_count()} processes "
                                               "of distributed.* train one model: run the seeds as separate jobs")
    parallel = layout(trainer.parallel)
    if jax.process_count() > 1 and parallel.name != "sharded":
        raise ConfigError("trainer.parallel", f"{trainer.parallel} trains on one process's devices; the "
                                              f"{jax.process_count()} processes of distributed.* train one model over all "
                                              "their devices with trainer.parallel=sharded (or auto)")
    if trainer.num_seeds == 1 and trainer.batch_size % parallel.size:
        n, fit = parallel.size, -(-trainer.batch_size // parallel.size) * parallel.size
        raise ConfigError("trainer.batch_size", f"{trainer.batch_size} does not split evenly over the {n} "
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
    check_eval(cfg, data)
    width = int(np.prod(data.example_shape))
    unregularized = not cfg.variant.terms and cfg.variant.corruption is None and cfg.variant.head == "deterministic"
    if cfg.model.latent_dim >= width and unregularized:
        log.warning("model.latent_dim=%d is as wide as the %d values of each %s example and %s has no "
                    "regularizer or corruption: the identity is learnable, so the codes need not capture "
                    "any structure (narrow the bottleneck, or use a sparse/denoising/contractive variant)",
                    cfg.model.latent_dim, width, data.name, cfg.variant.name)


def check_eval(cfg: DictConfig, data: Dataset) -> None:
    """The end-of-run evaluation's settings against the data, before training (a crash after it would
    lose the run's evaluation, and resuming a finished run cannot redo it)."""
    e = cfg.eval
    if not e.enabled:
        return
    n = min(e.probe_examples, data.num_train)  # the training codes the probes are fitted on
    if e.probe and data.y_train is not None:
        if len(np.unique(np.asarray(data.y_train[:n]))) < 2:
            raise ConfigError("eval.probe_examples", f"the first {n} training examples of {data.name} hold one class: "
                                                     "the linear probe needs two or more (raise eval.probe_examples, "
                                                     "or eval.probe=false)")
        if e.knn_k > n:
            raise ConfigError("eval.knn_k", f"{e.knn_k} neighbours, but the probes are fitted on {n} training codes "
                                            f"(min(eval.probe_examples, the {data.num_train} of {data.name})): "
                                            f"use eval.knn_k <= {n}")
    if e.anomaly is not None and data.y_test is not None:
        if np.all(np.isin(data.y_test, list(e.anomaly.normal_classes))):
            raise ConfigError("eval.anomaly.normal_classes", f"every test class of {data.name} is normal: leave "
                                                             "at least one class out to score anomalies")


def _trace(make_model: Callable[[jax.Array], nnx.Module], objective: Objective, data: Dataset) -> None:
    """Build the model and run the objective on one batch abstractly (shapes only, nothing compiled)."""
    def one_step():
        model = make_model(jax.random.key(0))
        x = jnp.zeros((2, *data.example_shape))
        return objective(model, x, jnp.ones(2), jax.random.key(0), jnp.zeros((), jnp.int32))

    jax.eval_shape(one_step)


def _check_given_model(cfg: DictConfig, make_model: Callable[[jax.Array], nnx.Module]) -> None:
    """A model passed in (``aejax.train(model=...)``) must be what the config's objective, snapshots
    and evaluation expect of it: its code width and head."""
    built = nnx.eval_shape(lambda: make_model(jax.random.key(0)))
    for attr, key in (("latent_dim", "model.latent_dim"), ("head", "variant.head")):
        if not hasattr(built, attr):
            raise ConfigError("model", f"the model passed has no `{attr}`: pass an aejax.Autoencoder "
                                       "(aejax.Autoencoder.around(encoder, decoder, latent_dim, rngs=...))")
        if getattr(built, attr) != OmegaConf.select(cfg, key):
            raise ConfigError(key, f"the model passed has {attr}={getattr(built, attr)!r} but {key}="
                                   f"{OmegaConf.select(cfg, key)!r}: set {key}={getattr(built, attr)}")


def assemble(cfg: DictConfig, data: Dataset, model: Optional[Callable[[jax.Array], nnx.Module]] = None,
             trace: bool = True) -> Assembled:
    """The objects of a run of the validated ``cfg`` on ``data`` (``model``: a factory ``key -> module``
    to use instead of the configured encoder and decoder). ``trace=False`` skips running the objective
    on an abstract batch (a batched group traces one job of each code size: the others differ only
    in scalar values, which change no shape)."""
    check_against_data(cfg, data)
    output = resolve_output(cfg.model.output, data.unit_range)
    mean = data_mean(data) if cfg.variant.code in SPARSE_CODES and model is None else None
    make_model = model or (lambda key: build_model(cfg, data.example_shape, output, key, mean))
    if model is not None:
        _check_given_model(cfg, model)
    built = nnx.eval_shape(lambda: make_model(jax.random.key(0)))
    if has_model_state(built) and layout(cfg.trainer.parallel).name == "pmap" and cfg.trainer.num_seeds == 1:
        raise ConfigError("trainer.parallel", "pmap keeps a copy of the model on each device, and this model has "
                                              "state updated by each batch (variant.code="
                                              f"{cfg.variant.code}): use trainer.parallel=sharded or none")
    objective = build_objective(cfg.variant)
    if trace:
        _trace(make_model, objective, data)
    trainer: TrainerConfig = OmegaConf.to_object(cfg.trainer)
    steps = steps_per_epoch(data.num_train, trainer.batch_size, trainer.drop_last)
    tx, schedule = build_optimizer(cfg.optimizer, steps * trainer.epochs)
    tx = constrained(tx, built)  # unit-norm dictionary directions, around the optimizer
    parts = Parts(model=make_model, objective=objective, optimizer=tx, schedule=schedule, trainer=trainer,
                  snapshot=OmegaConf.to_object(cfg.snapshot), seed=cfg.seed, label=cfg.variant.name,
                  config=OmegaConf.to_container(cfg))
    return Assembled(parts, OmegaConf.to_object(cfg.eval))
