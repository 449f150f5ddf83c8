"""Checkpoints of a run with orbax: ``RUN_DIR/checkpoints/<step>/``, the last ``keep`` kept.

A checkpoint holds the whole ``TrainState`` (parameters, optimizer state, the objective's RNG
key, the step; the position in the data order follows from the step, since each epoch's order
is drawn from the seed and the epoch number) and, as JSON, the host's side of the loop: the
partial logging window, the best validation loss so far, the last validation values.

Orbax writes a step into a temporary folder and renames it when complete, so a process killed
while writing leaves the previous checkpoints intact; a damaged checkpoint (a failed disk, a
truncated copy) is skipped on resume, with a warning, for the one before it.

Orbax itself does not notice changed bytes inside its files (a few garbled bytes restore as other
numbers, and the resumed run silently becomes another one), so every checkpoint also records a
SHA-256 digest of what it holds (``digest`` in its JSON: each array's path, dtype, shape and bytes,
then the host's JSON), and a restored checkpoint whose digest differs is treated as unreadable.

Orbax (~0.15 s to import) is imported, and its manager created, on the first save or read: a
run starts training without it.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
from flax import struct

from aejax.errors import RunError
from aejax.rundir import CHECKPOINTS
from aejax.training.state import TrainState

log = logging.getLogger(__name__)


class CheckpointError(RunError):
    """A checkpoint cannot be written or read; the message says what is kept and what to do."""


def _storable(state: TrainState) -> TrainState:
    return state.replace(rng=jax.random.key_data(state.rng))  # orbax stores plain arrays, not typed keys


@struct.dataclass
class _BeforeExtra:
    """A ``TrainState`` as checkpoints held it before ``extra`` (model state) was added."""
    step: Any
    params: Any
    opt_state: Any
    rng: Any


DIGEST = "digest"  # the key of the digest in a checkpoint's JSON


def _leaf_bytes(leaf: Any) -> Optional[np.ndarray]:
    """A leaf's values on this host; None for an array split over processes (not held here whole)."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        if not leaf.is_fully_replicated:
            return None
        leaf = leaf.addressable_data(0)
    return np.ascontiguousarray(np.asarray(jax.device_get(leaf)))


def digest(state: Any, host: dict[str, Any]) -> Optional[str]:
    """SHA-256 of a stored state (``_storable``) and the host's JSON; None when this process does
    not hold every array whole (then nothing is verified)."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        values = _leaf_bytes(leaf)
        if values is None:
            return None
        h.update(f"{jax.tree_util.keystr(path)}|{values.dtype.str}|{values.shape}|".encode())
        h.update(values.tobytes())
    plain = json.loads(json.dumps({k: v for k, v in host.items() if k != DIGEST}))  # as read back: str keys
    h.update(json.dumps(plain, sort_keys=True).encode())
    return h.hexdigest()


def saved_config(run_dir: Path) -> Optional[tuple[int, dict[str, Any]]]:
    """``(step, config)`` from the newest checkpoint that holds the run's config (``Parts.config``),
    for a resume whose ``config.yaml`` is gone; None when none does. Read without orbax: its JSON
    item is one plain file (``<step>/host/metadata``); restore verifies the checkpoint later."""
    folder = Path(run_dir) / CHECKPOINTS
    steps = sorted((int(p.name) for p in folder.iterdir() if p.name.isdigit()), reverse=True) if folder.is_dir() else []
    for step in steps:
        try:
            host = json.loads((folder / str(step) / "host" / "metadata").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(host, dict) and isinstance(host.get("config"), dict):
            return step, host["config"]
    return None


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

        stored = _storable(state)
        host = {**host, DIGEST: digest(stored, host)}
        args = ocp.args.Composite(state=ocp.args.StandardSave(stored), host=ocp.args.JsonSave(host))
        try:
            self.manager.save(step, args=args, force=True)
            self.manager.wait_until_finished()
        except Exception as e:  # OSError, or tensorstore's ValueError carrying the OS error
            import shutil

            # join orbax's background threads first (not while the interpreter shuts down): one still
            # writing when the partial files are removed makes its folder again
            self.close()
            # free what it took at once; a write of tensorstore's own threads can still land after close
            # (seen on a full tmpfs): removed until the folder stays gone
            quiet = 0
            for _ in range(50):
                partials = list(self.directory.glob(f"{step}.orbax-checkpoint-tmp*"))
                for partial in partials:
                    shutil.rmtree(partial, ignore_errors=True)
                quiet = 0 if partials else quiet + 1
                if quiet == 3:
                    break
                time.sleep(0.02)
            try:
                kept = sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit() and int(p.name) != step)
            except OSError:  # no folder to read (it is a file, or gone)
                kept = []
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
                try:
                    out = self.manager.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                           host=ocp.args.JsonRestore()))
                except ValueError:  # written before TrainState had `extra`: for a model without state, read it so
                    if jax.tree_util.tree_leaves(like.extra):
                        raise
                    older = _BeforeExtra(abstract.step, abstract.params, abstract.opt_state, abstract.rng)
                    out = dict(self.manager.restore(s, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(older), host=ocp.args.JsonRestore())))
                    st = out["state"]
                    out["state"] = TrainState(st.step, st.params, st.opt_state, st.rng, like.extra)
            except Exception as e:  # orbax raises many types for damaged files
                errors.append(f"step {s}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                log.warning("checkpoint of step %d in %s cannot be read (%s); trying the one before",
                            s, self.directory, errors[-1])
                continue
            state, host = out["state"], dict(out["host"])
            recorded = host.pop(DIGEST, None)
            if recorded is not None and recorded != digest(state, host):
                errors.append(f"step {s}: its files changed after it was written (the digest differs)")
                log.warning("checkpoint of step %d in %s is damaged: its files changed after it was written "
                            "(the digest it recorded differs); trying the one before", s, self.directory)
                continue
            if recorded is None:
                log.warning("checkpoint of step %d in %s records no digest (written by an older aejax): "
                            "restored unverified", s, self.directory)
            return s, state.replace(rng=jax.random.wrap_key_data(state.rng)), host
        raise CheckpointError(f"no readable checkpoint in {self.directory}: " + "; ".join(errors)
                              + ". Delete the folder to start afresh.")

    def drop_after(self, step: int) -> None:
        """Delete the checkpoints past ``step``: a run resumed from ``step`` writes them again."""
        for later in self.steps():
            if later > step:
                self.manager.delete(later)

    def close(self) -> None:
        if "manager" in self.__dict__:  # created (cached_property): there is something to close
            try:
                self.manager.close()
            except Exception as e:  # a manager whose last save failed (a full disk) may fail to close too
                log.warning("closing the checkpoints in %s: %s", self.directory, e)
            del self.__dict__["manager"]
