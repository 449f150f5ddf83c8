"""The train step: a pure function ``(state, x, w) -> (state, metrics)``.

``w`` weights each example (1 for real examples, 0 for the padding of a last partial batch),
and every reported value is a weighted mean over the *global* batch. With ``axis_name`` set,
the step runs per device under ``jax.pmap`` (or ``shard_map``): the per-device gradients of
``sum(w * loss) / global_count`` are summed over the axis, which is the gradient of the global
batch mean, the same numbers as one device with the whole batch. Under ``jax.jit`` with a
sharded batch, leave ``axis_name`` as None: the compiler inserts the reductions.

A model with state (``TrainState.extra``) updates it in its forward pass in training; the step
returns the updated state with the parameters. Under ``jax.jit`` the forward pass sees the global
batch, so the update is that of one device; per-device updates (pmap) are refused.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from aejax.training.state import TrainState

# objective(model, x, w, rng, step) -> per-example values; step is None in evaluation
Objective = Callable[..., dict[str, jax.Array]]


def weighted_sums(graphdef: nnx.GraphDef, objective: Objective, params: nnx.State, x: jax.Array,
                  w: jax.Array, rng: jax.Array, step: jax.Array | None) -> dict[str, jax.Array]:
    """Sum over the batch of each per-example term, weighted by ``w``."""
    return _sums(objective, nnx.merge(graphdef, params), x, w, rng, step)


def _sums(objective: Objective, model: nnx.Module, x: jax.Array, w: jax.Array, rng: jax.Array,
          step: jax.Array | None) -> dict[str, jax.Array]:
    terms = objective(model, x, w, rng, step)
    return {name: jnp.sum(values * w) for name, values in terms.items()}


def make_train_step(graphdef: nnx.GraphDef, objective: Objective, tx: optax.GradientTransformation,
                    axis_name: str | None = None):
    def loss_fn(params, extra, x, w, rng, step, count):
        model = nnx.merge(graphdef, params, extra, copy=True)  # a copy: its state may change in the pass
        sums = _sums(objective, model, x, w, rng, step)
        return sums["loss"] / count, (sums, nnx.state(model, nnx.Not(nnx.Param)))

    def train_step(state: TrainState, x: jax.Array, w: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        rng, step_rng = jax.random.split(state.rng)
        count = jnp.sum(w)
        if axis_name is not None:
            step_rng = jax.random.fold_in(step_rng, jax.lax.axis_index(axis_name))
            count = jax.lax.psum(count, axis_name)
        if axis_name is not None and jax.tree_util.tree_leaves(state.extra):
            raise ValueError("a model with state (non-Param variables) cannot train under pmap: each device "
                             "would update its own copy; use trainer.parallel=sharded or none")
        grads, (sums, extra) = jax.grad(loss_fn, has_aux=True)(state.params, state.extra, x, w, step_rng,
                                                               state.step, count)
        if axis_name is not None:
            grads, sums = jax.lax.psum((grads, sums), axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {name: total / count for name, total in sums.items()}
        metrics["count"] = count
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, rng=rng,
                                  extra=extra)
        return new_state, metrics

    return train_step
