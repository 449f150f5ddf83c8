"""Several processes, one training run (multi-host): ``jax.distributed.initialize`` first.

``distributed.mode``:

- ``auto`` (default): join the other processes when ``distributed.coordinator`` is set, or when
  JAX's cluster detection finds a job of several processes (SLURM tasks, e.g. through the
  submitit launcher; Open MPI; a TPU pod slice); otherwise run as one process.
- ``on``: always join; an error when the processes cannot be found.
- ``off``: one process.

A launch by hand sets ``coordinator`` (process 0's ``HOST:PORT``), ``num_processes`` and
``process_id`` on every process; on a detected cluster JAX finds all three. On CPU the processes
talk through JAX's gloo collectives.

With several processes the mesh of ``trainer.parallel=sharded`` (``auto`` picks it) spans every
process's devices and each process feeds its own columns of every global batch, so the numbers
are those of one process with the same global batch. Every process uses process 0's run
directory; only process 0 writes it (config, metrics, snapshots, summary) and opens the W&B run.
All processes take part in the checkpoints (orbax writes the replicated state once, from process
0), so the run directory must be on a filesystem every process sees.
"""
from __future__ import annotations

import logging
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import jax
import numpy as np
from omegaconf import DictConfig

from aejax.errors import ConfigError, RunError

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
PATH_MAX = 4096  # bytes of a run directory sent from process 0


@dataclass
class DistributedConfig:
    mode: str = "auto"
    coordinator: Optional[str] = None  # HOST:PORT of process 0
    num_processes: Optional[int] = None
    process_id: Optional[int] = None  # 0 .. num_processes - 1
    timeout: int = 300  # seconds to wait for every process to join


def check(cfg: DictConfig) -> None:
    """Validate ``distributed`` before anything starts (no JAX, no network)."""
    if cfg.mode not in MODES:
        raise ConfigError("distributed.mode", f"must be one of {', '.join(MODES)}; got {cfg.mode!r}")
    given = {key: cfg[key] for key in ("coordinator", "num_processes", "process_id") if cfg[key] is not None}
    if given and cfg.mode == "off":
        raise ConfigError("distributed.mode", f"off, but distributed.{next(iter(given))} is set: use "
                                              "distributed.mode=auto to join the processes, or drop it")
    if given and len(given) < 3:
        missing = next(k for k in ("coordinator", "num_processes", "process_id") if k not in given)
        raise ConfigError(f"distributed.{missing}", "coordinator, num_processes and process_id go together: set all "
                                                    "three on every process (e.g. distributed.coordinator=10.0.0.1:1234 "
                                                    "distributed.num_processes=2 distributed.process_id=0), or none "
                                                    "on a cluster JAX detects (SLURM, Open MPI, TPU pods)")
    if cfg.coordinator is not None:
        match = re.fullmatch(r"(.+):(\d+)", str(cfg.coordinator))
        if not match or not 0 < int(match[2]) < 65536:
            raise ConfigError("distributed.coordinator", f"expected HOST:PORT of process 0 (e.g. 10.0.0.1:1234), "
                                                         f"got {cfg.coordinator!r}")
    if cfg.num_processes is not None and cfg.num_processes < 1:
        raise ConfigError("distributed.num_processes", f"must be >= 1, got {cfg.num_processes}")
    if cfg.process_id is not None and not 0 <= cfg.process_id < (cfg.num_processes or 1):
        raise ConfigError("distributed.process_id", f"must be in 0..{cfg.num_processes - 1} "
                                                    f"(distributed.num_processes={cfg.num_processes}), got {cfg.process_id}")
    if cfg.timeout <= 0:
        raise ConfigError("distributed.timeout", f"must be > 0 (seconds), got {cfg.timeout}")


def detected_processes() -> int:
    """The processes of this job as JAX's cluster detection sees them (SLURM, Open MPI, TPU pod
    slices), 1 where it finds none. It is JAX's private API: a change there reads as none."""
    try:
        from jax._src.clusters import ClusterEnv

        env = next((e for e in ClusterEnv._cluster_types if not e.opt_in_only_method and e.is_env_present()), None)
        return int(env.get_process_count()) if env else 1
    except Exception as e:  # noqa: BLE001 - detection must never stop a one-process run
        log.warning("cluster detection failed (%s); running as one process (set distributed.mode=on to join)", e)
        return 1


def wanted(cfg: DictConfig) -> bool:
    if cfg.mode == "off":
        return False
    return cfg.mode == "on" or cfg.coordinator is not None or detected_processes() > 1


def initialize(cfg: DictConfig) -> None:
    """Join the job's processes when configured or detected. Call it before JAX uses a device."""
    if jax.distributed.is_initialized() or not wanted(cfg):  # a multirun's later job: joined already
        return
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices of other processes
    where = cfg.coordinator or "the detected coordinator"
    if cfg.coordinator is not None:
        log.info("process %d of %d: joining through %s (waiting up to distributed.timeout=%d s for all)",
                 cfg.process_id, cfg.num_processes, cfg.coordinator, cfg.timeout)
        if cfg.process_id != 0:
            _wait_for(cfg.coordinator, cfg.timeout)
    try:
        jax.distributed.initialize(cfg.coordinator, cfg.num_processes, cfg.process_id,
                                   initialization_timeout=cfg.timeout)
    except (ValueError, TypeError) as e:
        raise ConfigError("distributed.mode", f"{cfg.mode}: no processes to join ({e}); set distributed.coordinator, "
                                              "num_processes and process_id, or run in a SLURM/Open MPI job or on a "
                                              "TPU pod slice") from None
    except RuntimeError as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"could not join the other processes through {where} within distributed.timeout="
                       f"{cfg.timeout} s ({text}); start every process, with its own distributed.process_id and "
                       f"the same distributed.coordinator") from None
    log.info("process %d of %d; %d devices in all, %d here", jax.process_index(), jax.process_count(),
             jax.device_count(), jax.local_device_count())


def _wait_for(coordinator: str, timeout: float) -> None:
    """Wait until process 0's coordinator accepts connections. JAX aborts the process (SIGABRT)
    when it cannot reach it; this says what to do instead."""
    host, port = coordinator.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise RunError(f"could not join the other processes through {coordinator} within distributed.timeout="
                               f"{timeout} s ({e.strerror or e}): start process 0 (distributed.process_id=0) with "
                               "that distributed.coordinator, its host's address and a free port") from None
            time.sleep(0.5)


def is_writer() -> bool:
    """Process 0 writes the run directory and the W&B run; with one process, that is it."""
    return jax.process_index() == 0


def shared_run_dir(run_dir: Path) -> Path:
    """Process 0's run directory, in every process (each may have resolved its own from
    ``hydra.run.dir``, e.g. another ``${now:...}``): the checkpoints go there from all."""
    if jax.process_count() == 1:
        return run_dir
    from jax.experimental import multihost_utils

    raw = str(Path(run_dir).absolute()).encode()
    if len(raw) > PATH_MAX:
        raise ConfigError("hydra.run.dir", f"longer than {PATH_MAX} bytes: {run_dir}")
    buffer = np.zeros(PATH_MAX, np.uint8)
    buffer[:len(raw)] = np.frombuffer(raw, np.uint8)
    shared = Path(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buffer))).rstrip(b"\0").decode())
    if shared != Path(run_dir).absolute():
        log.info("process %d: process 0's run directory is %s", jax.process_index(), shared)
    return shared
