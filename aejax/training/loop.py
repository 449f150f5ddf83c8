"""The training loop: from a run's parts (``Parts``) and a dataset to a trained state and a summary.

Training runs in segments: a whole epoch as one compiled ``lax.scan``, or a part of one when a
checkpoint falls inside it. After each segment the host gets its per-step metrics (a few
floats), checks them for NaN/Inf, logs rows, evaluates the test split every
``trainer.eval_every`` epochs, takes snapshots and saves a checkpoint every
``trainer.checkpoint_every`` steps. A resumed run restores the state and the host's bookkeeping
from the last checkpoint and continues with the same data order, so its numbers equal an
uninterrupted run's.

A seed batch (``trainer.num_seeds=n``) trains ``n`` models as one compiled program: the state has
a leading axis of models (``jax.vmap``), each with its own initialisation, data order and
objective noise, drawn from its own seed exactly as a separate run would. The device work is
shared; the host keeps one ``SeedRun`` per model (its rows, checkpoints, snapshots, tracker), and a
model whose loss turns NaN/Inf stops being logged while the others go on.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from aejax.analysis.painters import Painters
from aejax.data import Dataset
from aejax.startup import seconds_since_start
from aejax.tracking import Tracker, progress_bar
from aejax.tracking.progress import logs_above
from aejax.training.checkpoint import Checkpoints
from aejax.training.epoch import epoch_key, make_eval_fn, steps_per_epoch
from aejax.training.feed import load_all, plan_feed
from aejax.training.host import FitResult, SeedRun, host_segment, restore, result
from aejax.training.parallel import Models, layout, whole
from aejax.training.parts import Parts, convolves
from aejax.training.preemption import Preempted, StopSignals
from aejax.training.rows import TrainRows
from aejax.training.runners import memory_runner, stream_runner
from aejax.training.snapshots import SnapshotRecorder, Snapshots
from aejax.training.state import count_params, create_train_state, split_seed, variables
from aejax.training.step import make_train_step

log = logging.getLogger(__name__)


def _segment_end(step: int, steps: int, every: int) -> int:
    """Where the segment starting at global ``step`` ends: the epoch's end or the next checkpoint."""
    epoch_end = (step // steps + 1) * steps
    return min(epoch_end, (step // every + 1) * every) if every else epoch_end


def fit(parts: Parts, data: Dataset, tracker: Tracker, run_dir: Optional[Path] = None,
        resume: bool = False) -> FitResult:
    """Train. With ``run_dir``, snapshots and checkpoints are written there; with ``resume``, training
    continues from its last checkpoint (and the trackers are rewound to that step)."""
    return fit_seeds(parts, data, [tracker], [run_dir], resume)[0]


def fit_seeds(parts: Parts, data: Dataset, trackers: list[Tracker], run_dirs: list[Optional[Path]],
              resume: bool = False) -> list[FitResult]:
    """Train one model per tracker: ``trainer.num_seeds`` of them, seeds ``parts.seed + i``, as one
    program; each result equals that of ``fit`` with that seed."""
    trainer, n, seeds = parts.trainer, len(trackers), parts.seeds()
    if n != trainer.num_seeds:
        raise ValueError(f"{n} trackers for trainer.num_seeds={trainer.num_seeds}")
    batched = n > 1
    if batched:  # each model's keys drawn from its own seed, as its separate run draws them
        init_key, order_key, state_key, eval_key = jax.vmap(lambda s: split_seed(s, 4))(jnp.array(seeds))
    else:
        init_key, order_key, state_key, eval_key = split_seed(parts.seed, 4)
    order = jax.vmap(epoch_key, in_axes=(0, None)) if batched else epoch_key
    pick = (lambda tree, i: jax.tree.map(lambda a: a[i], tree)) if batched else (lambda tree, i: tree)
    members = parts.members  # a batched sweep's group (aejax/batching): models that differ in more than the seed
    own = members.own if members else pick  # model i's state as its separate run holds it

    steps = steps_per_epoch(data.num_train, trainer.batch_size, trainer.drop_last)
    total = trainer.epochs * steps
    tx, schedule, objective = parts.optimizer, parts.schedule, parts.objective
    graphdef, state = (members.init(init_key, state_key) if members
                       else create_train_state(parts.model, tx, init_key, state_key))
    model = nnx.eval_shape(lambda: parts.model(jax.random.key(0)))  # the structure (no arrays) the host asks about
    has_conv = parts.convolves if parts.convolves is not None else convolves(model)
    feed, unroll = plan_feed(trainer, data, has_conv=has_conv)
    every = trainer.checkpoint_every if run_dirs[0] is not None else 0
    runs = [SeedRun(s, t, d, TrainRows(trainer.log_every or steps, members.schedules[i] if members else schedule),
                    Checkpoints(d, trainer.checkpoint_keep) if every else None, batched=batched)
            for i, (s, t, d) in enumerate(zip(seeds, trackers, run_dirs))]

    # devices and processes (see parallel.py); a seed batch or a group may spread its models over the devices
    parallel = layout(trainer.parallel, n)
    state = parallel.place(state)
    if batched:  # each model's keys go where the model goes
        order_key, eval_key = parallel.place((order_key, eval_key))
    models = lambda tree: tree  # noqa: E731  (the seed batch's models, for its snapshots)
    if isinstance(parallel, Models) and not members:  # a spread seed batch: what the host reads, whole on one device
        own = whole(lambda tree, i: jax.tree.map(lambda a: a[i], tree), state)
        models = whole(lambda tree: jax.tree.map(lambda a: a[:n], tree), state)  # less the padding's copies
    if isinstance(parallel, Models):
        log.info("the %s's %d models are spread over %d devices, %d on each%s",
                 "group" if members else "seed batch", n, parallel.size,
                 parallel.padded // parallel.size,
                 f" (padded with {parallel.padded - n} copy/copies of the last model, discarded)" if parallel.padded > n else "")
    test_chunks, test_weights = parallel.test_split(data.x_test, trainer.eval_batch_size)
    train_step = parallel.step(members.train_step(graphdef, objective, tx) if members  # each model's own objective
                               else make_train_step(graphdef, objective, tx, axis_name=parallel.axis_name))
    if feed == "memory":
        x_train = parallel.hold(load_all(data))  # before the compile clock starts
    start = time.perf_counter()
    run_segment = (memory_runner(x_train, train_step, trainer, state, order_key, parallel, batched) if feed == "memory"
                   else stream_runner(data, train_step, trainer, state, order_key, unroll, parallel))
    eval_inputs = members.eval_inputs if members else variables
    evaluate = (members.eval_fn(graphdef, objective) if members else make_eval_fn(graphdef, objective, batched)).lower(
        eval_inputs(state), test_chunks, test_weights, eval_key).compile()
    snapshots, painters = None, None
    if run_dirs[0] is not None and parts.snapshot.every > 0 and jax.process_index() == 0:
        painters = Painters(len(runs))  # the runs of this program share painters; their figures drawn in parallel
        for i, run in enumerate(runs):
            run.snapshots = SnapshotRecorder(parts.snapshot, data, run.run_dir, run.tracker, seed=run.seed,
                                             label=parts.label,
                                             latent_dim=members.latent_dims[i] if members else model.latent_dim,
                                             vae=getattr(model, "head", None) == "gaussian", painters=painters)
        recon = getattr(objective, "recon", "mse")
        snapshots = (members.snapshots([run.snapshots for run in runs], state.params, recon) if members
                     else Snapshots([run.snapshots for run in runs], graphdef, models(variables(state)), recon, batched))
    compile_s = time.perf_counter() - start

    def validation(params) -> list[dict[str, float]]:
        values = jax.device_get(evaluate(params, test_chunks, test_weights, eval_key))
        return [{f"val/{name}": float(v[i] if batched else v) for name, v in values.items()} for i in range(n)]

    def alive() -> list[int]:
        return [i for i, run in enumerate(runs) if run.diverged_at is None]

    step = 0
    if resume:
        damaged = [at for run in runs if run.snapshots for at in run.snapshots.damaged()]
        step, state = restore(runs, state, own, before=min(damaged) if damaged else None,
                              stack=members.stack if members else None)
        if batched:  # a program's models come back from their checkpoints on one device; a run's where it was
            state = parallel.place(state)
        for run in runs:
            run.tracker.rewind(step)
            if run.snapshots:
                run.snapshots.resume(step)
        log.info("resuming %s from the checkpoint of step %d (epoch %.4g)",
                 ", ".join(str(run.run_dir) for run in runs), step, step / steps)
    else:
        for run, val in zip(runs, validation(eval_inputs(state))):
            run.host["val"], run.host["best"] = val, val["val/loss"]
            run.tracker.log({"step": 0, "epoch": 0, **val})
        if snapshots:
            snapshots.take(models(variables(state)), 0, 0)
    for run in runs:
        if run.snapshots:
            run.snapshots.start()

    def flush(which, wait: bool = False) -> None:
        """The pending snapshots of runs ``which``: their files, then their figures (drawn together,
        in figure processes while this one goes on; ``wait``: all of them drawn, this process
        drawing its share, and logged on return)."""
        for i in which:
            if runs[i].snapshots:
                runs[i].snapshots.flush()
        if painters:
            painters.draw() if wait else painters.start()

    def save(at: int) -> None:
        flush(alive(), wait=True)  # the snapshot files and figures up to this step belong with the checkpoint
        for i in alive():
            config = members.configs[i] if members else parts.config
            run = runs[i]
            host = {"loop": run.host, "rows": run.rows.state(), "epoch": at / steps}
            if config is not None:  # a resume whose config.yaml is gone reads it here
                host["config"] = config
            run.checkpoints.save(at, own(state, i), host)

    report_every = max(1, trainer.epochs // 10)
    label = f"{parts.label} z={model.latent_dim}" + (f" x{n} seeds" if batched else "")
    start, first = time.perf_counter(), step
    first_step_s = seconds_since_start()
    log.info("first training step %.2f s after the process started (compiling took %.2f s)", first_step_s, compile_s)
    bar = progress_bar(trainer.epochs, trainer.progress, label)  # after that line: it would land inside the bar
    bar.update(step // steps)
    with bar, logs_above(bar), StopSignals() as stop:
        while step < total and alive():
            epoch, lo = step // steps + 1, step % steps
            end = _segment_end(step, steps, every)
            state, metrics = run_segment(state, order(order_key, epoch), lo, lo + end - step)
            flush(alive())  # the previous snapshot's files and figures while the device trains
            metrics = jax.device_get(metrics)
            vals = validation(eval_inputs(state)) if end % steps == 0 and (
                epoch % trainer.eval_every == 0 or epoch == trainer.epochs) else None
            for i in alive():
                host_segment(runs[i], pick(metrics, i), vals and vals[i], step, end, steps, total, epoch)
            step = end
            if end % steps == 0:
                if snapshots and runs[0].snapshots.due(epoch, trainer.epochs) and alive():
                    snapshots.take(models(variables(state)), end, epoch, last=epoch == trainer.epochs, runs=alive())
                host = runs[(alive() or [0])[0]].host
                val_loss = host["val"].get("val/loss", math.nan)
                bar.set_postfix({"train/loss": f"{host['train_loss']:.4g}", "val/loss": f"{val_loss:.4g}"}, refresh=False)
                bar.update()
                if bar.disable and (epoch % report_every == 0 or epoch == trainer.epochs):
                    for i in alive():
                        log.info("epoch %d/%d  train/loss %.5f  val/loss %.5f%s", epoch, trainer.epochs,
                                 runs[i].host["train_loss"], runs[i].host["val"].get("val/loss", math.nan),
                                 f"  (seed {runs[i].seed})" if batched else "")
            requested = stop.agreed()  # the same answer in every process
            if every and (step % every == 0 or step == total or requested):
                save(step)
            if requested:
                flush(range(len(runs)), wait=True)
                where = runs[0].checkpoints.directory if every else None
                if batched and where is not None:
                    where = where.parent.parent
                raise Preempted(requested, step, str(where) if where else None)
    jax.block_until_ready(state)
    train_s = time.perf_counter() - start
    for run in runs:
        if run.snapshots:  # the last snapshot, the evolution figure, the explorer page: after training
            run.snapshots.finish(step if run.stopped_at is None else run.stopped_at)
    if painters:  # drawn while the runs are evaluated; their trackers wait for them as they finish
        painters.start(every_core=True)
    for run in runs:
        if run.checkpoints:
            run.checkpoints.close()

    trained = step - first
    shared = {
        "epochs": trainer.epochs,
        "feed": feed + (" (unrolled)" if unroll else ""),
        "devices": parallel.size,
        "compile_time_s": round(compile_s, 3),
        "first_step_s": round(first_step_s, 3),  # from the process's start (aejax.startup)
        "train_time_s": round(train_s, 3),
        "examples_per_s": round(trained / steps * data.num_train / train_s, 1) if trained else 0.0,
    }
    if resume:
        shared["resumed_from_step"] = first
    if members:
        shared["batched_group"] = n  # models trained together (aejax_batched); examples_per_s is per model
    elif batched:
        shared["seed_batch"] = n  # models trained together; examples_per_s is per model
    if isinstance(parallel, Models):  # spread over `devices`, this many on each (with the padding's copies)
        shared["models_per_device"] = parallel.padded // parallel.size
    return [result(run, members.graphdef(i) if members else graphdef, own(state, i),
                   {"num_params": count_params(own(state, i).params), **shared}, step) for i, run in enumerate(runs)]


