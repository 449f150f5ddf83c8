"""Checkpoints of a run with orbax: ``RUN_DIR/checkpoints/<step>/``, the last ``keep`` kept.

A checkpoint holds the whole ``TrainState`` (parameters, optimizer state, the objective's RNG
key, the step; the position in the data order follows from the step, since each epoch's order
is drawn from the seed and the epoch number) and, as JSON, the host's side of the loop: the
partial logging window, the best validation loss so far, the last validation values.

Orbax writes a step into a temporary folder and renames it when complete, so a process killed
while writing leaves the previous checkpoints intact; a damaged checkpoint (a failed disk, a
truncated copy) is skipped on resume, with a warning, for the one before it.

Orbax (~0.15 s to import) is imported, and its manager created, on the first save or read: a
run starts training without it.
"""
from __future__ import annotations

import errno
import logging
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import jax

from aejax.errors import RunError
from aejax.rundir import CHECKPOINTS
from aejax.training.state import TrainState

log = logging.getLogger(__name__)


class CheckpointError(RunError):
    """A checkpoint cannot be written or read; the message says what is kept and what to do."""


def _storable(state: TrainState) -> TrainState:
    return state.replace(rng=jax.random.key_data(state.rng))  # orbax stores plain arrays, not typed keys


class Checkpoints:
    def __init__(self, run_dir: Path, keep: int):
        self.directory = Path(run_dir).absolute() / CHECKPOINTS
        self.keep = keep

    @cached_property
    def manager(self):
        """Orbax's manager of the directory; creating it removes what an interrupted write left."""
        import orbax.checkpoint as ocp

        options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True)
        return ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps(read=True))

    def save(self, step: int, state: TrainState, host: dict[str, Any]) -> None:
        import orbax.checkpoint as ocp

        args = ocp.args.Composite(state=ocp.args.StandardSave(_storable(state)), host=ocp.args.JsonSave(host))
        try:
            self.manager.save(step, args=args, force=True)
            self.manager.wait_until_finished()
        except Exception as e:  # OSError, or tensorstore's ValueError carrying the OS error
            kept = [s for s in self.steps() if s != step]
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            full = getattr(e, "errno", None) == errno.ENOSPC or "os_error_code='28'" in str(e) or "No space left" in str(e)
            raise CheckpointError(
                f"could not write the checkpoint of step {step} to {self.directory} "
                f"({'the disk is full: ' if full else ''}{text}); "
                + (f"the checkpoint of step {kept[-1]} is intact: free space and resume with "
                   f"trainer.resume=true" if kept else "no earlier checkpoint exists")) from e

    def restore(self, like: TrainState, step: Optional[int] = None) -> tuple[int, TrainState, dict[str, Any]]:
        """The latest readable checkpoint (or ``step``) into the structure of ``like``."""
        import orbax.checkpoint as ocp

        steps = [step] if step is not None else self.steps()[::-1]
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory} to resume from")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _storable(like))
        errors = []
        for s in steps:
            try:
                out = self.manager.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                       host=ocp.args.JsonRestore()))
            except Exception as e:  # orbax raises many types for damaged files
                errors.append(f"step {s}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                log.warning("checkpoint of step %d in %s cannot be read (%s); trying the one before",
                            s, self.directory, errors[-1])
                continue
            state = out["state"]
            return s, state.replace(rng=jax.random.wrap_key_data(state.rng)), dict(out["host"])
        raise CheckpointError(f"no readable checkpoint in {self.directory}: " + "; ".join(errors)
                              + ". Delete the folder to start afresh.")

    def drop_after(self, step: int) -> None:
        """Delete the checkpoints past ``step``: a run resumed from ``step`` writes them again."""
        for later in self.steps():
            if later > step:
                self.manager.delete(later)

    def close(self) -> None:
        if "manager" in self.__dict__:  # created (cached_property): there is something to close
            self.manager.close()
