"""Training time of one batched group (N digits models, vmapped) on one device against the two
ways of using D devices: its models spread over them (what ``aejax_batched`` does under
``trainer.parallel=sharded``: ``parallel.Models``) and every batch split over them with the models
replicated (the single run's ``sharded`` layout under the group's ``vmap``).

The epochs of the three take turns for ``--rounds`` rounds after a compiled warm-up epoch each,
through the loop's memory runner (training only: no validation, snapshots or files), and the
median seconds per epoch are printed with the load average and how many cores the process kept
busy meanwhile (its CPU seconds per second).

Usage: python scripts/bench_group_devices.py [--devices 2] [--models 12] [--epochs 10] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", default=["model.latent_dim=8"])
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} " \
                              f"--xla_force_host_platform_device_count={args.devices}".strip()
    import jax
    import jax.numpy as jnp
    from hydra import compose, initialize_config_dir

    from aejax.assemble import build_model, build_objective, build_optimizer
    from aejax.cli import config_dir
    from aejax.config import validate
    from aejax.data import load_dataset
    from aejax.training.epoch import epoch_key
    from aejax.training.parallel import ONE_DEVICE, Models, Sharded, data_mesh
    from aejax.training.runners import memory_runner
    from aejax.training.state import create_train_state, split_seed
    from aejax.training.step import make_train_step

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = validate(compose("config", overrides=["logger.mode=disabled", *args.overrides]))
    data = load_dataset(cfg.dataset)
    tx, _ = build_optimizer(cfg.optimizer, 1000)
    n = args.models
    keys = jax.vmap(lambda s: split_seed(s, 4))(jnp.arange(n))
    graphdef, state = create_train_state(lambda k: build_model(cfg, data.example_shape, "sigmoid", k), tx,
                                         keys[0], keys[2])
    step = make_train_step(graphdef, build_objective(cfg.variant), tx)
    mesh = data_mesh("sharded")
    if mesh is None:
        sys.exit("needs several devices (--devices 2 or more)")
    layouts = {"one device": ONE_DEVICE, f"models over {args.devices}": Models(n, list(mesh.devices.flat)),
               f"batch over {args.devices}": Sharded(mesh)}
    runs, states, orders = {}, {}, {}
    for name, where in layouts.items():
        states[name] = where.place(jax.tree.map(jnp.copy, state))
        orders[name] = where.place(keys[1]) if isinstance(where, Models) else keys[1]
        runs[name] = memory_runner(where.hold(data.x_train), where.step(step), cfg.trainer, states[name],
                                   orders[name], where, batched=True)
    steps = -(-data.num_train // cfg.trainer.batch_size)
    order = jax.jit(jax.vmap(epoch_key, in_axes=(0, None)))
    seconds: dict[str, list[float]] = {name: [] for name in layouts}
    cores: dict[str, list[float]] = {name: [] for name in layouts}  # this process's CPU seconds per second
    epoch = 0
    for r in range(args.rounds + 1):  # round 0: a warm-up epoch each
        for name in layouts:
            count = 1 if r == 0 else args.epochs
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                epoch += 1
                states[name], metrics = runs[name](states[name], order(orders[name], epoch), 0, steps)
            jax.block_until_ready((states[name], metrics))
            if r:
                took = time.perf_counter() - start
                seconds[name].append(took / count)
                cores[name].append((time.process_time() - cpu) / took)
    one = statistics.median(seconds["one device"])
    print(f"{n} models, {' '.join(args.overrides)}, batch {cfg.trainer.batch_size}, {steps} steps an epoch; "
          f"median of {args.rounds} rounds of {args.epochs} epochs")
    print("| layout | seconds per epoch | | cores busy |\n|---|---|---|---|")
    for name in layouts:
        s = statistics.median(seconds[name])
        print(f"| {name} | {s:.4f} | {s / one:.2f}x | {statistics.median(cores[name]):.2f} |")
    print(f"load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
