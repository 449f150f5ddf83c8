"""Constraints on parameters, as optax transformations around the run's optimizer.

``unit_norm_rows(tx)``: the parameters of type ``aejax.models.variables.UnitNorm`` (``[units, values]``:
a sparse autoencoder's decoder directions) keep rows of unit L2 norm.
Before ``tx`` sees the gradients, each row's component along its direction is removed (it would
only change the norm); after ``tx``'s update, ``params + update`` is renormalised, so the update
becomes ``normalise(params + update) - params``. The training core is unchanged: the constraint is
part of the optimizer.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from aejax.models.variables import UnitNorm


def normalise_rows(a: jax.Array) -> jax.Array:
    return a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def _is_variable(v) -> bool:
    return isinstance(v, nnx.Variable)


def unit_norm_rows(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` with the rows of the ``UnitNorm`` parameters held at unit norm (the parameters are
    ``nnx.State``s; the gradients and updates keep their variable types)."""

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("unit_norm_rows needs the parameters: call update(grads, state, params)")

        def project(g, p):
            if not isinstance(p, UnitNorm):
                return g
            return g.replace(g[...] - jnp.sum(g[...] * p[...], axis=-1, keepdims=True) * p[...])

        grads = jax.tree.map(project, grads, params, is_leaf=_is_variable)
        updates, state = tx.update(grads, state, params)

        def renormalise(u, p):
            return u.replace(normalise_rows(p[...] + u[...]) - p[...]) if isinstance(p, UnitNorm) else u

        return jax.tree.map(renormalise, updates, params, is_leaf=_is_variable), state

    return optax.GradientTransformation(tx.init, update)


def has_unit_norm(model: nnx.Module) -> bool:
    """Whether a (possibly abstract) model has ``UnitNorm`` parameters."""
    return any(isinstance(v, UnitNorm) for v in jax.tree.leaves(nnx.state(model, nnx.Param), is_leaf=_is_variable))


def constrained(tx: optax.GradientTransformation, model: nnx.Module) -> optax.GradientTransformation:
    """``tx`` with the constraints the model's parameters ask for (none: ``tx`` itself)."""
    return unit_norm_rows(tx) if has_unit_norm(model) else tx
