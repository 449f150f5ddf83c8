"""Compiled whole-epoch functions: the data stays on device, an epoch is one ``lax.scan``."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aejax.training.shuffle import permutation
from aejax.training.step import Objective, weighted_sums


def steps_per_epoch(num_examples: int, batch_size: int, drop_last: bool) -> int:
    return num_examples // batch_size if drop_last else -(-num_examples // batch_size)


@jax.jit
def epoch_key(order_key: jax.Array, epoch: int | jax.Array) -> jax.Array:
    """The key of an epoch's order, ``fold_in(order_key, epoch)``, as one compiled program (eagerly: two)."""
    return jax.random.fold_in(order_key, epoch)


def epoch_batches(key: jax.Array, num_examples: int, batch_size: int, drop_last: bool) -> tuple[jax.Array, jax.Array]:
    """A fresh permutation cut into ``[steps, batch_size]`` indices and 0/1 weights.

    Without ``drop_last`` the last batch is filled up with repeated indices of weight 0, so every
    example counts exactly once per epoch and each step's loss is the mean over its real examples.
    """
    steps = steps_per_epoch(num_examples, batch_size, drop_last)
    total = steps * batch_size
    perm = permutation(key, num_examples)
    idx = jnp.concatenate([perm, perm[: max(total - num_examples, 0)]])[:total]
    weights = (jnp.arange(total) < num_examples).astype(jnp.float32)
    return idx.reshape(steps, batch_size), weights.reshape(steps, batch_size)


def epoch_fn(train_step, batch_size: int, drop_last: bool, columns=None):
    """``epoch(state, x_train, key, lo=None, hi=None) -> (state, per-step metrics [steps])``, not
    compiled. The whole epoch is one ``lax.scan``; with ``lo, hi`` only steps ``lo..hi-1`` of the
    epoch's order run (a while loop with traced bounds: one program for every segment, used to
    stop at checkpoints inside an epoch) and the metrics of the other steps are zeros. Under
    ``jax.pmap``, ``columns`` picks a device's columns of the order (``parallel.Replicas``)."""

    def epoch(state, x_train, key, lo=None, hi=None):
        idx, weights = epoch_batches(key, x_train.shape[0], batch_size, drop_last)
        if columns is not None:
            idx, weights = columns(idx), columns(weights)

        def step(state, i):
            return train_step(state, x_train[idx[i]], weights[i])

        if lo is None:
            return jax.lax.scan(step, state, jnp.arange(idx.shape[0]))

        zeros = jax.tree.map(lambda m: jnp.zeros((idx.shape[0], *m.shape), m.dtype),
                             jax.eval_shape(step, state, 0)[1])

        def body(i, carry):
            state, metrics = carry
            state, m = step(state, i)
            return state, jax.tree.map(lambda buf, v: buf.at[i].set(v), metrics, m)

        return jax.lax.fori_loop(lo, hi, body, (state, zeros))

    return epoch


def over_models(epoch):
    """A seed batch's epoch (``trainer.num_seeds``): the state and the key with a leading axis of
    models (``jax.vmap``), each model on its own order of the shared ``x_train``; the metrics are
    ``[models, steps]``."""
    return jax.vmap(epoch, in_axes=(0, None, 0, None, None))


def make_epoch_fn(train_step, batch_size: int, drop_last: bool):
    """``epoch_fn`` jitted, with the state donated."""
    return jax.jit(epoch_fn(train_step, batch_size, drop_last), donate_argnums=0)


def chunk_fn(train_step, unroll: bool = False):
    """``chunk(state, xs, ws) -> (state, per-step metrics)``: a scan over ``[k, batch, ...]`` given
    batches, not compiled; with ``unroll`` the k steps are compiled as straight-line code, without a loop."""

    def chunk(state, xs, ws):
        return jax.lax.scan(lambda state, batch: train_step(state, *batch), state, (xs, ws), unroll=unroll or 1)

    return chunk


def pad_to_chunks(x: np.ndarray, chunk: int, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Split ``x`` into ``[num_chunks, chunk, ...]`` with zero padding and 0/1 weights; the chunk
    is a multiple of ``multiple`` (the number of devices it is split over)."""
    chunk = -(-min(chunk, len(x)) // multiple) * multiple
    num = -(-len(x) // chunk)
    padded = np.zeros((num * chunk, *x.shape[1:]), x.dtype)
    padded[: len(x)] = x
    weights = (np.arange(num * chunk) < len(x)).astype(np.float32)
    return padded.reshape(num, chunk, *x.shape[1:]), weights.reshape(num, chunk)


def eval_fn(graphdef: nnx.GraphDef, objective: Objective):
    """``evaluate(params, chunks, weights, key) -> mean of each term`` over a padded split, not compiled."""

    def evaluate(params, chunks, weights, key):
        def chunk_sums(batch):
            i, x, w = batch
            return weighted_sums(graphdef, objective, params, x, w, jax.random.fold_in(key, i), None)

        sums = jax.lax.map(chunk_sums, (jnp.arange(chunks.shape[0]), chunks, weights))
        return {name: jnp.sum(total) / jnp.sum(weights) for name, total in sums.items()}

    return evaluate


def make_eval_fn(graphdef: nnx.GraphDef, objective: Objective, batched: bool = False):
    """``eval_fn`` compiled; ``batched``: params and key of a seed batch, the means ``[n]``."""
    evaluate = eval_fn(graphdef, objective)
    return jax.jit(jax.vmap(evaluate, in_axes=(0, None, None, 0)) if batched else evaluate)
