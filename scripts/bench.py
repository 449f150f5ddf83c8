"""Benchmark aejax's training speed against this machine's matmul limit and PyTorch.

Every measured configuration runs in its own fresh process (so peak memory and the time from
process start to the first training step are its own). Processes that are compared with each
other run *side by side*: each is started and compiled in turn, then the parent lets them train
one epoch at a time, in rotating order, while the others wait idle. A shared, noisy machine then
slows all of them alike and the ratios stay meaningful; medians and spreads are over the rounds.

What is measured:

- ``limit``: this machine's matmul throughput at the model's own shapes: the forward and backward
  matmuls of one training step of the bowtie MLP (``[B,784]x[784,128]``, ..., their transposes for
  the gradients), each jitted in a loop, best of 3 per round. ``B / (sum of their times)`` is the
  examples/s a step made of nothing but those matmuls would reach.
- ``aejax``: the real training path, ``aejax.training.loop.fit`` with a tracker that holds each
  epoch until the parent releases it (no W&B, no snapshots, no evaluation until the last epoch).
  Per epoch examples/s (median over rounds, after a warm-up epoch), compile time (fit's own clock),
  time from process start to the first training step, peak host memory (``ru_maxrss``).
- ``torch``: the same model (optional extra ``pip install -e ".[bench]"``): an idiomatic loop
  (DataLoader, ``nn.Module``, default ``torch.optim.Adam``) and a tuned one (pre-shuffled tensor
  slicing, ``Adam(fused=True)``, ``torch.compile``).
- ``conv``: the default conv autoencoder (``encoder=conv decoder=conv``: 4x4 stride-2 convs
  1->32->64, code 2, mirrored with transposed convs, MSE, Adam 1e-3) through ``fit``, beside a
  PyTorch twin (the same layers as ``nn.Conv2d``/``nn.ConvTranspose2d``, DataLoader, default
  ``torch.optim.Adam``, 2 threads), optionally aejax with XLA's convolutions
  (``encoder.impl=xla decoder.impl=xla``, ``--conv-xla``) and aejax in unrolled chunks instead of
  one scan per epoch (``--conv-unrolled``), the twin on one thread (``--conv-one-thread``); the
  load average after each epoch.
- ``proto``: prototypes of changes to aejax's step and epoch (see ``PROTOTYPES``), built from
  aejax's own model, objective and train step, side by side with the unchanged epoch function.
- ``startup``: ``python -m aejax`` as a user runs it (the bowtie, one epoch): ``first_step_s`` of
  its summary, seconds from the process's start to the first training step, with a warm, a cold
  and no persistent compilation cache, W&B on and off, and a dataset not yet decoded.

Besides examples/s of wall time, every epoch reports examples per second of the process's CPU time
(all its threads): on a machine shared with other sessions, where a process may get one core or
two, that one-core figure moves much less. The 8-device rows run with 8 virtual CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``) and ``trainer.parallel=sharded`` and
``pmap``; a mode the config does not offer (or an aejax without ``trainer.parallel``) is skipped
with the reason.

Usage (the full run takes ~40 minutes on the shared 2-core machine):

    python scripts/bench.py                          # everything below
    python scripts/bench.py --only target            # bowtie, batch 256: aejax vs limit vs PyTorch
    python scripts/bench.py --only target --baseline ../main   # ... and another checkout's aejax beside it
    python scripts/bench.py --only table             # bowtie and conv, batch 128/256/1024, 1 and 8 devices
    python scripts/bench.py --only conv              # conv AE: aejax vs its PyTorch twin (--conv-xla: + XLA convs)
    python scripts/bench.py --only proto             # prototypes of step/epoch changes, side by side
    python scripts/bench.py --only precision         # model.dtype=bfloat16 against float32
    python scripts/bench.py --only profile           # where one bowtie step's time goes (XLA trace)
    python scripts/bench.py --only startup           # python -m aejax: process start to first step, with/without caches
    python scripts/bench.py --quick                  # a smoke run: few rounds, small data
    python scripts/bench.py --synthetic              # random data of Fashion-MNIST's shape
    python scripts/bench.py --json results.json      # also write every figure as JSON

Data: Fashion-MNIST through aejax's own loader (``--data-dir``, default ``/tmp/tfds_e2e`` when it
exists, else TFDS's default); ``--synthetic`` uses uniform random data of the same shape instead.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

PROTOCOL = "@@bench "
WIDTHS = (784, 128, 32, 2, 32, 128, 784)  # the bowtie MLP, input to output
MODELS = {
    "bowtie": ["encoder=mlp", "decoder=mlp", "encoder.hidden=[128,32]", "decoder.hidden=[32,128]"],
    "conv": ["encoder=conv", "decoder=conv"],
}
# Prototypes of changes to step.py / epoch.py / losses / models, each a set of switches of
# ``_proto_epoch`` (documented there); "aejax" is the unchanged make_epoch_fn of the memory feed.
# (The loss on flat views, the first prototype to measure faster, is aejax's own since issue 7.)
PROTOTYPES = {
    "aejax": {},
    "tanh_sigmoid": {"tanh_sigmoid": True},
    "flat_data": {"flat_data": True},
    "flat_data+gather_promise_in_bounds": {"flat_data": True, "gather": "promise_in_bounds"},
    "gather_clip": {"gather": "clip"},
    "gather_promise_in_bounds": {"gather": "promise_in_bounds"},
    "flat_adam": {"flat_adam": True},
    "concurrency_scheduler": {"compiler_options": {"xla_cpu_enable_concurrency_optimized_scheduler": True}},
    "ynn_eltwise_reduce": {"compiler_options": {"xla_cpu_experimental_ynn_fusion_type":
                           "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_ELTWISE,"
                           "LIBRARY_FUSION_TYPE_REDUCE"}},
    "no_ynn": {"compiler_options": {"xla_cpu_experimental_ynn_fusion_type": ""}},
    "no_shuffle (bound)": {"gather": "none"},
    "gather_prefetch": {"gather": "prefetch"},
    "onednn_dot": {"xla_flags": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot"},
    "onednn_dot_no_xnn": {"xla_flags": "--xla_cpu_use_onednn=true --xla_cpu_use_xnnpack=false "
                                       "--xla_cpu_experimental_onednn_fusion_type=dot"},
    "multi_output_fusion": {"compiler_options": {"xla_cpu_use_multi_output_fusion": True}},
    "vector_width_512": {"compiler_options": {"xla_cpu_prefer_vector_width": 512}},
    "fast_math": {"compiler_options": {"xla_cpu_enable_fast_math": True}},
    "no_fusion_emitters": {"compiler_options": {"xla_cpu_use_fusion_emitters": False}},
    "onednn_dot_eltwise": {"xla_flags": "--xla_cpu_use_onednn=true "
                                        "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce"},
}


# ----------------------------------------------------------------------------------------------
# child side


def _emit(out, **message) -> None:
    out.write(PROTOCOL + json.dumps(message) + "\n")
    out.flush()


def _command() -> str:
    line = sys.stdin.readline()
    return line.strip() or "stop"


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from aejax.cli import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=overrides)


def _has_key(raw_cfg, key: str) -> bool:
    from omegaconf import OmegaConf

    return OmegaConf.select(raw_cfg, key, default="__missing__") != "__missing__"


def _load_data(spec: dict):
    """Fashion-MNIST through aejax's loader, or synthetic data of the same shape."""
    import numpy as np

    from aejax.data import Dataset, load_dataset

    if spec["synthetic"]:
        rng = np.random.default_rng(0)
        n, t = spec.get("train_examples") or 60000, 10000
        data = Dataset("synthetic", rng.random((n, 28, 28, 1), dtype=np.float32), np.zeros(n, np.int64),
                       rng.random((t, 28, 28, 1), dtype=np.float32), np.zeros(t, np.int64),
                       tuple(str(i) for i in range(10)), True)
    else:
        from aejax.config import validate

        overrides = ["dataset=fashion_mnist"] + ([f"dataset.data_dir={spec['data_dir']}"] if spec.get("data_dir") else [])
        data = load_dataset(validate(_compose(overrides)).dataset)
    n = spec.get("train_examples")
    if n and n < data.num_train:
        import dataclasses

        data = dataclasses.replace(data, x_train=data.x_train[:n],
                                   y_train=None if data.y_train is None else data.y_train[:n])
    return data


def child_aejax(spec: dict, out) -> None:
    """One configuration through ``fit``; epochs are released one at a time by the parent."""
    t_imports = time.time()
    import jax

    from aejax.config import validate
    from aejax.assemble import assemble
    from aejax.training.loop import fit

    t_imports = time.time() - t_imports
    rounds = spec["rounds"]
    epochs = rounds + 2  # a warm-up epoch, the measured rounds, a last epoch (it also evaluates)
    base = MODELS[spec["model"]] + ["dataset=fashion_mnist", f"trainer.batch_size={spec['batch']}", f"trainer.epochs={epochs}",
                                    f"trainer.eval_every={epochs}", "trainer.progress=off", "optimizer=adam",
                                    "variant=vanilla", "logger.mode=disabled", f"seed={spec.get('seed', 0)}",
                                    *spec.get("overrides", [])]
    raw = _compose(base)
    for key, value in (("snapshot.every", 0), ("eval.enabled", "false")):
        if _has_key(raw, key):
            base.append(f"{key}={value}")
    if spec.get("parallel"):
        if not _has_key(raw, "trainer.parallel"):
            _emit(out, skip="trainer.parallel is not a config key in this aejax (data parallelism not landed)")
            return
        base.append(f"trainer.parallel={spec['parallel']}")
    if spec.get("dtype"):
        if not _has_key(raw, "model.dtype"):
            _emit(out, skip="model.dtype is not a config key in this aejax")
            return
        base.append(f"model.dtype={spec['dtype']}")
    t_data = time.time()
    from aejax.errors import ConfigError

    try:
        cfg = validate(_compose(base))
    except ConfigError as e:
        if spec.get("parallel") and "trainer.parallel" in str(e):
            _emit(out, skip=str(e))
            return
        raise
    data = _load_data(spec)
    t_data = time.time() - t_data

    class HeldTracker:
        """Holds fit at the end of each epoch until the parent releases the next one."""

        def __init__(self):
            self.rows = 0
            self.go = None
            self.times: list[float] = []
            self.cpu: list[float] = []
            self.losses: list[float] = []

        def log(self, row):
            now, cpu = time.perf_counter(), time.process_time()
            if "train/loss" in row:
                self.losses.append(row["train/loss"])
            if row.get("step") == 0:
                self.first_step = time.time() - float(os.environ["BENCH_T0"])
                return
            self.rows += 1
            if self.go is not None:
                self.times.append(now - self.go)
                self.cpu.append(cpu - self.go_cpu)
            if self.rows == 1:
                _emit(out, ready=True, first_step_s=self.first_step, imports_s=t_imports, data_s=t_data,
                      devices=jax.device_count(), backend=jax.default_backend())
            if self.rows <= rounds:
                if self.go is not None:
                    _emit(out, epoch_s=self.times[-1], cpu_s=self.cpu[-1], loss=self.losses[-1])
                if _command() != "epoch":
                    raise SystemExit(0)
                self.go, self.go_cpu = time.perf_counter(), time.process_time()
            elif self.rows == rounds + 1:
                _emit(out, epoch_s=self.times[-1], cpu_s=self.cpu[-1], loss=self.losses[-1])
                _command()  # "stop": the last epoch runs and evaluates

        def log_media(self, step, media):
            pass

        def summary(self, values):
            pass

        def finish(self, status):
            pass

    tracker = HeldTracker()
    result = fit(assemble(cfg, data).parts, data, tracker)
    s = result.summary
    _emit(out, done=True, compile_s=s["compile_time_s"], num_params=s["num_params"], feed=s.get("feed"),
          final_train_loss=s["train/loss"], val_loss=s["val/loss"], maxrss_mb=_maxrss_mb(),
          num_train=data.num_train)


def _bowtie_setup(spec: dict, data, flat_adam: bool = False):
    """aejax's model, optimizer and train step for the bowtie MLP (what fit builds)."""
    import jax

    from aejax.config import validate
    from aejax.assemble import build_model
    from aejax.assemble import build_optimizer
    from aejax.training.state import create_train_state

    cfg = validate(_compose(MODELS["bowtie"] + [f"trainer.batch_size={spec['batch']}", "logger.mode=disabled"]))
    tx, _ = build_optimizer(cfg.optimizer, 1000)
    if flat_adam:
        import optax

        tx = optax.flatten(tx)
    graphdef, state = create_train_state(lambda k: build_model(cfg, data.example_shape, "sigmoid", k), tx,
                                         jax.random.key(0), jax.random.key(1))
    return cfg, tx, graphdef, state


def _proto_epoch(spec: dict, data):
    """An epoch function built from aejax's model and ``make_train_step`` with these switches:

    - ``tanh_sigmoid``: ``Autoencoder.activate`` as ``0.5 * tanh(0.5 x) + 0.5`` (XLA:CPU's tanh is a
      vectorised rational approximation; its logistic is ``1 / (1 + exp(-x))``, exp and a divide).
    - ``flat_data``: the training split held as ``[N, 784]``: the batch gather copies rows.
    - ``gather``: ``inside`` (aejax: ``x_train[idx]`` in the scan body), ``promise_in_bounds`` or
      ``clip`` (the same gather without jnp's out-of-bounds fill), ``prefetch`` (the next step's
      batch gathered during this step, carried in the scan), ``epoch`` (one gather of the
      whole permuted epoch before the scan), ``none`` (no shuffling: an upper bound, not a proposal).
    - ``xla_flags``: extra ``XLA_FLAGS`` for the process (flags that are not compile options).
    - ``flat_adam``: ``optax.flatten(adam)``: the update on one vector of all parameters.
    - ``compiler_options``: XLA options for this compile only (``Lowered.compile(...)``).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from aejax.training.epoch import epoch_batches, make_epoch_fn
    from aejax.training.step import make_train_step

    opts = spec.get("opts", {})
    cfg, tx, graphdef, state = _bowtie_setup(spec, data, opts.get("flat_adam", False))
    batch = spec["batch"]
    x = np.asarray(data.x_train)
    if opts.get("flat_data"):
        x = x.reshape(len(x), -1)
    x_train = jax.device_put(x)

    if opts.get("tanh_sigmoid"):
        from aejax.models import Autoencoder

        Autoencoder.activate = lambda self, logits: (0.5 * jnp.tanh(0.5 * logits) + 0.5 if self.output == "sigmoid"
                                                     else logits)
    from aejax.assemble import build_objective

    objective = build_objective(cfg.variant)  # aejax's own objective (with the patches above)
    train_step = make_train_step(graphdef, objective, tx)
    gather = opts.get("gather", "inside")
    if gather == "inside":
        fn = make_epoch_fn(train_step, batch, False)
    elif gather == "prefetch":  # the next step's batch gathered in this step (software pipelining)
        def epoch(state, x_train, key):
            idx, weights = epoch_batches(key, x_train.shape[0], batch, False)
            last = idx.shape[0] - 1

            def body(carry, i):
                state, xb = carry
                upcoming = x_train[idx[jnp.minimum(i + 1, last)]]
                state, metrics = train_step(state, xb, weights[i])
                return (state, upcoming), metrics

            (state, _), metrics = jax.lax.scan(body, (state, x_train[idx[0]]), jnp.arange(idx.shape[0]))
            return state, metrics

        fn = jax.jit(epoch, donate_argnums=0)
    elif gather in ("promise_in_bounds", "clip"):
        def epoch(state, x_train, key):
            idx, weights = epoch_batches(key, x_train.shape[0], batch, False)

            def body(state, i):
                return train_step(state, x_train.at[idx[i]].get(mode=gather), weights[i])

            return jax.lax.scan(body, state, jnp.arange(idx.shape[0]))

        fn = jax.jit(epoch, donate_argnums=0)
    else:
        def epoch(state, x_train, key):
            idx, weights = epoch_batches(key, x_train.shape[0], batch, False)
            if gather == "epoch":
                xs = x_train[idx.reshape(-1)].reshape(*idx.shape, *x_train.shape[1:])
            else:
                pad = idx.size - x_train.shape[0]
                xs = jnp.concatenate([x_train, x_train[:pad]]).reshape(*idx.shape, *x_train.shape[1:])
            return jax.lax.scan(lambda s, b: train_step(s, *b), state, (xs, weights))

        fn = jax.jit(epoch, donate_argnums=0)
    start = time.perf_counter()
    key = jax.random.key(2)
    compiled = fn.lower(state, x_train, key).compile(opts.get("compiler_options") or None)
    compile_s = time.perf_counter() - start
    return compiled, state, x_train, compile_s


def child_proto(spec: dict, out) -> None:
    import jax

    data = _load_data(spec)
    compiled, state, x_train, compile_s = _proto_epoch(spec, data)
    n = 0

    def one():
        nonlocal state, n
        start, cpu = time.perf_counter(), time.process_time()
        state, metrics = compiled(state, x_train, jax.random.key(100 + n))
        jax.block_until_ready(state)
        n += 1
        return time.perf_counter() - start, time.process_time() - cpu, float(metrics["loss"][-1])

    one()  # warm-up
    _emit(out, ready=True, compile_s=compile_s, first_step_s=time.time() - float(os.environ["BENCH_T0"]))
    while _command() == "epoch":
        t, cpu, loss = one()
        _emit(out, epoch_s=t, cpu_s=cpu, loss=loss)
    _emit(out, done=True, maxrss_mb=_maxrss_mb(), num_train=data.num_train, compile_s=compile_s)


def _matmul_ops(batch: int):
    """(name, lhs shape, rhs shape, dimension numbers) of one step's matmuls, forward and backward."""
    nn_ = (((1,), (0,)), ((), ()))  # x @ W
    tn_ = (((0,), (0,)), ((), ()))  # x^T @ g  (kernel gradient)
    nt_ = (((1,), (1,)), ((), ()))  # g @ W^T  (input gradient)
    ops = []
    for i, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
        ops.append((f"fwd   [{batch},{a}]x[{a},{b}]", (batch, a), (a, b), nn_))
        ops.append((f"dW    [{a},{batch}]x[{batch},{b}]", (batch, a), (batch, b), tn_))
        if i > 0:  # the first layer's input gradient is never needed
            ops.append((f"dX    [{batch},{b}]x[{b},{a}]", (batch, b), (a, b), nt_))
    return ops


def flops_per_example() -> int:
    fwd = sum(a * b for a, b in zip(WIDTHS[:-1], WIDTHS[1:]))
    dx = fwd - WIDTHS[0] * WIDTHS[1]
    return 2 * (2 * fwd + dx)  # forward, kernel gradients, input gradients; a multiply-add is 2 FLOPs


def child_limit(spec: dict, out) -> None:
    """Times each of one step's matmuls in a compiled loop (best of 3 per round)."""
    import numpy as np

    backend = spec.get("backend", "xla")
    ops = _matmul_ops(spec["batch"])
    rng = np.random.default_rng(0)
    iters = spec.get("iters", 50)
    runners = []
    for name, sa, sb, dn in ops:
        a, b = rng.random(sa, dtype=np.float32), rng.random(sb, dtype=np.float32)
        flops = 2 * sa[0] * sa[1] * (sb[1] if dn[0][1] == (0,) else sb[0])
        if backend == "xla":
            import jax
            from jax import lax

            def loop(a, b, dn=dn):
                def body(i, a):  # each product feeds one value back, so no iteration can be hoisted
                    c = lax.dot_general(a, b, dn)
                    return lax.dynamic_update_slice(a, c[:1, :1], (0, 0))
                return lax.fori_loop(0, iters, body, a)

            f = jax.jit(loop)
            ja, jb = jax.device_put(a), jax.device_put(b)
            jax.block_until_ready(f(ja, jb))
            run = (lambda f=f, ja=ja, jb=jb: jax.block_until_ready(f(ja, jb)))
        else:
            import torch

            if spec.get("threads"):
                torch.set_num_threads(spec["threads"])
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            lhs = ta.T if dn[0][0] == (0,) else ta
            rhs = tb.T if dn[0][1] == (1,) else tb

            def run(lhs=lhs, rhs=rhs):
                for _ in range(iters):
                    torch.mm(lhs, rhs)
            run()
        runners.append((name, flops, run))

    def measure():
        per_op, cpu_total = [], 0.0
        for name, flops, run in runners:
            best = float("inf")
            for _ in range(3):
                start, cpu = time.perf_counter(), time.process_time()
                run()
                if time.perf_counter() - start < best:
                    best, best_cpu = time.perf_counter() - start, time.process_time() - cpu
            per_op.append((name, flops, best / iters))
            cpu_total += best_cpu / iters
        return per_op, cpu_total

    measure()
    _emit(out, ready=True, first_step_s=0.0)
    while _command() == "epoch":
        per_op, cpu_s = measure()
        _emit(out, epoch_s=sum(t for _, _, t in per_op), cpu_s=cpu_s, per_op=per_op)
    _emit(out, done=True, maxrss_mb=_maxrss_mb())


def conv_twin(nn):
    """aejax's default conv autoencoder on 28x28x1 in PyTorch: 4x4 stride-2 convs 1->32->64 (padding 1,
    as SAME pads here), a linear code of 2, a ReLU projection to 7x7x64, 4x4 stride-2 transposed convs
    64->32->1 (padding 1 doubles the size exactly, as aejax's SAME), sigmoid output."""
    return nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(7 * 7 * 64, 2), nn.Linear(2, 7 * 7 * 64), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
                         nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1),
                         nn.Sigmoid())


def child_torch(spec: dict, out) -> None:
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F

    data = _load_data(spec)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    n, batch, style = data.num_train, spec["batch"], spec["style"]
    if spec.get("model") == "conv":
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(data.x_train).transpose(0, 3, 1, 2)))  # NCHW
        model = conv_twin(nn)
    else:
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(data.x_train).reshape(data.num_train, -1)))
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
            layers.append(nn.Linear(a, b))
            if i not in (2, len(WIDTHS) - 2):  # linear bottleneck, sigmoid output
                layers.append(nn.ReLU())
        layers.append(nn.Sigmoid())
        model = nn.Sequential(*layers)
    first: list[float] = []

    def first_step():
        if not first:
            first.append(time.time() - float(os.environ["BENCH_T0"]))

    if style == "idiomatic":
        from torch.utils.data import DataLoader, TensorDataset

        loader = DataLoader(TensorDataset(x), batch_size=batch, shuffle=True)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.MSELoss()

        def epoch():
            for (xb,) in loader:
                opt.zero_grad()
                loss = loss_fn(model(xb), xb)
                loss.backward()
                opt.step()
                first_step()
            return float(loss)
    else:
        try:
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
            fused = "fused"
        except (RuntimeError, TypeError):
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
            fused = "foreach"
        loss_of = torch.compile(lambda xb: F.mse_loss(model(xb), xb), dynamic=False)

        def epoch():
            xs = x[torch.randperm(n)]
            for i in range(0, n, batch):
                opt.zero_grad(set_to_none=True)
                loss = loss_of(xs[i:i + batch])
                loss.backward()
                opt.step()
                first_step()
            return float(loss)

    start = time.perf_counter()
    epoch()  # warm-up (and torch.compile's compilation)
    compile_s = time.perf_counter() - start
    _emit(out, ready=True, first_step_s=first[0], threads=torch.get_num_threads(),
          optimizer=None if style == "idiomatic" else fused, version=torch.__version__)
    while _command() == "epoch":
        start, cpu = time.perf_counter(), time.process_time()
        loss = epoch()
        _emit(out, epoch_s=time.perf_counter() - start, cpu_s=time.process_time() - cpu, loss=loss)
    _emit(out, done=True, maxrss_mb=_maxrss_mb(), num_train=n, compile_s=compile_s)


def child_profile(spec: dict, out) -> None:
    """One epoch of aejax's bowtie epoch function under the JAX profiler: time per XLA op per step."""
    import collections
    import glob

    import jax

    data = _load_data(spec)
    compiled, state, x_train, _ = _proto_epoch(spec, data)
    state, _ = compiled(state, x_train, jax.random.key(0))
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            state, _ = compiled(state, x_train, jax.random.key(1))
            jax.block_until_ready(state)
        from jax.profiler import ProfileData

        profile = ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])
        per_op: collections.Counter = collections.Counter()
        for plane in profile.planes:
            for line in plane.lines:
                if not line.name.startswith("tf_XLAEigen"):
                    continue
                for event in line.events:
                    if event.name != "ThunkExecutor::Execute" and not event.name.startswith(("end:", "Threadpool")):
                        per_op[event.name] += event.duration_ns
    steps = -(-data.num_train // spec["batch"])
    hlo = compiled.as_text()
    kinds = {name: _classify(hlo, name) for name in per_op}
    _emit(out, ready=True, first_step_s=0.0)
    _emit(out, done=True, per_step_us={k: v / 1e3 / steps for k, v in per_op.items()}, kinds=kinds)


def _classify(hlo: str, name: str) -> tuple[str, str, str]:
    """(shape, category, op) of one HLO instruction of a compiled module's text."""
    line = next((ln for ln in hlo.splitlines() if ln.lstrip().startswith(f"%{name} = ")), "")
    if not line:
        return "", "runtime", name
    shape = line.split(" = ", 1)[1].split(" ")[0]
    op_name = line.split('op_name="')[1].split('"')[0] if 'op_name="' in line else ""
    body = ""
    if "calls=%" in line:
        called = line.split("calls=%")[1].split(",")[0].split(" ")[0]
        start = hlo.find(f"\n%{called} ")
        body = hlo[start:hlo.find("\n}", start)] if start >= 0 else ""
    op = op_name.rsplit("/", 1)[-1]
    if " dot(" in line or " dot(" in body:
        category = "matmul" + (" (YNNPACK)" if "__ynn_fusion" in line else " (Eigen)")
    elif "gather" in name:
        category = "batch gather x_train[idx]"
    elif name.startswith("sort"):
        category = "epoch permutation (sort)"
    elif " copy(" in body and "bitcast" in body:
        category = "layout copy [B,784] -> [B,28,28,1] + loss"
    elif "transpose(jvp" in op_name:
        category = "backward: elementwise, reductions"
    elif "jvp(" in op_name:
        category = "forward: elementwise, reductions"
    elif "/while/body/" in op_name:
        category = "Adam update, rng, metrics"
    else:
        category = "other (outside the step, runtime)"
    return shape, category, op


CHILDREN = {"aejax": child_aejax, "proto": child_proto, "limit": child_limit, "torch": child_torch,
            "profile": child_profile}


def child_main(kind: str, spec: dict) -> None:
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # libraries' prints go to the log, the protocol keeps its own descriptor
    sys.stdout = sys.stderr
    try:
        CHILDREN[kind](spec, out)
    except SystemExit:
        raise
    except BaseException as e:
        import traceback

        traceback.print_exc()
        _emit(out, error=f"{type(e).__name__}: {e}")
        raise SystemExit(1)


# ----------------------------------------------------------------------------------------------
# parent side


class Child:
    """A benchmark process speaking the line protocol on its stdin/stdout."""

    def __init__(self, label: str, kind: str, spec: dict, log_dir: Path, env: Optional[dict] = None):
        self.label, self.kind, self.spec = label, kind, spec
        self.log = log_dir / (label.replace(" ", "_").replace("/", "_") + ".log")
        environment = {**os.environ, **(env or {}), "BENCH_T0": repr(time.time())}
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", kind, json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log.open("w"),
                                     text=True, env=environment)
        self.ready = self.recv()
        self.epochs: list[dict] = []
        self.done: dict = {}

    def recv(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.label}: the process ended early; see {self.log}:\n{self._tail()}")
            if line.startswith(PROTOCOL):
                message = json.loads(line[len(PROTOCOL):])
                if "error" in message:
                    raise RuntimeError(f"{self.label}: {message['error']}; see {self.log}:\n{self._tail()}")
                return message

    def _tail(self) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-15:])
        except OSError:
            return ""

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def epoch(self) -> dict:
        self.send("epoch")
        message = self.recv()
        message["load"] = os.getloadavg()[0]  # the 1-minute load average as the epoch ended
        self.epochs.append(message)
        return message

    def finish(self) -> dict:
        self.send("stop")
        self.done = self.recv()
        self.proc.wait(timeout=600)
        return self.done

    @property
    def skipped(self) -> Optional[str]:
        return self.ready.get("skip")


def side_by_side(children_specs: list[tuple], rounds: int, log_dir: Path) -> list[Child]:
    """Start each process in turn (no two compile at once), then alternate epochs between them."""
    children = []
    for label, kind, spec, env in children_specs:
        print(f"  starting {label} ...", end="", flush=True)
        try:
            child = Child(label, kind, {**spec, "rounds": rounds}, log_dir, env)
        except RuntimeError as e:
            print(f" failed: {e}", flush=True)
            continue
        print(f" {child.skipped}" if child.skipped else " ready", flush=True)
        children.append(child)
    live = [c for c in children if not c.skipped]
    for r in range(rounds):
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for child in order:
            child.epoch()
    for child in live:
        child.finish()
    return children


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def rate(child: Child) -> tuple[float, float, float]:
    """Examples/s: median, min, max over the measured epochs."""
    n = child.done.get("num_train") or child.spec.get("train_examples") or 60000
    med, lo, hi = _stats([m["epoch_s"] for m in child.epochs])
    return n / med, n / hi, n / lo


def cpu_rate(child: Child) -> Optional[float]:
    """Examples per second of the process's CPU time (all its threads), median over the epochs."""
    if not child.epochs or "cpu_s" not in child.epochs[0]:
        return None
    n = child.done.get("num_train") or child.spec.get("train_examples") or 60000
    return n / statistics.median(m["cpu_s"] for m in child.epochs)


def limit_rate(child: Child) -> tuple[float, float, float]:
    batch = child.spec["batch"]
    med, lo, hi = _stats([m["epoch_s"] for m in child.epochs])
    return batch / med, batch / hi, batch / lo


def fmt_rate(r: tuple[float, float, float]) -> str:
    return f"{r[0]:>9,.0f} ({r[1]:,.0f}-{r[2]:,.0f})"


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "python": platform.python_version()}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name"))
        info["avx512"] = " avx512f" in cpu
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or platform.machine()
    from importlib.metadata import PackageNotFoundError, version

    for package in ("jax", "jaxlib", "flax", "optax", "torch"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    info["load_average"] = os.getloadavg()
    info["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    return info


def torch_available() -> bool:
    from importlib.util import find_spec

    return find_spec("torch") is not None


def run_target(args, base: dict, log_dir: Path, results: dict) -> None:
    """Bowtie at the target batch: aejax's fit, the matmul limit and PyTorch, side by side."""
    batch = args.target_batch
    print(f"\n== target: bowtie 784-128-32-2, batch {batch}, side by side, {args.rounds} rounds ==", flush=True)
    specs = [("limit xla", "limit", {**base, "batch": batch}, None),
             ("aejax fit", "aejax", {**base, "model": "bowtie", "batch": batch}, None)]
    if args.baseline:  # another checkout's aejax, e.g. main before a change
        specs.append(("aejax fit (baseline)", "aejax", {**base, "model": "bowtie", "batch": batch},
                      {"PYTHONPATH": str(Path(args.baseline).resolve())}))
    if args.with_proto:
        specs.append((f"aejax + proto {args.with_proto}", "proto",
                      {**base, "batch": batch, "opts": PROTOTYPES[args.with_proto]}, None))
    if torch_available() and not args.no_torch:
        for threads in (None, 1):  # torch's default (one per core), and one thread
            suffix = ", 1 thread" if threads else ""
            specs += [(f"limit torch (MKL){suffix}", "limit", {**base, "batch": batch, "backend": "torch",
                                                                "threads": threads}, None),
                      (f"torch idiomatic{suffix}", "torch", {**base, "batch": batch, "style": "idiomatic",
                                                              "threads": threads}, None),
                      (f"torch tuned{suffix}", "torch", {**base, "batch": batch, "style": "tuned",
                                                          "threads": threads}, None)]
    else:
        print("  PyTorch comparison skipped: torch is not installed (pip install -e '.[bench]', torch==2.13.0)")
    children = {c.label: c for c in side_by_side(specs, args.rounds, log_dir)}
    flops = flops_per_example()
    print(f"\n  model: {flops / 1e6:.3f} MFLOP per example (forward + backward matmuls)")
    limits = {}
    for label in ("limit xla", "limit torch (MKL)", "limit torch (MKL), 1 thread"):
        child = children.get(label)
        if child and child.epochs:
            step_s = statistics.median(m["epoch_s"] for m in child.epochs)
            cpu_s = statistics.median(m["cpu_s"] for m in child.epochs)
            limits[label] = {"examples_per_s": limit_rate(child), "step_ms": step_s * 1e3,
                             "gflops": flops * batch / step_s / 1e9, "examples_per_cpu_s": batch / cpu_s,
                             "per_op": child.epochs[len(child.epochs) // 2]["per_op"]}
    if "limit xla" in limits:
        print(f"  matmuls of one batch-{batch} step (XLA's kernels, jitted loop, best of 3; the middle round):")
        for name, fl, t in limits["limit xla"]["per_op"]:
            print(f"    {name:28s} {t * 1e6:8.1f} us  {fl / t / 1e9:6.1f} GFLOP/s")
    for label, lim in limits.items():
        print(f"  {label}: {lim['step_ms']:.3f} ms per step = {lim['gflops']:.1f} GFLOP/s = "
              f"{fmt_rate(lim['examples_per_s'])} examples/s; {lim['examples_per_cpu_s']:,.0f} per CPU-second")
    limit = max((lim["examples_per_s"][0] for lim in limits.values()), default=None)
    limit_cpu = max((lim["examples_per_cpu_s"] for lim in limits.values()), default=None)
    rows = {}
    print(f"\n  {'':30s} {'examples/s median (range)':>28s} {'of limit':>8s} {'per CPU-s':>10s} {'of limit':>8s} "
          f"{'compile':>8s} {'1st step':>8s} {'peak RSS':>8s}")
    for label, child in children.items():
        if child.kind == "limit" or child.skipped or not child.epochs:
            continue
        r, c = rate(child), cpu_rate(child)
        compile_s = child.done.get("compile_s", child.ready.get("compile_s")) or 0.0
        rows[label] = {"examples_per_s": r, "examples_per_cpu_s": c, "compile_s": compile_s,
                       "first_step_s": child.ready.get("first_step_s"), "maxrss_mb": child.done.get("maxrss_mb"),
                       "of_limit": r[0] / limit if limit else None,
                       "of_limit_cpu": c / limit_cpu if c and limit_cpu else None}
        print(f"  {label:30s} {fmt_rate(r):>28s} {rows[label]['of_limit'] or float('nan'):8.0%} {c or 0:10,.0f} "
              f"{rows[label]['of_limit_cpu'] or float('nan'):8.0%} {compile_s:7.2f}s "
              f"{child.ready.get('first_step_s', 0):7.2f}s {child.done.get('maxrss_mb', 0):6.0f}MB")
    torch_rows = [k for k in rows if k.startswith("torch")]

    def fastest(style):  # of torch's thread settings, the faster one in this run
        return max((k for k in torch_rows if style in k), key=lambda k: rows[k]["examples_per_s"][0], default=None)

    refs = [k for k in (fastest("idiomatic"), fastest("tuned")) if k]
    results["torch_refs"] = refs
    for label in [k for k in rows if not k.startswith("torch")]:
        for ref in refs:
            ratio = rows[label]["examples_per_s"][0] / rows[ref]["examples_per_s"][0]
            rows[label][f"x {ref}"] = ratio
            print(f"  {label} / {ref}: {ratio:.2f}x")
    if "aejax fit" in rows and "aejax fit (baseline)" in rows:
        now, before = rows["aejax fit"], rows["aejax fit (baseline)"]
        print(f"  aejax fit / baseline: {now['examples_per_s'][0] / before['examples_per_s'][0]:.2f}x examples/s, "
              f"{(now['examples_per_cpu_s'] or 0) / (before['examples_per_cpu_s'] or 1):.2f}x per CPU-second")
    results["target"] = {"batch": batch, "flops_per_example": flops, "limits": limits, "limit": limit,
                         "limit_per_cpu_s": limit_cpu, "rows": rows}


def run_table(args, base: dict, log_dir: Path, results: dict) -> None:
    print(f"\n== table: aejax fit, {args.rounds} rounds per configuration ==", flush=True)
    rows = []
    for model in args.models:
        for batch in args.batches:
            for devices in args.devices:
                modes = [None] if devices == 1 else ["sharded", "pmap"]
                for mode in modes:
                    spec = {**base, "model": model, "batch": batch}
                    env = None
                    if model == "conv":
                        spec["train_examples"] = args.conv_train
                    if devices > 1:
                        spec["parallel"] = mode
                        env = {"XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                                             f" --xla_force_host_platform_device_count={devices}").strip()}
                    label = f"{model} b{batch} {devices}dev" + (f" {mode}" if mode else "")
                    specs = [(label, "aejax", spec, env)]
                    if model == "bowtie" and devices == 1:
                        specs.insert(0, (f"limit b{batch}", "limit", {**base, "batch": batch}, None))
                    children = side_by_side(specs, args.rounds, log_dir)
                    row = {"model": model, "batch": batch, "devices": devices, "parallel": mode}
                    for child in children:
                        if child.kind == "limit" and child.epochs:
                            row["limit"] = limit_rate(child)
                        elif child.kind == "aejax":
                            if child.skipped:
                                row["skip"] = child.skipped
                            elif child.epochs:
                                row.update(examples_per_s=rate(child), examples_per_cpu_s=cpu_rate(child),
                                           compile_s=child.done["compile_s"],
                                           first_step_s=child.ready["first_step_s"], maxrss_mb=child.done["maxrss_mb"],
                                           feed=child.done.get("feed"), num_train=child.done.get("num_train"))
                    rows.append(row)
    print(f"\n  {'configuration':26s} {'examples/s median (range)':>30s} {'of limit':>9s} {'per CPU-s':>10s} "
          f"{'compile':>8s} {'to 1st step':>11s} {'peak RSS':>9s}  feed")
    for row in rows:
        label = f"{row['model']} b{row['batch']} {row['devices']}dev" + (f" {row['parallel']}" if row["parallel"] else "")
        if "skip" in row:
            print(f"  {label:26s} skipped: {row['skip']}")
            continue
        if "examples_per_s" not in row:
            print(f"  {label:26s} failed (see the logs in {log_dir})")
            continue
        frac = f"{row['examples_per_s'][0] / row['limit'][0]:9.0%}" if "limit" in row else f"{'':9s}"
        n = f" ({row['num_train']} train examples)" if row.get("num_train") != 60000 else ""
        print(f"  {label:26s} {fmt_rate(row['examples_per_s']):>30s} {frac} {row['examples_per_cpu_s'] or 0:10,.0f} "
              f"{row['compile_s']:7.2f}s "
              f"{row['first_step_s']:10.2f}s {row['maxrss_mb']:7.0f}MB  {row.get('feed')}{n}")
    results["table"] = rows


def run_conv(args, base: dict, log_dir: Path, results: dict) -> None:
    """The conv autoencoder: aejax (its default, the matmul convolutions on CPU) beside the PyTorch
    twin, and with ``--conv-xla`` aejax with XLA's convolutions, epochs interleaved."""
    batch, n = args.conv_batch, args.conv_train
    print(f"\n== conv: conv AE 28x28x1, 32->64, z=2, batch {batch}, {n} Fashion-MNIST examples per epoch, "
          f"side by side, {args.rounds} rounds ==", flush=True)
    spec = {**base, "model": "conv", "batch": batch, "train_examples": n}
    specs = [("aejax conv", "aejax", spec, None)]
    if args.conv_xla:
        specs.append(("aejax conv impl=xla", "aejax", {**spec, "overrides": ["encoder.impl=xla", "decoder.impl=xla"]},
                      None))
    if args.conv_unrolled:
        specs.append(("aejax conv unrolled", "aejax", {**spec, "overrides": ["trainer.feed=stream", "trainer.unroll=on"]},
                      None))
    if torch_available() and not args.no_torch:
        specs.append(("torch twin", "torch", {**spec, "style": "idiomatic", "threads": 2}, None))
        if args.conv_one_thread:  # torch's work per CPU-second without its threads waiting for each other
            specs.append(("torch twin, 1 thread", "torch", {**spec, "style": "idiomatic", "threads": 1}, None))
    else:
        print("  PyTorch twin skipped: torch is not installed (pip install torch==2.13.0)")
    children = side_by_side(specs, args.rounds, log_dir)
    rows = {}
    print(f"\n  {'':22s} {'examples/s median (range)':>28s} {'per CPU-s':>10s} {'compile':>8s} {'loss':>8s}  "
          f"{'load during':>12s}  feed")
    for child in children:
        if child.skipped or not child.epochs:
            continue
        loads = [m["load"] for m in child.epochs]
        rows[child.label] = {"examples_per_s": rate(child), "examples_per_cpu_s": cpu_rate(child),
                             "compile_s": child.done.get("compile_s"), "loss": child.epochs[-1].get("loss"),
                             "load": (min(loads), max(loads)), "feed": child.done.get("feed")}
        row = rows[child.label]
        print(f"  {child.label:22s} {fmt_rate(row['examples_per_s']):>28s} {row['examples_per_cpu_s'] or 0:10,.0f} "
              f"{row['compile_s'] or 0:7.2f}s {row['loss'] or 0:8.4f}  {row['load'][0]:5.2f}-{row['load'][1]:<6.2f}  "
              f"{row['feed'] or ''}")
    for ref in [label for label in rows if label.startswith("torch twin")]:
        twin = rows[ref]
        for label, row in rows.items():
            if not label.startswith("torch twin"):
                row[f"x {ref}"] = row["examples_per_s"][0] / twin["examples_per_s"][0]
                cpu = (row["examples_per_cpu_s"] or 0) / (twin["examples_per_cpu_s"] or 1)
                print(f"  {label} / {ref}: {row[f'x {ref}']:.2f}x examples/s, {cpu:.2f}x per CPU-second")
    results["conv"] = {"batch": batch, "train_examples": n, "rows": rows}


def _cli_run(args, overrides: list[str], env: dict, log: Path, data_dir: Optional[Path] = None) -> dict:
    """One ``python -m aejax`` run of the bowtie on Fashion-MNIST for one epoch; its summary.json."""
    data_dir = data_dir or args.data_dir
    with tempfile.TemporaryDirectory() as run_dir:
        command = [sys.executable, "-m", "aejax", *MODELS["bowtie"], "dataset=fashion_mnist",
                   f"trainer.batch_size={args.target_batch}", "trainer.epochs=1", "eval.enabled=false",
                   "trainer.progress=off", f"hydra.run.dir={run_dir}", *overrides]
        if data_dir:
            command.append(f"dataset.data_dir={data_dir}")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        with log.open("a") as f:
            proc = subprocess.run(command, env={**environment, **env}, stdout=f, stderr=subprocess.STDOUT, timeout=600)
        summary = Path(run_dir) / "summary.json"
        if proc.returncode != 0 or not summary.is_file():
            raise RuntimeError(f"aejax-train failed (exit {proc.returncode}); see {log}")
        return json.loads(summary.read_text())


def run_startup(args, base: dict, log_dir: Path, results: dict) -> None:
    """Process start to the first training step of ``python -m aejax`` (the bowtie at the target batch,
    Fashion-MNIST), as a user runs it: ``first_step_s`` of each run's summary. Cases, in rotating order
    for ``--startup-rounds`` rounds: a warm persistent compilation cache (warmed by an untimed run),
    the same with W&B offline (opened in the background), no cache, a cold (empty) cache, and a freshly
    prepared dataset whose decoded copy does not exist yet."""
    print(f"\n== start-up: python -m aejax, bowtie, batch {args.target_batch}: seconds from process start to the "
          f"first training step, {args.startup_rounds} rounds ==", flush=True)
    log = log_dir / "startup.log"
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        warm = {"AEJAX_COMPILE_CACHE": str(scratch / "warm-cache")}
        _cli_run(args, ["logger.mode=disabled"], warm, log)  # fills the warm cache (and the decoded copy)
        _cli_run(args, ["logger.mode=offline"], warm, log)
        cases = {"warm compile cache": (["logger.mode=disabled"], warm),
                 "warm compile cache, W&B offline": (["logger.mode=offline"], warm),
                 "no compile cache": (["logger.mode=disabled"], {"AEJAX_COMPILE_CACHE": "off"}),
                 "cold (empty) compile cache": (["logger.mode=disabled"], None)}
        if args.baseline:  # another checkout's aejax, W&B offline, beside this one's
            baseline = {**warm, "PYTHONPATH": str(Path(args.baseline).resolve())}
            _cli_run(args, ["logger.mode=offline"], baseline, log)
            cases["warm compile cache, W&B offline, baseline"] = (["logger.mode=offline"], baseline)
        prepared = Path(args.data_dir) / "aejax_fashion_mnist" if args.data_dir else None
        if prepared is not None and prepared.is_dir():
            cases["warm cache, dataset not decoded yet"] = (["logger.mode=disabled"], warm)
        imports = []
        for r in range(args.startup_rounds):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import aejax.cli, aejax.experiment, aejax.training.loop"], check=True)
            imports.append(time.perf_counter() - start)
            names = list(cases)
            for label in names[r % len(names):] + names[:r % len(names)]:
                overrides, env = cases[label]
                if env is None:  # a new empty cache every round
                    env = {"AEJAX_COMPILE_CACHE": str(scratch / f"cold-cache-{r}")}
                fresh = None
                if label.endswith("not decoded yet"):
                    from aejax.data.decoded import FOLDER

                    fresh = scratch / f"data-{r}"
                    shutil.copytree(prepared, fresh / prepared.name, ignore=shutil.ignore_patterns(FOLDER))
                summary = _cli_run(args, overrides, env, log, fresh)
                row = rows.setdefault(label, {"first_step_s": [], "compile_s": []})
                row["first_step_s"].append(summary["first_step_s"])
                row["compile_s"].append(summary["compile_time_s"])
                if fresh is not None:
                    shutil.rmtree(fresh)
    print(f"  importing aejax's CLI, experiment and training loop (python -c, whole process): "
          f"{statistics.median(imports):.2f} s ({min(imports):.2f}-{max(imports):.2f})")
    for label, row in rows.items():
        med, lo, hi = _stats(row["first_step_s"])
        print(f"  {label:38s} first step at {med:5.2f} s ({lo:.2f}-{hi:.2f}); fit's compile "
              f"{statistics.median(row['compile_s']):.2f} s")
    results["startup"] = {"imports_s": imports, "cases": rows}


def run_proto(args, base: dict, log_dir: Path, results: dict) -> None:
    batch = args.target_batch
    print(f"\n== prototypes of step/epoch changes: bowtie, batch {batch}, side by side, {args.rounds} rounds ==",
          flush=True)
    specs = [(name, "proto", {**base, "batch": batch, "opts": opts},
              {"XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + opts["xla_flags"]).strip()}
              if "xla_flags" in opts else None) for name, opts in PROTOTYPES.items()
             if name == "aejax" or not args.protos or name in args.protos.split(",")]
    children = side_by_side(specs, args.rounds, log_dir)
    ref = next((c for c in children if c.label == "aejax" and c.epochs), None)
    rows = {}
    for child in children:
        if not child.epochs:
            continue
        r = rate(child)
        rows[child.label] = {"examples_per_s": r, "compile_s": child.done["compile_s"],
                             "speedup": r[0] / rate(ref)[0] if ref else None,
                             "final_loss": child.epochs[-1]["loss"]}
        rows[child.label]["examples_per_cpu_s"] = cpu_rate(child)
        cpu_x = cpu_rate(child) / cpu_rate(ref) if ref else 0
        print(f"  {child.label:36s} {fmt_rate(r):>30s}  x{rows[child.label]['speedup'] or 0:.2f}  "
              f"per CPU-s {cpu_rate(child):>7,.0f} x{cpu_x:.2f}  compile {child.done['compile_s']:.2f}s")
    results["proto"] = rows


def run_precision(args, base: dict, log_dir: Path, results: dict) -> None:
    print(f"\n== mixed precision: bowtie, batch {args.target_batch}, float32 vs bfloat16, side by side ==",
          flush=True)
    specs = [(f"aejax {dtype}", "aejax", {**base, "model": "bowtie", "batch": args.target_batch, "dtype": dtype}, None)
             for dtype in ("float32", "bfloat16")]
    children = side_by_side(specs, args.rounds, log_dir)
    rows = {}
    for child in children:
        if child.skipped:
            print(f"  {child.label}: skipped: {child.skipped}")
            continue
        if not child.epochs:
            continue
        r = rate(child)
        rows[child.label] = {"examples_per_s": r, "compile_s": child.done["compile_s"],
                             "val_loss": child.done["val_loss"], "train_loss": child.done["final_train_loss"]}
        print(f"  {child.label:18s} {fmt_rate(r):>30s}  val/loss after {args.rounds + 2} epochs "
              f"{child.done['val_loss']:.5f}")
    if len(rows) == 2:
        f32, b16 = rows["aejax float32"], rows["aejax bfloat16"]
        print(f"  bfloat16 / float32: speed {b16['examples_per_s'][0] / f32['examples_per_s'][0]:.2f}x, "
              f"val/loss {b16['val_loss'] / f32['val_loss']:.3f}x")
    results["precision"] = rows


def run_profile(args, base: dict, log_dir: Path, results: dict) -> None:
    results["profile"] = {}
    for name in ("aejax", *([args.with_proto] if args.with_proto else [])):
        print(f"\n== profile: {name}, bowtie epoch, batch {args.target_batch}: XLA ops, time per step ==", flush=True)
        child = Child(f"profile {name}", "profile", {**base, "batch": args.target_batch, "opts": PROTOTYPES[name]},
                      log_dir,
                      {"XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()})
        done = child.finish()
        per = done["per_step_us"]
        total = sum(per.values())
        categories: dict[str, float] = {}
        for op, us in per.items():
            category = done["kinds"].get(op, ("", "runtime", ""))[1]
            categories[category] = categories.get(category, 0.0) + us
        print(f"  {total:,.0f} us of XLA ops per step (summed over threads), by kind:")
        for category, us in sorted(categories.items(), key=lambda kv: -kv[1]):
            print(f"    {us:8.1f} us {us / total:6.1%}  {category}")
        print("  the top ops:")
        for op, us in sorted(per.items(), key=lambda kv: -kv[1])[:12]:
            shape, category, _ = done["kinds"].get(op, ("", "", ""))
            print(f"    {us:8.1f} us {us / total:6.1%}  {op:26s} {shape:28s} {category}")
        results["profile"][name] = {"total_us": total, "per_step_us": per, "kinds": done["kinds"],
                                    "categories": categories}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], json.loads(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append",
                        choices=["target", "table", "conv", "startup", "proto", "precision", "profile"],
                        help="run only these parts (repeatable); default: all")
    parser.add_argument("--rounds", type=int, default=7, help="measured epochs per process (median, range)")
    parser.add_argument("--startup-rounds", type=int, default=3, help="runs of each start-up case")
    parser.add_argument("--batches", default="128,256,1024")
    parser.add_argument("--models", default="bowtie,conv")
    parser.add_argument("--devices", default="1,8", help="device counts of the table (8: virtual CPU devices)")
    parser.add_argument("--target-batch", type=int, default=256)
    parser.add_argument("--conv-train", type=int, default=10000,
                        help="training examples for the conv rows (an epoch of all 60000 takes ~1 min here)")
    parser.add_argument("--conv-batch", type=int, default=128, help="batch size of --only conv")
    parser.add_argument("--conv-xla", action="store_true",
                        help="--only conv: also aejax with XLA's convolutions (encoder/decoder.impl=xla; slow)")
    parser.add_argument("--conv-unrolled", action="store_true",
                        help="--only conv: also aejax's default streamed in unrolled chunks instead of one scan per epoch")
    parser.add_argument("--conv-one-thread", action="store_true", help="--only conv: also the twin on one thread")
    parser.add_argument("--synthetic", action="store_true", help="random data of Fashion-MNIST's shape")
    parser.add_argument("--data-dir", default="/tmp/tfds_e2e" if Path("/tmp/tfds_e2e").is_dir() else None)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--baseline", help="a checkout of aejax to run beside this one in the target "
                                           "and, with W&B offline, in the start-up cases (its folder, "
                                           "put first on PYTHONPATH)")
    parser.add_argument("--protos", help="comma-separated prototypes for --only proto (default: all)")
    parser.add_argument("--with-proto", choices=[p for p in PROTOTYPES if p != "aejax"],
                        help="also run this prototype in the target and the profile")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 6000 examples, batch 256 only")
    parser.add_argument("--json", type=Path, help="write all figures to this file")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.batches, args.conv_train, args.startup_rounds = 2, "256", 2000, 1
    args.batches = [int(b) for b in args.batches.split(",")]
    args.models = args.models.split(",")
    args.devices = [int(d) for d in args.devices.split(",")]
    parts = args.only or ["target", "table", "conv", "startup", "proto", "precision", "profile"]
    base = {"synthetic": args.synthetic, "data_dir": args.data_dir,
            "train_examples": 6000 if args.quick else None}

    info = machine()
    print(f"machine: {info.get('cpu')}, {info['cores']} cores{' (AVX-512)' if info.get('avx512') else ''}, "
          f"{info.get('memory_gib', '?')} GiB; Python {info['python']}, JAX {info['jax']}, jaxlib {info['jaxlib']}, "
          f"Flax {info['flax']}, optax {info['optax']}, torch {info['torch'] or '-'}; load average "
          f"{info['load_average'][0]:.2f} at start")
    print(f"data: {'synthetic (uniform random, 60000x28x28x1)' if args.synthetic else 'Fashion-MNIST'}"
          f"{' (quick: 6000 examples)' if args.quick else ''}; MSE, Adam 1e-3; each epoch's examples/s is the "
          "training split over the epoch's wall time")
    results: dict[str, Any] = {"machine": info, "args": {k: v for k, v in vars(args).items() if k != "json"}}
    log_dir = Path(tempfile.mkdtemp(prefix="aejax-bench-"))
    runners = {"target": run_target, "table": run_table, "conv": run_conv, "startup": run_startup, "proto": run_proto,
               "precision": run_precision, "profile": run_profile}
    try:
        for part in parts:
            runners[part](args, base, log_dir, results)
    finally:
        info["load_average_end"] = os.getloadavg()
        print(f"\nload average {info['load_average_end'][0]:.2f} at the end; process logs in {log_dir}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
