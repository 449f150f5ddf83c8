"""Micro-benchmark of the conv autoencoder's training step on CPU, formulation against formulation.

The default conv AE (28x28x1, 4x4 stride-2 convs 1->32->64, code 2, mirrored, MSE on the sigmoid
output, Adam 1e-3, batch 128) written as a plain function of a parameter dict, so that the layer
functions can be swapped; each variant runs ``--steps`` training steps inside one ``lax.scan``,
rounds interleaved across variants in this process; the median and the fastest round per step are
printed with their ratio to the first variant's. ``--layers`` also times each layer alone
(forward and backward). Variants: ``vjp`` (aejax's layers), ``autodiff`` (their forward pass with
JAX's autodiff instead of the written-out gradients), ``vjp-plaingram`` (kernel gradients as
``patches^T @ dy``, XLA's generic dot), ``lax`` (XLA's convolutions; very slow in a scan on CPU),
``baseline`` (another checkout's layers, ``--baseline``).

    python scripts/bench_fastconv.py                     # written-out gradients against autodiff
    python scripts/bench_fastconv.py --baseline ../main --variants baseline,vjp --rounds 30 --steps 5
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from aejax.models import fastconv as fc


def _lax_conv(x, k):
    return lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _lax_deconv(x, k):
    return lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _gram_plain(a, b):
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


# name: (conv, deconv, {fastconv attribute: replacement while tracing})
VARIANTS = {
    "lax": (_lax_conv, _lax_deconv, {}),
    "vjp": ("conv_s2d", "conv_transpose_scatter", {}),
    "autodiff": ("conv_s2d", "conv_transpose_scatter", {"_conv": fc._conv.fun, "_deconv": fc._deconv.fun}),
    "vjp-plaingram": ("conv_s2d", "conv_transpose_scatter", {"_gram": _gram_plain}),
}


def _baseline(path: str) -> tuple:
    """The conv and transposed conv of another checkout's ``aejax/models/fastconv.py`` (``--baseline``)."""
    spec = importlib.util.spec_from_file_location("baseline_fastconv", Path(path) / "aejax/models/fastconv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.conv_s2d, module.conv_transpose_scatter, {}


def _variants(baseline: str | None = None) -> dict:
    out = {"baseline": _baseline(baseline)} if baseline else {}
    for name, (conv, deconv, patch) in VARIANTS.items():
        conv, deconv = (getattr(fc, f, None) if isinstance(f, str) else f for f in (conv, deconv))
        if conv is not None and deconv is not None:
            out[name] = (conv, deconv, patch)
    return out


@contextlib.contextmanager
def patched(patch: dict):
    old = {k: getattr(fc, k) for k in patch}
    for k, v in patch.items():
        setattr(fc, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(fc, k, v)


def init(key):
    ks = jax.random.split(key, 8)
    n = lambda k, s, fan: jax.random.normal(k, s) / np.sqrt(fan)  # noqa: E731
    return {"c1": n(ks[0], (4, 4, 1, 32), 16), "b1": jnp.zeros(32), "c2": n(ks[1], (4, 4, 32, 64), 512),
            "b2": jnp.zeros(64), "we": n(ks[2], (3136, 2), 3136), "be": jnp.zeros(2),
            "wd": n(ks[3], (2, 3136), 2), "bd": jnp.zeros(3136), "d1": n(ks[4], (4, 4, 64, 32), 1024),
            "db1": jnp.zeros(32), "d2": n(ks[5], (4, 4, 32, 1), 512), "db2": jnp.zeros(1)}


def loss_fn(conv, deconv):
    def loss(p, x):
        h = jax.nn.relu(conv(x, p["c1"]) + p["b1"])
        h = jax.nn.relu(conv(h, p["c2"]) + p["b2"])
        z = h.reshape(h.shape[0], -1) @ p["we"] + p["be"]
        h = jax.nn.relu(z @ p["wd"] + p["bd"]).reshape(-1, 7, 7, 64)
        h = jax.nn.relu(deconv(h, p["d1"]) + p["db1"])
        y = jax.nn.sigmoid(deconv(h, p["d2"]) + p["db2"])
        return jnp.mean((y - x) ** 2)
    return loss


def train_fn(conv, deconv, steps):
    tx = optax.adam(1e-3)
    grad = jax.value_and_grad(loss_fn(conv, deconv))

    @jax.jit
    def run(p, opt, xs):
        def step(carry, x):
            p, opt = carry
            loss, g = grad(p, x)
            updates, opt = tx.update(g, opt, p)
            return (optax.apply_updates(p, updates), opt), loss
        return lax.scan(step, (p, opt), xs)
    return run, tx


def layer_fns(conv, deconv):
    """Each layer alone, forward and backward (kernel gradient; input gradient except the first)."""
    shapes = {"conv 1->32": (conv, (128, 28, 28, 1), (4, 4, 1, 32), False),
              "conv 32->64": (conv, (128, 14, 14, 32), (4, 4, 32, 64), True),
              "deconv 64->32": (deconv, (128, 7, 7, 64), (4, 4, 64, 32), True),
              "deconv 32->1": (deconv, (128, 14, 14, 32), (4, 4, 32, 1), True)}
    out = {}
    for name, (f, xs, ks, dx) in shapes.items():
        def g(x, k, f=f, dx=dx):
            w = jnp.cos(jnp.arange(1.0, 1.0 + np.prod(f(x, k).shape[1:]))).reshape(f(x, k).shape[1:])
            val = lambda x, k: jnp.sum(f(x, k) * w)  # noqa: E731
            return jax.grad(val, argnums=(0, 1) if dx else 1)(x, k)
        x = jax.random.normal(jax.random.key(0), xs)
        k = jax.random.normal(jax.random.key(1), ks)
        out[name] = (jax.jit(g), x, k)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="autodiff,vjp", help=f"of {', '.join(_variants())}")
    parser.add_argument("--steps", type=int, default=20, help="training steps per scan")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--layers", action="store_true", help="also each layer alone")
    parser.add_argument("--baseline", help="another checkout (e.g. ../main): its layers as the variant 'baseline'")
    args = parser.parse_args()
    all_variants = _variants(args.baseline)
    names = args.variants.split(",")
    xs = jax.random.uniform(jax.random.key(3), (args.steps, 128, 28, 28, 1))
    p0 = init(jax.random.key(0))
    runs, losses = {}, {}
    for name in names:
        conv, deconv, patch = all_variants[name]
        run, tx = train_fn(conv, deconv, args.steps)
        opt = tx.init(p0)
        with patched(patch):
            _, l = run(p0, opt, xs)  # compile
        losses[name] = np.asarray(l)
        runs[name] = lambda run=run, opt=opt: jax.block_until_ready(run(p0, opt, xs))
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            t = time.perf_counter()
            runs[name]()
            times[name].append((time.perf_counter() - t) / args.steps)
    base, base_min = statistics.median(times[names[0]]), min(times[names[0]])
    print(f"training step, batch 128, {args.steps} steps per scan, {args.rounds} rounds interleaved: median "
          f"(and fastest round), ratio to {names[0]}")
    for name in names:
        med, best = statistics.median(times[name]), min(times[name])
        diff = np.abs(losses[name] - losses[names[0]]).max() / np.abs(losses[names[0]]).max()
        print(f"  {name:16s} {1e3 * med:7.2f} ms/step ({1e3 * best:6.2f})  {128 / med:6.0f} ex/s ({128 / best:6.0f})  "
              f"{base / med:5.2f}x ({base_min / best:4.2f}x)  losses rel diff {diff:.1e}")
    if args.layers:
        fns = {name: layer_fns(*all_variants[name][:2]) for name in names}
        for layer in fns[names[0]]:
            row = []
            for name in names:
                f, x, k = fns[name][layer]
                with patched(all_variants[name][2]):
                    jax.block_until_ready(f(x, k))
                ts = []
                for _ in range(max(args.rounds, 5)):
                    t = time.perf_counter()
                    jax.block_until_ready(f(x, k))
                    ts.append(time.perf_counter() - t)
                row.append(f"{name} {1e3 * statistics.median(ts):6.2f} ms")
            print(f"  {layer:14s} " + "   ".join(row))


if __name__ == "__main__":
    main()
