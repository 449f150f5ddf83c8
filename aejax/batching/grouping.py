"""Which jobs of a sweep can share one compiled program, and how a group is cut to fit memory.

Two jobs share a program when their validated configs are equal but for what a group can vary per
model: ``seed``, ``model.latent_dim`` (codes padded to the group's largest, VAEs' too; only where
padding is exact, see ``PAD_TERMS``), the scalar optimizer values in ``OPTIMIZER_VALUES`` (a built-in
optimizer), the objective's values (``aejax.batching.objective.objective_keys``), and what each job keeps for itself anyway (its logger, its resume and overwrite
settings, its progress bar). A job that fits no group, or cannot be batched at all (``alone``),
runs by itself as the basic launcher runs it.

Jobs with ``trainer.parallel=sharded`` (or ``auto`` where it picks sharded: several accelerators)
group as the others do, and their group trains as one program over all devices with its models
spread over them (``aejax.training.parallel.Models``: each device its own models on whole
batches; a group that the devices do not divide evenly is padded with copies of its last model,
fewer than the models on one device). ``pmap`` keeps a copy of one model on each device, which
a group does not do: such jobs run alone.
"""
from __future__ import annotations

import json
import logging
import math
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from aejax.batching.objective import objective_keys
from aejax.registry import TARGET

log = logging.getLogger(__name__)

# optimizer keys whose values a group carries per model (traced scalars rebuild each model's
# optimizer, aejax.batching.members.per_model); others (schedule, warmup_steps, momentum, ...) shape
# the program and must be equal
OPTIMIZER_VALUES = ("lr", "final_lr_fraction", "grad_clip", "b1", "b2", "eps", "weight_decay")
# terms that a zero-padded code leaves unchanged: they sum over the code's units or do not read it,
# and the KL of a Gaussian head leaves the padded units out (the objective's code_size, which also
# gives each model its own noise on its own units: aejax.batching.objective), as l1's mean does
PAD_TERMS = frozenset({"contractive", "kl_sparsity", "kl", "l1"})
OWN_KEYS = ("seed", "logger", "trainer.resume", "trainer.overwrite", "trainer.progress")


def alone(cfg: DictConfig) -> Optional[str]:
    """Why the job of the validated ``cfg`` must run by itself (None: it can be batched)."""
    trainer = cfg.trainer
    if trainer.num_seeds != 1:
        return "a seed batch (trainer.num_seeds > 1) is a batched program already"
    if trainer.feed == "stream":
        return "trainer.feed=stream: a group keeps the training split in device memory"
    if trainer.parallel == "pmap":
        return ("trainer.parallel=pmap: a group spreads its models over the devices in one program "
                "(trainer.parallel=sharded), not a copy of each model per device")
    if cfg.distributed.mode == "on" or cfg.distributed.coordinator is not None:
        return "distributed.*: a group runs in one process"
    if cfg.variant.get("code", "dense") != "dense":
        return (f"variant.code={cfg.variant.code}: sparse dictionaries and codebooks carry state beyond their "
                "parameters and constrain their decoder, which a group does not handle yet")
    return None


def paddable(cfg: DictConfig) -> bool:
    """Whether jobs of ``cfg``'s kind can differ in ``model.latent_dim`` (padded codes are exact):
    built-in networks (their parameters that size with the code are known: the decoder's input
    rows, and the bottleneck laid out by the model's ``code_layout``, a Gaussian head's mean and
    log-variance apart) and the built-in terms of ``PAD_TERMS``."""
    terms = cfg.variant.terms
    return (all(name in PAD_TERMS and TARGET not in term for name, term in terms.items())
            and TARGET not in cfg.encoder and TARGET not in cfg.decoder)


def _padded_size(cfg: DictConfig) -> str:
    """What of a padded job's code size its program still depends on: whether the contractive
    term's ``auto`` estimator is exact at this size (at most ``exact_max`` units, or inputs: in the
    program the group's largest code decides, so a group keeps to one side of ``exact_max``)."""
    term = cfg.variant.terms.get("contractive")
    if term is None or term.estimator != "auto":
        return "<per model>"
    return f"<per model, {'at most' if cfg.model.latent_dim <= term.exact_max else 'over'} {term.exact_max}>"


def _parent(tree: dict, key: str) -> tuple[dict, str]:
    """The node of a plain config that holds dotted ``key`` (an empty one where a part is missing), and its last part."""
    *path, last = key.split(".")
    for part in path:
        tree = tree.get(part, {})
    return tree, last


def signature(cfg: DictConfig) -> str:
    """What the jobs of one group have in common: the validated config less what may differ."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    for key in OWN_KEYS:
        node, last = _parent(plain, key)
        node.pop(last, None)
    if paddable(cfg):
        plain["model"]["latent_dim"] = _padded_size(cfg)
    if TARGET not in cfg.optimizer:
        opt = plain["optimizer"]
        for key in OPTIMIZER_VALUES:
            if key in opt and (key != "grad_clip" or opt[key] is not None):
                opt[key] = "<per model>"
    for key in objective_keys(cfg):  # term weights and annealing, corruption levels
        node, last = _parent(plain, key)
        node[last] = "<per model>"
    return json.dumps(plain, sort_keys=True, default=str)


def optimizer_values(cfg: DictConfig) -> dict[str, float]:
    """The scalar optimizer values of a job that its group carries per model."""
    if TARGET in cfg.optimizer:
        return {}
    return {k: float(cfg.optimizer[k]) for k in OPTIMIZER_VALUES
            if k in cfg.optimizer and cfg.optimizer[k] is not None}


def group_jobs(keys: list[Optional[str]]) -> list[list[int]]:
    """Jobs with equal keys together, in the order of their first job; a None key runs alone."""
    groups: dict[str, list[int]] = {}
    out: list[list[int]] = []
    for i, key in enumerate(keys):
        if key is None:
            out.append([i])
        elif key in groups:
            groups[key].append(i)
        else:
            groups[key] = [i]
            out.append(groups[key])
    return out


def split(n: int, per_model: int, budget: int, max_models: Optional[int], devices: int = 1) -> list[int]:
    """Sizes of the programs a group of ``n`` models is cut into: as many models as ``budget`` bytes
    (of each of ``devices`` devices the models are spread over) hold at ``per_model`` bytes each
    (and at most ``max_models``), in programs of even size."""
    fit = max(1, budget // max(per_model, 1)) * devices
    if max_models:
        fit = min(fit, max_models)
    parts = math.ceil(n / fit)
    base, extra = divmod(n, parts)
    return [base + (i < extra) for i in range(parts)]
