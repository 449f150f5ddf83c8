"""The models of a batched group (``Parts.members``): how they differ and how each is seen alone.

The models of a group share one structure, the template: the largest code (``model.latent_dim``)
of the group. A model with a smaller code is initialised at its own size, exactly as its separate
run is, and then padded with zeros to the template: the padded code units are zero, their weights
in the decoder are zero, and so every padded weight gets exactly zero gradient and zero update
(Adam, AdamW, SGD: a zero gradient moves no moment), so the padded model trains as its unpadded
twin. A Gaussian head's mean and log-variance are padded each in its own block
(``aejax.batching.padding``), and a VAE's code size rides per model (the objective's
``code_size``): its padded units sample no noise (their code stays zero), and its noise is its
separate run's draw. Its optimizer values (``optimizer.lr``, ``grad_clip``, ...) ride in its
optimizer state (``Hyper``), one scalar per model under ``vmap``, and rebuild the job's own
optimizer in each step.

``own(state, i)`` is model ``i`` as its separate run holds it: the padding sliced off, the optimizer
state without the values, on one device (also when the group's models are spread over several,
``parallel.Models``). That is what its checkpoints, its evaluation and its summary see, so a
job's checkpoint is the same file its separate run writes, and it resumes in any group (or alone).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from aejax.batching import padding
from aejax.batching.objective import group_eval_fn, group_train_step
from aejax.training.parallel import whole
from aejax.training.state import TrainState, variables


class Hyper(NamedTuple):
    """A per-model optimizer's state: its scalar values and the state of the optimizer they build."""
    values: dict[str, jax.Array]
    inner: Any


def per_model(build: Callable[[dict[str, jax.Array]], optax.GradientTransformation],
              defaults: dict[str, float]) -> optax.GradientTransformation:
    """An optimizer whose scalar values (``build``'s argument) live in its state, so that under
    ``vmap`` every model has its own; ``init`` stores ``defaults`` (the group sets each model's)."""

    def init(params):
        values = {k: jnp.asarray(v, jnp.float32) for k, v in defaults.items()}
        return Hyper(values, build(values).init(params))

    def update(updates, state, params=None):
        out, inner = build(state.values).update(updates, state.inner, params)
        return out, Hyper(state.values, inner)

    return optax.GradientTransformation(init, update)


def own_state_shapes(make_model: Callable[[jax.Array], nnx.Module], tx: optax.GradientTransformation):
    """The shapes of a separate run's ``TrainState`` (``create_train_state``'s), no arrays made."""
    def build(key):
        params = nnx.state(make_model(key), nnx.Param)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=key)

    return jax.eval_shape(build, jax.random.key(0))


def _state_shapes(model: nnx.Module, tx: optax.GradientTransformation):
    """``own_state_shapes`` of an abstract ``model`` (``nnx.eval_shape``'s): built once, not again."""
    params = nnx.state(model, nnx.Param)
    key = jax.eval_shape(jax.random.key, 0)
    return TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params, opt_state=jax.eval_shape(tx.init, params),
                      rng=key)


@dataclass(frozen=True)
class Members:
    """The models of a group, in job order: each one's seed, model factory, own optimizer (for its
    state's shapes), optimizer values, learning-rate schedule (logged as ``train/lr``), code size
    and config (saved with its checkpoints); ``template`` builds the largest model and ``tx`` is the
    group's per-model optimizer (``per_model``)."""
    seeds: list[int]
    models: list[Callable[[jax.Array], nnx.Module]]
    txs: list[optax.GradientTransformation]
    values: list[dict[str, float]]
    schedules: list[optax.Schedule]
    latent_dims: list[int]
    configs: list[dict]
    template: Callable[[jax.Array], nnx.Module]
    tx: optax.GradientTransformation

    def __post_init__(self):
        shapes, graphdefs, built = {}, {}, {}
        for i, k in enumerate(self.latent_dims):  # one abstract model per code size: its structure and state's shapes
            if k not in shapes:
                built[k] = nnx.eval_shape(lambda i=i: self.models[i](jax.random.key(0)))
                graphdefs[k], shapes[k] = nnx.graphdef(built[k]), _state_shapes(built[k], self.txs[i])
        object.__setattr__(self, "_shapes", shapes)
        object.__setattr__(self, "_graphdefs", graphdefs)
        template = built[max(shapes)] if self.template is self.models[self.latent_dims.index(max(shapes))] \
            else nnx.eval_shape(lambda: self.template(jax.random.key(0)))
        object.__setattr__(self, "_template", (nnx.graphdef(template), nnx.state(template, nnx.Param)))
        object.__setattr__(self, "_blocks", padding.layout(template))  # a Gaussian head's mean and log-variance
        object.__setattr__(self, "_owned", {})  # the compiled cut of every model's own state, its last result

    def graphdef(self, i: int) -> nnx.GraphDef:
        """Model ``i``'s own structure (its code size)."""
        return self._graphdefs[self.latent_dims[i]]

    def init(self, init_key: jax.Array, rng: jax.Array) -> tuple[nnx.GraphDef, TrainState]:
        """The group's state from keys ``[n]``: each model's parameters made at its own size from its
        own key (those of one size vmapped), padded to the template and stacked, with its optimizer
        state and values: all of it one compiled program."""
        graphdef, template = self._template
        sizes = [[i for i, d in enumerate(self.latent_dims) if d == k] for k in self._shapes]

        @jax.jit
        def start(init_key, values, rng):
            params = [None] * len(self.seeds)
            for idx in sizes:
                make = self.models[idx[0]]
                made = jax.vmap(lambda key: nnx.state(make(key), nnx.Param))(init_key[jnp.array(idx)])
                made = padding.fit(padding.pad, made, template, self._blocks)
                for j, i in enumerate(idx):
                    params[i] = jax.tree.map(lambda a: a[j], made)
            stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)
            return jax.vmap(lambda params, values, rng: TrainState(
                step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params)._replace(values=values),
                rng=rng))(stacked, values, rng)

        values = {key: jnp.asarray([v[key] for v in self.values], jnp.float32) for key in self.values[0]}
        return graphdef, start(init_key, values, rng)

    def own(self, state: TrainState, i: int) -> TrainState:
        """Model ``i`` of the stacked ``state`` as its separate run holds it. Every model's is cut at
        once by one compiled program, kept for the next call with the same ``state`` (a checkpoint
        saves each model's in turn; the results read each model's twice)."""
        if self._owned.get("state") is not state:
            if "fn" not in self._owned:  # on one device, also when the group's models are spread over several
                self._owned["fn"] = whole(lambda state: [self._cut_own(state, i) for i in range(len(self.seeds))], state)
            self._owned.update(state=state, out=self._owned["fn"](state))
        return self._owned["out"][i]

    def _cut_own(self, state: TrainState, i: int) -> TrainState:
        shapes = self._shapes[self.latent_dims[i]]
        one = jax.tree.map(lambda a: a[i], state)
        return one.replace(params=padding.fit(padding.cut, one.params, shapes.params, self._blocks),
                           opt_state=padding.fit(padding.cut, one.opt_state.inner, shapes.opt_state, self._blocks))

    def widen(self, own: TrainState, i: int) -> TrainState:
        """The inverse of ``own``: model ``i``'s state padded to the template, its values added."""
        _, template = self._template
        like = jax.eval_shape(self.tx.init, template)
        values = {k: jnp.asarray(v, jnp.float32) for k, v in self.values[i].items()}
        return own.replace(params=padding.fit(padding.pad, own.params, template, self._blocks),
                           opt_state=Hyper(values, padding.fit(padding.pad, own.opt_state, like.inner, self._blocks)))

    def stack(self, states: list[TrainState]) -> TrainState:
        """The group's state from each model's own (restored from its checkpoints)."""
        return jax.tree.map(lambda *a: jnp.stack(a), *(self.widen(s, i) for i, s in enumerate(states)))

    def train_step(self, graphdef: nnx.GraphDef, objective, tx: optax.GradientTransformation):
        """The train step of one model under ``vmap``, with its own objective values."""
        return group_train_step(graphdef, objective, tx)

    def eval_fn(self, graphdef: nnx.GraphDef, objective):
        """The validation program of the group, each model with its own objective values."""
        return group_eval_fn(graphdef, objective)

    @staticmethod
    def eval_inputs(state: TrainState):
        """What ``eval_fn`` takes of the stacked state: the models' variables and values."""
        return variables(state), state.opt_state.values

    def codes(self, params: dict[int, nnx.State], splits: list, errors: list[bool], batch: int) -> dict[int, list[dict]]:
        """The end-of-run evaluation's per-example outputs on ``splits`` (with reconstruction errors
        where ``errors`` says) of the models in ``params`` (model index -> its own variables): those
        of one code size in one vmapped program."""
        from aejax.analysis.evaluate import _per_example

        out = {}
        for k in dict.fromkeys(self.latent_dims[i] for i in params):
            idx = [i for i in params if self.latent_dims[i] == k]
            stacked = jax.tree.map(lambda *a: jnp.stack(a), *(params[i] for i in idx))
            each = _per_example(self.graphdef(idx[0]), stacked, splits, batch, errors, models=len(idx))
            out.update({i: each[j * len(splits):(j + 1) * len(splits)] for j, i in enumerate(idx)})
        return out

    def snapshots(self, recorders: list, params, recon: str):
        return GroupSnapshots(self, recorders, params, recon)

    def narrow_params(self, params, idx: list[int]):
        """The parameters of models ``idx`` (all of one code size), cut to that size."""
        shapes = self._shapes[self.latent_dims[idx[0]]].params
        pick = jnp.array(idx)
        return padding.fit(padding.cut, jax.tree.map(lambda a: a[pick], params), shapes, self._blocks, (len(idx),))


class GroupSnapshots:
    """The group's snapshots: one compiled snapshot program per code size, over that size's models
    cut to it, so each job's snapshot files are its separate run's."""

    def __init__(self, members: Members, recorders: list, params, recon: str):
        from aejax.training.snapshots import Snapshots

        sizes = [[i for i, d in enumerate(members.latent_dims) if d == k] for k in dict.fromkeys(members.latent_dims)]
        # every code size's parameters cut by one compiled program (not one per size, nor eager slices)
        self._narrow = whole(lambda params: [members.narrow_params(params, idx) for idx in sizes], params)
        self.parts = [(idx, Snapshots([recorders[i] for i in idx], members.graphdef(idx[0]), narrow, recon, batched=True))
                      for idx, narrow in zip(sizes, self._narrow(params))]

    def take(self, params, step: int, epoch: float, last: bool = False, runs=None) -> None:
        for (idx, snapshots), narrow in zip(self.parts, self._narrow(params)):
            chosen = None if runs is None else [j for j, i in enumerate(idx) if i in runs]
            if chosen is None or chosen:
                snapshots.take(narrow, step, epoch, last, chosen)
