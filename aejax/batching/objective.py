"""The objective's scalar values carried per model in a batched group: the weight of a built-in term
(``variant.terms.<name>.weight``), its annealing (``anneal_steps``, when it anneals at all) and the
input corruption's level (``variant.corruption.sigma`` of Gaussian noise, ``rate`` of masking and
salt-and-pepper noise).

They ride beside the optimizer values in each model's optimizer state (``members.Hyper``), one
scalar per model under ``vmap``, and rebuild the job's own objective inside the compiled step and
in the validation program: a term's weight multiplies its value, sigma scales the noise and rate
thresholds the uniform draws exactly as the job's constants do, and each model draws its noise
from its own key, so every job trains as its separate run. What a value decides in Python (a
term's ``free_bits`` on or off, an estimator, a patch count) stays part of the group's signature.

A group whose models differ in ``model.latent_dim`` carries it too (``CODE_SIZE``): the objective's
``code_size``, with which a Gaussian head samples each model's own noise on its own units only
(``aejax.variants.objective.gaussian_noise``) and the KL leaves the padded units out.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
from omegaconf import DictConfig, OmegaConf

from aejax.registry import TARGET

# corruption kinds and the one level of each that rides per model (patch masking rounds its rate
# to a number of patches in Python: it is part of the program)
CORRUPTION_LEVELS = {"gaussian": "sigma", "mask": "rate", "salt_pepper": "rate"}
PREFIX = "variant."
CODE_SIZE = "model.latent_dim"  # a padded model's own code size, among its values when the group's differ


class Overlay:
    """A config node with some scalar values replaced by (traced) arrays; the others read through."""

    def __init__(self, cfg: Any, values: dict[str, Any]):
        self._cfg, self._values = cfg, values

    def __getattr__(self, key: str) -> Any:
        return self._values[key] if key in self._values else getattr(self._cfg, key)

    def __getitem__(self, key: str) -> Any:
        return self.__getattr__(key)

    def __contains__(self, key: str) -> bool:
        return key in self._cfg

    def get(self, key: str, default: Any = None) -> Any:
        return self.__getattr__(key) if key in self else default


def objective_keys(cfg: DictConfig) -> list[str]:
    """The dotted keys of the job's objective values that a group may carry per model."""
    keys = []
    for name, term in cfg.variant.terms.items():
        if TARGET in term:  # a term of one's own may read its weight in Python
            continue
        keys.append(f"variant.terms.{name}.weight")
        if term.get("anneal_steps", 0) > 0:  # annealing or not is the program's; how long is per model
            keys.append(f"variant.terms.{name}.anneal_steps")
    corruption = cfg.variant.corruption
    if corruption is not None and corruption.kind in CORRUPTION_LEVELS:
        keys.append(f"variant.corruption.{CORRUPTION_LEVELS[corruption.kind]}")
    return keys


def objective_values(cfg: DictConfig) -> dict[str, float]:
    """The job's values of ``objective_keys``."""
    return {key: float(OmegaConf.select(cfg, key)) for key in objective_keys(cfg)}


def with_values(objective, values: dict[str, jax.Array]):
    """``objective`` (an ``aejax.variants.objective.Objective``) with the per-model ``values`` among
    ``values`` (keys of ``objective_keys`` and ``CODE_SIZE``; the optimizer's are ignored) in place of
    its constants."""
    own = {k[len(PREFIX):]: v for k, v in values.items() if k.startswith(PREFIX)}
    if CODE_SIZE in values:
        objective = dataclasses.replace(objective, code_size=values[CODE_SIZE])
    if not own:
        return objective
    corruption = objective.corruption
    level = {k.split(".", 1)[1]: v for k, v in own.items() if k.startswith("corruption.")}
    if level:
        corruption = Overlay(corruption, level)
    terms = []
    for name, fn, cfg in objective.terms:
        mine = {k.rsplit(".", 1)[1]: v for k, v in own.items() if k.startswith(f"terms.{name}.")}
        terms.append((name, fn, Overlay(cfg, mine) if mine else cfg))
    return dataclasses.replace(objective, corruption=corruption, terms=tuple(terms))


def group_train_step(graphdef, objective, tx):
    """A group's train step: the core's step built inside the traced step with the model's own
    values (its optimizer state's), so each model under ``vmap`` minimises its own objective."""
    from aejax.training.step import make_train_step

    def step(state, x, w):
        return make_train_step(graphdef, with_values(objective, state.opt_state.values), tx)(state, x, w)

    return step


def group_eval_fn(graphdef, objective):
    """The group's validation program: ``evaluate((variables, values), chunks, weights, keys)``, each
    model's means with its own objective (``[n]`` each)."""
    from aejax.training.epoch import eval_fn

    def evaluate(inputs, chunks, weights, key):
        params, values = inputs
        return eval_fn(graphdef, with_values(objective, values))(params, chunks, weights, key)

    return jax.jit(jax.vmap(evaluate, in_axes=(0, None, None, 0)))
