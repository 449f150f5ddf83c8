"""Typed schemas for the composed Hydra config, and its validation.

``validate`` runs first in every job: it merges each config group into the schema of the
option that was picked (an unknown key or a value of the wrong type fails here, naming the
key), then checks ranges and choices. Nothing is compiled or written before it passes.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from aejax.analysis.evaluate import AnomalyConfig, EvalConfig  # noqa: F401  (the typed settings)
from aejax.analysis.snapshot import SnapshotConfig
from aejax.data import DATASETS
from aejax.distributed import DistributedConfig
from aejax.distributed import check as check_distributed
from aejax.errors import ConfigError
from aejax.registry import TARGET, locate
from aejax.models import DECODERS, DTYPES, ENCODERS, HEADS, OUTPUTS
from aejax.training.optim import OPTIMIZERS, SCHEDULES, OptimizerCommon
from aejax.training.optim import check as check_optimizer
from aejax.training.parallel import CHOICES as PARALLEL
from aejax.training.parts import TrainerConfig
from aejax.variants.codes import CodeConfig, check_code
from aejax.variants.corruption import CorruptionConfig
from aejax.variants.corruption import check as check_corruption
from aejax.variants.losses import RECON_LOSSES
from aejax.variants.terms import TERMS, TargetTermConfig, check_terms
from aejax.values import check_numbers

LOGGER_MODES = ("auto", "online", "offline", "disabled")
PROGRESS = ("auto", "on", "off")


@dataclass
class ModelConfig:
    latent_dim: int = 2
    # Output activation applied to the decoder's logits: sigmoid for data in [0, 1],
    # identity for real-valued data; "auto" picks from the dataset's range.
    output: str = "auto"
    # Computation dtype of the networks: float32, or bfloat16 (mixed precision: parameters,
    # optimizer state, codes and losses stay float32).
    dtype: str = "float32"


@dataclass
class VariantConfig(CodeConfig):  # code, k, codebook_size, ...: see aejax/variants/codes.py
    name: str = "vanilla"  # a label for runs; what the variant does is the fields below
    recon: str = "mse"
    head: str = "deterministic"  # deterministic | gaussian (a VAE's mean and log-variance)
    corruption: Optional[CorruptionConfig] = None  # denoising: corrupt the input, reconstruct the clean one
    terms: dict[str, Any] = field(default_factory=dict)  # regularizers by name, each with a weight


@dataclass
class LoggerConfig:
    mode: str = "auto"
    project: str = "aejax"
    entity: Optional[str] = None
    group: Optional[str] = None
    name: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    job_type: str = "train"
    init_timeout: float = 30.0  # seconds before an online init falls back to offline


@dataclass
class TopConfig:
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    variant: VariantConfig = field(default_factory=VariantConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


def _registries() -> dict[str, Any]:
    return {"encoder": ENCODERS, "decoder": DECODERS, "dataset": DATASETS, "optimizer": OPTIMIZERS}


@functools.lru_cache(maxsize=None)
def _structured(schema: type) -> DictConfig:
    """A schema's typed config, made once (a third of validating a config; ``merge`` copies it)."""
    return OmegaConf.structured(schema)


def _merge(schema: type, node: Any, prefix: str) -> DictConfig:
    if not isinstance(node, (dict, DictConfig)):
        raise ConfigError(prefix, f"expected a config group, got {node!r}")
    try:
        return OmegaConf.merge(_structured(schema), node)
    except OmegaConfBaseException as e:
        key = ".".join(part for part in (prefix, getattr(e, "full_key", None)) if part) or "config"
        msg = str(getattr(e, "msg", e)).splitlines()[0]
        owner = getattr(e, "object_type", None)
        if isinstance(e, ConfigKeyError) and hasattr(owner, "__dataclass_fields__"):
            parent = key.rsplit(".", 1)[0] if "." in key else "the top level"
            msg = f"unknown key; {parent} takes: {', '.join(owner.__dataclass_fields__)}"
        raise ConfigError(key, msg) from None


def validate(cfg: DictConfig) -> DictConfig:
    """Return a resolved, typed copy of ``cfg`` or raise ConfigError naming the bad key."""
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(str(getattr(e, "full_key", "config")), str(e).splitlines()[0]) from None
    assert isinstance(raw, dict)
    raw.pop("hydra", None)
    registries = _registries()
    known = set(TopConfig.__dataclass_fields__) | set(registries)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(unknown[0], f"unknown top-level key; known keys: {', '.join(sorted(known))}")

    top = _merge(TopConfig, {k: raw[k] for k in TopConfig.__dataclass_fields__ if k in raw}, "")
    out = {k: top[k] for k in TopConfig.__dataclass_fields__}
    out["variant"].terms = _merge_terms(raw.get("variant", {}).get("terms") or {})
    for group, registry in registries.items():
        node = raw.get(group)
        if isinstance(node, dict) and TARGET in node:
            out[group] = _target_group(group, node)
            continue
        if not isinstance(node, dict) or registry.key not in node:
            raise ConfigError(f"{group}.{registry.key}", f"pick a {group}, e.g. {group}={registry.names()[0]}, "
                                                         f"or name your own with {group}._target_=mypkg.module.Callable")
        out[group] = _merge(registry[node[registry.key]].schema, node, group)
    out_cfg = OmegaConf.create(out)
    OmegaConf.set_struct(out_cfg, True)
    missing = sorted(OmegaConf.missing_keys(out_cfg))
    if missing:
        raise ConfigError(missing[0], f"needs a value: add {missing[0]}=... to the command line")
    _check_values(out_cfg)
    return out_cfg


def _check_seed_batch(cfg: DictConfig) -> None:
    """A seed batch is one program whose models read their own orders of the training split held in
    memory (on one device, or spread over the devices with ``sharded``): the settings that would
    contradict that are refused."""
    t = cfg.trainer
    if t.num_seeds == 1:
        return
    if t.parallel == "pmap":
        raise ConfigError("trainer.num_seeds", "a seed batch spreads its models over the devices in one program "
                                               "(trainer.parallel=sharded), not a copy of each model per device: "
                                               "use trainer.parallel=sharded, auto or none")
    if t.feed == "stream":
        raise ConfigError("trainer.num_seeds", "a seed batch needs the training split in device memory "
                                               "(trainer.feed=memory or auto), not trainer.feed=stream")
    if t.unroll == "on":
        raise ConfigError("trainer.num_seeds", "trainer.unroll=on streams the data, which a seed batch cannot; "
                                               "use trainer.unroll=auto or off")


# The keys aejax reads from a _target_ group (typed as for built-in options); the others go to the target.
TARGET_SCHEMAS: dict[str, Any] = {"optimizer": OptimizerCommon, "term": TargetTermConfig}


def _target_group(group: str, node: dict[str, Any], prefix: Optional[str] = None) -> DictConfig:
    """A group (or term) picked by ``_target_``: the target must import (checked now, before any data is
    read or anything compiled); its keys are kept as given, those aejax reads are typed; ``name``
    defaults to the target's last part."""
    prefix = prefix or group
    locate(node[TARGET], f"{prefix}.{TARGET}")
    out = OmegaConf.create({k: v for k, v in node.items()})
    schema = TARGET_SCHEMAS.get(group)
    if schema is not None:
        typed = _merge(schema, {k: v for k, v in node.items() if k in schema.__dataclass_fields__}, prefix)
        out = OmegaConf.merge(out, OmegaConf.to_container(typed))
    if group != "term" and not isinstance(out.get("name"), str):
        out.name = str(node[TARGET]).rsplit(".", 1)[-1]
    if group == "dataset":
        out.kind = TARGET
    return out


def _merge_terms(terms: dict[str, Any]) -> DictConfig:
    if not isinstance(terms, dict):
        raise ConfigError("variant.terms", f"expected a mapping of term name to settings, got {terms!r}")
    merged = {}
    for name, settings in terms.items():
        if isinstance(settings, dict) and TARGET in settings:
            merged[name] = _target_group("term", settings, f"variant.terms.{name}")
            continue
        if name not in TERMS.names():
            raise ConfigError(f"variant.terms.{name}", f"unknown term; known: {', '.join(TERMS.names())}, or name "
                                                       f"your own with variant.terms.{name}._target_=mypkg.module.term")
        merged[name] = _merge(TERMS[name].schema, settings or {}, f"variant.terms.{name}")
    return OmegaConf.create(merged)


def _positive(cfg: DictConfig, *keys: str) -> None:
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is not None and value <= 0:
            raise ConfigError(key, f"must be > 0, got {value}")


def _choice(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    value = OmegaConf.select(cfg, key)
    if value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}; got {value!r}")


def _check_values(cfg: DictConfig) -> None:
    check_numbers(cfg)  # every number finite, the seed and the dataset's shared keys in range
    _positive(cfg, "snapshot.probe_size", "snapshot.recon_examples", "snapshot.samples", "snapshot.interp_steps")
    if cfg.snapshot.every < 0:
        raise ConfigError("snapshot.every", f"must be >= 0 (epochs between snapshots; 0 turns them off), got {cfg.snapshot.every}")
    if cfg.snapshot.grid < 2:
        raise ConfigError("snapshot.grid", f"must be >= 2 (points per axis of the decoded grid), got {cfg.snapshot.grid}")
    if cfg.snapshot.histogram_units < 0:
        raise ConfigError("snapshot.histogram_units", f"must be >= 0, got {cfg.snapshot.histogram_units}")
    _positive(cfg, "eval.knn_k", "eval.probe_examples", "eval.iwae_samples", "eval.iwae_examples")
    anomaly = cfg.eval.anomaly
    if anomaly is not None and not anomaly.normal_classes:
        raise ConfigError("eval.anomaly.normal_classes", "list the classes to train on, e.g. [0,1,2,3,4]")
    if anomaly is not None and not 0 < anomaly.percentile < 100:
        raise ConfigError("eval.anomaly.percentile", f"must be in (0, 100), got {anomaly.percentile}")
    _positive(cfg, "model.latent_dim", "trainer.epochs", "trainer.batch_size", "trainer.eval_every",
              "trainer.eval_batch_size", "trainer.stream_chunk", "trainer.stream_workers",
              "trainer.stream_prefetch", "trainer.unroll_steps", "optimizer.lr", "optimizer.grad_clip", "logger.init_timeout")
    if cfg.trainer.checkpoint_every < 0:
        raise ConfigError("trainer.checkpoint_every", f"must be >= 0 (0: no checkpoints), got {cfg.trainer.checkpoint_every}")
    _positive(cfg, "trainer.checkpoint_keep", "trainer.num_seeds")
    _check_seed_batch(cfg)
    if not isinstance(cfg.trainer.resume, (bool, str)):
        raise ConfigError("trainer.resume", f"must be false, true or a run directory, got {cfg.trainer.resume!r}")
    if cfg.trainer.overwrite and cfg.trainer.resume is not False:
        raise ConfigError("trainer.overwrite", "true deletes the run in the run directory; trainer.resume continues "
                                               "it: pick one")
    if cfg.trainer.log_every < 0:
        raise ConfigError("trainer.log_every", f"must be >= 0 (0 logs once per epoch), got {cfg.trainer.log_every}")
    _choice(cfg, "model.output", ("auto", *OUTPUTS))
    _choice(cfg, "model.dtype", tuple(DTYPES))
    _choice(cfg, "variant.recon", tuple(RECON_LOSSES))
    _choice(cfg, "logger.mode", LOGGER_MODES)
    _choice(cfg, "trainer.progress", PROGRESS)
    _choice(cfg, "trainer.feed", ("auto", "memory", "stream"))
    _choice(cfg, "trainer.unroll", ("auto", "on", "off"))
    _choice(cfg, "trainer.parallel", PARALLEL)
    _choice(cfg, "optimizer.schedule", SCHEDULES)
    check_optimizer(cfg.optimizer)
    _choice(cfg, "variant.head", HEADS)
    if cfg.variant.corruption is not None:
        check_corruption(cfg.variant.corruption)
    check_terms(cfg.variant, cfg)
    check_code(cfg.variant, cfg)
    check_distributed(cfg.distributed)
    if cfg.variant.recon == "bce" and cfg.model.output == "identity":
        raise ConfigError("model.output", "variant.recon=bce needs a sigmoid output (set model.output=sigmoid or auto)")
