"""What the training core takes: built objects and typed settings, never the whole config.

``Parts`` is the contract between whoever builds a run (``aejax.assemble`` from a Hydra config,
or a user in Python) and ``aejax.training.loop.fit``: a model factory, an objective, an optimizer
and its schedule, and the typed ``TrainerConfig`` / ``SnapshotConfig`` settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import jax
import optax
from flax import nnx

from aejax.analysis.snapshot import SnapshotConfig


@dataclass
class TrainerConfig:
    epochs: int = 100
    batch_size: int = 128
    eval_every: int = 1  # epochs
    eval_batch_size: int = 1024
    log_every: int = 0  # steps; 0 logs once per epoch
    # False: the last partial batch of an epoch is kept (padded and masked), so every
    # training example is seen once per epoch, as with PyTorch's DataLoader.
    drop_last: bool = False
    progress: str = "auto"  # auto: a bar only when stderr is a terminal
    # How batches reach the device: memory (the split on the device, one scan per epoch), stream
    # (read with grain, `stream_chunk` batches per transfer), auto (memory when it fits a quarter
    # of the device's memory, 2 GiB on CPU).
    feed: str = "auto"
    stream_chunk: int = 16
    stream_workers: int = 4
    stream_prefetch: int = 4
    # XLA:CPU runs convolutions inside compiled loops ~4x slower: unroll (auto: nets holding XLA
    # convolutions on CPU; the built-in conv layers use matmuls there, encoder/decoder.impl) streams
    # chunks of unroll_steps steps compiled without a loop.
    unroll: str = "auto"
    unroll_steps: int = 4
    # Data parallelism: sharded (one program over all devices, batch split, state replicated),
    # pmap (a copy of the state per device, per-device batches, gradients summed over devices),
    # none, or auto (sharded on more than one GPU/TPU or with several processes; virtual CPU
    # devices only when asked for).
    parallel: str = "auto"
    # A seed batch: N models (seeds seed..seed+N-1, each with its own data order) trained as one
    # compiled program with jax.vmap, each its own run directory (RUN_DIR/seed_<s>) and W&B run.
    num_seeds: int = 1
    # Orbax checkpoints in RUN_DIR/checkpoints every N steps and at the end (0: none), the last
    # checkpoint_keep kept. resume: false, true (this run dir: set hydra.run.dir) or a run dir.
    checkpoint_every: int = 5000
    checkpoint_keep: int = 2
    resume: Any = False
    # A fresh run into a directory that holds a run is refused; true deletes that run's files first.
    overwrite: bool = False


def convolves(model: nnx.Module) -> bool:
    """Whether a network convolves: it says so (a ``convolves`` attribute), or it holds an
    ``nnx.Conv``/``nnx.ConvTranspose``. The CPU unroll (``trainer.unroll=auto``) asks this of the
    built model, so a user's conv net gets it as the built-in one does."""
    for _, node in nnx.iter_graph(model):
        said = getattr(node, "convolves", None)
        if isinstance(said, bool) and not callable(said):
            if said:
                return True
        elif isinstance(node, (nnx.Conv, nnx.ConvTranspose)):
            return True
    return False


@dataclass(frozen=True)
class Parts:
    """A run's parts, built once.

    ``model(key)`` returns a freshly initialised autoencoder (``aejax.models.Autoencoder`` or any
    module with its methods); ``objective(model, x, w, rng, step)`` returns per-example values with
    ``loss`` (``aejax.variants.Objective``); ``schedule`` is the learning rate per step, logged as
    ``train/lr``.
    """
    model: Callable[[jax.Array], nnx.Module]
    objective: Callable[..., dict]
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    seed: int = 0
    label: str = "autoencoder"  # what the progress bar and snapshot titles call the run (the variant)
    convolves: Optional[bool] = None  # None: ask the built model
    config: Optional[dict] = None  # the run's config (plain values), saved with each checkpoint
    # models that differ in more than their seed (a batched sweep's group, aejax.batching.members):
    # their seeds, sizes, optimizer values and own views of the stacked state
    members: Optional[Any] = None

    def seeds(self) -> list[int]:
        """The seed of each model trained: ``seed`` .. ``seed + trainer.num_seeds - 1`` (a group's: its members')."""
        if self.members is not None:
            return list(self.members.seeds)
        return [self.seed + i for i in range(self.trainer.num_seeds)]
