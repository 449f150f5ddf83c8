"""Training state as a pytree: everything that changes during training, nothing else.

The model's structure (``nnx.GraphDef``) and the optimizer (``optax.GradientTransformation``)
are static and live in the closures of the compiled functions; the state holds arrays only, so
it can be donated, replicated over devices or checkpointed as it is.

``extra`` is the model's state that is not trained by gradients: every ``nnx.Variable`` of the
model that is not an ``nnx.Param`` (a sparse autoencoder's dead-latent counters, a VQ codebook's
EMA statistics, a BatchNorm's running means). The forward pass in training updates it (nnx style);
it is merged with the parameters wherever the model runs (``variables``) and saved, vmapped and
placed with the rest of the state. For most models it is empty.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

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
    extra: nnx.State = struct.field(default_factory=lambda: nnx.State({}))  # non-Param variables


def variables(state: TrainState) -> nnx.State:
    """Everything ``nnx.merge(graphdef, ...)`` needs to run the model: the parameters, and the
    model state (``extra``) when there is any."""
    return nnx.merge_state(state.params, state.extra) if jax.tree_util.tree_leaves(state.extra) else state.params


def has_model_state(model: nnx.Module) -> bool:
    """Whether a (possibly abstract) model holds variables that are not parameters."""
    return bool(jax.tree_util.tree_leaves(nnx.state(model, nnx.Not(nnx.Param))))


def create_train_state(make_model: Callable[[jax.Array], nnx.Module], tx: optax.GradientTransformation,
                       init_key: jax.Array, rng: jax.Array) -> tuple[nnx.GraphDef, TrainState]:
    """Initialise the model and optimizer in one compiled program.

    Built eagerly, every initializer of every layer would be compiled on its own (seconds on a
    CPU); traced once under ``jax.jit``, the whole initial state is one small program. With keys
    of shape ``[n]`` (a seed batch), the states of ``n`` models are built at once, stacked on a
    leading axis; model ``i`` equals the one built from the keys ``init_key[i], rng[i]`` alone.
    """
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: make_model(init_key[0] if init_key.ndim else init_key)))

    @jax.jit
    def init(init_key, rng):
        _, params, extra = nnx.split(make_model(init_key), nnx.Param, ...)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng,
                          extra=extra)

    return graphdef, (jax.vmap(init) if init_key.ndim else init)(init_key, rng)


@partial(jax.jit, static_argnums=1)
def split_seed(seed: int | jax.Array, num: int) -> tuple[jax.Array, ...]:
    """``jax.random.split(jax.random.key(seed), num)`` as ``num`` keys, in one compiled program (run
    eagerly, making, splitting and unpacking the keys compile a small program each)."""
    return tuple(jax.random.split(jax.random.key(seed), num))


def count_params(params: nnx.State) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(params))
