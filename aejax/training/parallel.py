"""Data parallelism: ``trainer.parallel=auto|none|sharded|pmap``, in one process or several.

- ``sharded`` runs one ``jax.jit`` program over a ``Mesh`` of all devices with the batch split on
  a ``data`` axis and the state replicated; the compiler inserts the gradient reductions.
- ``pmap`` runs the train step on each device under ``jax.pmap``, on its own copy of the state and
  its slice of every global batch; the step sums the per-device gradients over the ``data`` axis
  (``step.py`` says why that is the gradient of the global batch mean). Between segments (an
  epoch, or up to a checkpoint) the loop holds the first copy, as with one device: evaluation,
  snapshots and checkpoints see one device's state, and each segment copies it out again.
- a batched sweep's group (``aejax.batching``) under ``sharded`` spreads its models instead
  (``Models``): the stacked state's leading axis is split on a ``models`` axis, each device
  trains its own models on whole batches, and no gradient crosses devices.
- ``auto`` picks ``sharded`` when there is more than one accelerator, or several processes;
  virtual CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``) are a testing
  device, used only when asked for.

Both give the numbers of one device with the whole batch (the noise of stochastic variants
aside: under ``pmap`` each device draws its own). With several processes (multi-host, see
``aejax.distributed``) the mesh spans every process's devices, ordered by process, and each
process places its own columns of every global batch.

A ``Layout`` is what the loop and the runners ask: where the state and the data go, how a
segment's function is compiled, and how its results come back.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aejax.training.epoch import pad_to_chunks

CHOICES = ("auto", "none", "sharded", "pmap")
AXIS = "data"
MODELS = "models"


def data_mesh(parallel: str) -> Optional[Mesh]:
    """The mesh of ``sharded`` (and ``auto`` where it applies), or None."""
    use = parallel == "sharded" or (parallel == "auto" and (jax.default_backend() != "cpu" or jax.process_count() > 1))
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))  # each process a block of the batch
    return Mesh(np.array(devices), (AXIS,)) if use and len(devices) > 1 else None


def replicate(tree, mesh: Optional[Mesh]):
    """The same value on every device of the mesh (every process passes the same value)."""
    if mesh is None:
        return tree
    if jax.process_count() > 1:  # device_put refuses typed keys for other processes' devices
        return multihost_utils.host_local_array_to_global_array(tree, mesh, P())
    return jax.device_put(tree, NamedSharding(mesh, P()))


def split_batches(tree, mesh: Optional[Mesh], axis: int = 0):
    """Arrays whose dimension ``axis`` is the batch, split over the mesh's devices (the same
    whole arrays in every process: the test split)."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, P(*([None] * axis), AXIS)))


def split_local(tree, mesh: Optional[Mesh], axis: int = 0):
    """This process's columns of global batches (dimension ``axis``), as parts of global arrays."""
    if mesh is None:
        return jax.device_put(tree)
    if jax.process_count() == 1:
        return split_batches(tree, mesh, axis)
    return multihost_utils.host_local_array_to_global_array(tree, mesh, P(*([None] * axis), AXIS))


def sharded_step(train_step, mesh: Optional[Mesh]):
    """The train step with its batch constrained to be split over the devices (the memory feed
    gathers batches inside the compiled epoch from a replicated training split)."""
    if mesh is None:
        return train_step
    batch = NamedSharding(mesh, P(AXIS))

    def step(state, x, w):
        x, w = jax.lax.with_sharding_constraint((x, w), (batch, batch))
        return train_step(state, x, w)

    return step


def first_replica(tree):
    """One device's copy of replicated arrays (no transfer): host-side work (snapshots, the
    end-of-run evaluation) runs on this process's first device, with no other process involved."""
    return jax.tree.map(lambda a: a.addressable_data(0), tree)


def whole(fn, like):
    """``fn`` compiled so that its results are whole on one device when ``like``'s arrays are
    spread over a mesh (``Models``): replicated over it, then the first device's copy; else plain
    ``jax.jit``. What cuts each model's own state out of a spread group (checkpoints, snapshots,
    evaluation) uses it, so that host-side work sees one device's arrays, as in a separate run."""
    sharding = jax.tree.leaves(like)[0].sharding
    if not isinstance(sharding, NamedSharding) or sharding.is_fully_replicated:
        return jax.jit(fn)
    compiled = jax.jit(fn, out_shardings=NamedSharding(sharding.mesh, P()))
    return lambda *args: first_replica(compiled(*args))


class Layout:
    """One device: ``trainer.parallel=none``, or ``auto`` with one accelerator."""

    name = "none"
    size = 1  # devices a global batch is split over (Models: the devices its models are spread over)
    axis_name: Optional[str] = None  # the train step's device axis (pmap)
    columns: Optional[Callable] = None  # pmap: a device's columns of the epoch's [steps, batch] order

    def place(self, tree):
        """The state as the loop holds it between segments."""
        return tree

    def test_split(self, x: np.ndarray, chunk: int):
        """The test split as ``pad_to_chunks``'s ``(chunks, weights)``, where evaluation runs
        (one device, but for ``sharded``)."""
        return pad_to_chunks(x, chunk)

    def hold(self, x: np.ndarray):
        """The training split of the memory feed, on the device(s)."""
        return jax.device_put(x)

    def put_batches(self, tree):
        """Chunks of batches, ``[k, batch, ...]`` (this process's columns), on the device(s)."""
        return jax.device_put(tree)

    def step(self, train_step):
        return train_step

    def compile(self, fn, in_axes: tuple):
        """A segment's function (``state`` first, donated); ``in_axes`` says which arguments
        hold one value per device under pmap (0) and which are shared (None)."""
        return jax.jit(fn, donate_argnums=0)

    def spread(self, state):
        """The loop's state as a segment's function takes it."""
        return state

    def gather(self, tree):
        """A segment's state or metrics as the loop takes them."""
        return tree

    def spread_shapes(self, state):
        """The shapes and placements of ``spread(state)``, to compile with (no copies kept)."""
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), self.spread(state))


class Sharded(Layout):
    """``trainer.parallel=sharded``: one program over the mesh, the batch split, the state replicated."""

    name = "sharded"

    def __init__(self, mesh: Mesh):
        self.mesh, self.size = mesh, mesh.size

    def place(self, tree):
        return replicate(tree, self.mesh)

    def test_split(self, x, chunk):
        return split_batches(pad_to_chunks(x, chunk, self.size), self.mesh, axis=1)

    def hold(self, x):
        return replicate(x, self.mesh)

    def put_batches(self, tree):
        return split_local(tree, self.mesh, axis=1)

    def step(self, train_step):
        return sharded_step(train_step, self.mesh)


class Replicas(Layout):
    """``trainer.parallel=pmap``: a copy of the state on each device of this process, each device
    its slice of every global batch, the gradients summed over the ``data`` axis."""

    name = "pmap"
    axis_name = AXIS

    def __init__(self, devices: list):
        self.devices, self.size = devices, len(devices)
        mesh = Mesh(np.array(devices), (AXIS,))
        self.stacked, self._everywhere = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
        n = self.size
        self._stack = jax.jit(lambda tree: jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), tree),
                              out_shardings=self.stacked)

    def _copies(self, tree):
        """``[devices, ...]``: a copy on each device (sent to all, then stacked where it is)."""
        return self._stack(jax.device_put(tree, self._everywhere))

    def columns(self, a: jax.Array) -> jax.Array:
        """Inside the pmapped epoch: this device's columns of ``[steps, batch]`` indices or
        weights, so that the devices together see each global batch in one device's order."""
        per = a.shape[1] // self.size
        return jax.lax.dynamic_slice_in_dim(a, jax.lax.axis_index(AXIS) * per, per, axis=1)

    def hold(self, x):
        return self._copies(x)  # every device holds the whole split and gathers its columns

    def put_batches(self, tree):
        n = self.size

        def per_device(a):  # [k, batch, ...] -> [devices, k, batch / devices, ...]
            return np.swapaxes(a.reshape(a.shape[0], n, a.shape[1] // n, *a.shape[2:]), 0, 1)

        return jax.device_put(jax.tree.map(per_device, tree), self.stacked)

    def compile(self, fn, in_axes: tuple):
        return jax.pmap(fn, AXIS, in_axes=in_axes, donate_argnums=0, devices=self.devices)

    def spread(self, state):
        return self._copies(state)

    def gather(self, tree):
        return jax.tree.map(lambda a: a.addressable_data(0)[0], tree)  # the replicas are equal


class Models(Layout):
    """A batched sweep's group of ``n`` models under ``sharded``: the stacked state (and every
    array with a leading models axis: the keys) split on a ``models`` mesh axis, the training and
    test splits replicated, so each device trains and validates its own models on whole batches;
    the per-step metrics come back ``[models, steps]`` as on one device.

    ``per = ceil(n / d)`` models on each of the fewest of the ``d`` devices that hold them all
    (``ceil(n / per)``); where those do not divide ``n`` evenly, the last device's missing models
    are copies of the last model (trained, never read), fewer than ``per`` of them: 12 models on 8
    devices use 6 devices, 2 each; 9 use 5, with one copy; 3 on 2 use 2, with one copy. No
    device holds more models than the least possible, and no device holds copies alone."""

    name = "sharded"

    def __init__(self, n: int, devices: list):
        per = -(-n // len(devices))
        self.size = -(-n // per)  # devices used
        self.models, self.padded = n, per * self.size
        self.mesh = Mesh(np.array(devices[:self.size]), (MODELS,))
        self.sharding = NamedSharding(self.mesh, P(MODELS))

        def pad(a):
            return a if a.shape[0] == self.padded else jnp.concatenate([a, *[a[-1:]] * (self.padded - a.shape[0])])

        self._spread = jax.jit(lambda tree: jax.tree.map(pad, tree), out_shardings=self.sharding)

    def place(self, tree):
        """The ``n`` models' arrays padded to ``padded`` and split over the devices (from wherever they
        are: a fresh group's, or each model's restored from its checkpoints onto one device)."""
        return self._spread(replicate(tree, self.mesh))

    def test_split(self, x, chunk):
        return replicate(pad_to_chunks(x, chunk), self.mesh)

    def hold(self, x):
        return replicate(x, self.mesh)

    def compile(self, fn, in_axes: tuple):
        # the state and the metrics (both with the models axis first) stay split as the state came in
        return jax.jit(fn, donate_argnums=0, out_shardings=(self.sharding, self.sharding))


ONE_DEVICE = Layout()


def layout(parallel: str, models: int = 1) -> Layout:
    """The layout for ``trainer.parallel`` on this machine (cheap: nothing is compiled); ``models``:
    the size of a batched sweep's group, spread over the mesh's devices (``Models``)."""
    if models > 1:
        mesh = data_mesh(parallel)
        return ONE_DEVICE if mesh is None else Models(models, list(mesh.devices.flat))
    if parallel == "pmap":
        devices = jax.local_devices()
        return Replicas(devices) if len(devices) > 1 else ONE_DEVICE
    mesh = data_mesh(parallel)
    return ONE_DEVICE if mesh is None else Sharded(mesh)
