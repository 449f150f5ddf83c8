"""Data parallelism over a mesh of devices: ``trainer.parallel=auto|none|sharded``.

``sharded`` runs one ``jax.jit`` program over a ``Mesh`` of all devices with the batch split on a
``data`` axis and the state replicated; the compiler inserts the gradient reductions, so the
numbers are one device's with the whole batch. ``auto`` picks it when there is more than one
accelerator; virtual CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``) are a
testing device, used only when asked for with ``trainer.parallel=sharded``.
"""
from __future__ import annotations

from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

CHOICES = ("auto", "none", "sharded")


def data_mesh(parallel: str) -> Optional[Mesh]:
    """The mesh to train on, or None for one device."""
    n = jax.device_count()
    use = parallel == "sharded" or (parallel == "auto" and jax.default_backend() != "cpu")
    return Mesh(np.array(jax.devices()), ("data",)) if use and n > 1 else None


def replicate(tree, mesh: Optional[Mesh]):
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, P()))


def split_batches(tree, mesh: Optional[Mesh], axis: int = 0):
    """Arrays whose dimension ``axis`` is the batch, split over the mesh's devices."""
    if mesh is None:
        return tree
    spec = P(*([None] * axis), "data")
    return jax.device_put(tree, NamedSharding(mesh, spec))


def sharded_step(train_step, mesh: Optional[Mesh]):
    """The train step with its batch constrained to be split over the devices (the memory feed
    gathers batches inside the compiled epoch from a replicated training split)."""
    if mesh is None:
        return train_step
    batch = NamedSharding(mesh, P("data"))

    def step(state, x, w):
        x, w = jax.lax.with_sharding_constraint((x, w), (batch, batch))
        return train_step(state, x, w)

    return step
