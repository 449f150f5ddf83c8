"""Training state as a pytree: everything that changes during training, nothing else.

The model's structure (``nnx.GraphDef``) and the optimizer (``optax.GradientTransformation``)
are static and live in the closures of the compiled functions; the state holds arrays only, so
it can be donated, replicated over devices or checkpointed as it is.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: nnx.State
    opt_state: optax.OptState
    rng: jax.Array  # key for the stochastic parts of the objective (noise, sampling)


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, rng: jax.Array) -> tuple[nnx.GraphDef, TrainState]:
    graphdef, params = nnx.split(model, nnx.Param)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng)
    return graphdef, state


def count_params(params: nnx.State) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(params))
