"""Exact k nearest neighbours of codes, and the accuracy of their majority vote: what
``aejax.analysis.evaluate`` reports as ``test/knn_accuracy``, scikit-learn's
``KNeighborsClassifier`` numbers without importing scikit-learn.

The search: the test codes go in chunks that lie close together (the leaves of a k-d tree),
each in a frame centred on it. The device finds, for each test code, the k + 5 groups of 16
training codes whose nearest members are closest and, among their members, the k + 5 nearest
codes (float32); float64 numpy ranks the first k + 4 exactly, and a row whose k-th distance is
not clear of the last one's (by a bound on float32's error) is ranked against all training codes
instead. ``knn_accuracy_search`` starts the device's search and returns what finishes it, so
that other work (the probe) runs meanwhile; ``knn_program`` compiles the search ahead.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

GROUP = 16  # training codes per group of the kNN search
LOCAL_BYTES = 64 << 20  # the most the training codes' frames per chunk of test codes may take (float32)
_EPS32 = float(np.finfo(np.float32).eps)


@partial(jax.jit, static_argnames=("picks",))
def _nearest(test: jax.Array, train: jax.Array, valid: jax.Array, picks: int) -> jax.Array:
    """For each chunk of test codes ``[chunks, c, d]``, in float32: the ``picks`` training codes
    (``[G * GROUP, d]``, or ``[chunks, G * GROUP, d]``: each chunk's own frame) nearest to each,
    nearest first (``[chunks, c, picks]``), found among the members of the ``picks`` groups of
    ``GROUP`` codes whose nearest members are closest."""

    def chunk(block, train):
        sq = jnp.where(valid, jnp.sum(train**2, axis=1), jnp.finfo(jnp.float32).max)  # padding: never near
        d2 = ((block @ train.T) * -2.0 + sq + jnp.sum(block**2, axis=1, keepdims=True)).reshape(len(block), -1, GROUP)
        # only the indices: XLA:CPU's top_k is 6x slower when its values are used too
        groups = jax.lax.top_k(-jnp.min(d2, axis=2), picks)[1]  # [c, picks]
        members = jnp.take_along_axis(d2, groups[:, :, None], axis=1).reshape(len(block), -1)  # [c, picks * GROUP]
        best = jax.lax.top_k(-members, picks)[1]
        return jnp.take_along_axis(groups, best // GROUP, axis=1) * GROUP + best % GROUP

    if train.ndim == 3:
        return jax.lax.map(lambda args: chunk(*args), (test, train))
    return jax.lax.map(lambda block: chunk(block, train), test)


def _compact_order(x: np.ndarray, size: int) -> np.ndarray:
    """An order of the rows of ``x`` whose runs of ``size`` rows lie close together: the leaves of
    a k-d tree, each node split at the median of its widest coordinate."""
    leaves, todo = [], [np.arange(len(x))]
    while todo:
        rows = todo.pop()
        if len(rows) <= size:
            leaves.append(rows)
            continue
        points = x[rows]
        widest = int(np.argmax(points.max(axis=0) - points.min(axis=0)))
        left = -(-len(rows) // (2 * size)) * size  # whole runs on the left
        split = np.argpartition(points[:, widest], left - 1)
        todo += [rows[split[left:]], rows[split[:left]]]  # the left half next
    return np.concatenate(leaves)


def _rank(test: np.ndarray, train: np.ndarray, candidates: np.ndarray, k: int,
          values: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest of ``candidates`` (``[rows, C]`` training indices, ascending; ``len(train)``
    and above: none) to each test code: their indices and the k-th squared distance, in float64
    from the differences; codes as far as the k-th are taken lowest index first. About ``values``
    differences at a time."""
    nearest, kth = np.empty((len(test), k), np.int64), np.empty(len(test))
    step = max(1, values // (candidates.shape[1] * train.shape[1]))
    for s in range(0, len(test), step):
        cand = candidates[s:s + step]
        d2 = np.sum((train[np.minimum(cand, len(train) - 1)] - test[s:s + step, None, :]) ** 2, axis=2)
        d2[cand >= len(train)] = np.inf
        last = np.partition(d2, k - 1, axis=1)[:, k - 1:k]
        closer = d2 < last
        tied = (d2 == last) & (np.cumsum(d2 == last, axis=1) <= k - closer.sum(axis=1, keepdims=True))
        nearest[s:s + step] = cand[closer | tied].reshape(-1, k)  # k per row, in index order
        kth[s:s + step] = last[:, 0]
    return nearest, kth


def knn_neighbours(z_train: np.ndarray, z_test: np.ndarray, k: int = 5, chunk_size: int = 256) -> np.ndarray:
    """Indices ``[len(z_test), k]`` of each test code's k nearest training codes (Euclidean, exact
    in float64); training codes at the same distance as the k-th are taken lowest index first."""
    return knn_search(z_train, z_test, k, chunk_size)()


def _search_shapes(num_train: int, num_test: int, dims: int, k: int,
                   chunk_size: int) -> Optional[tuple[tuple[int, ...], tuple[int, ...], int, int]]:
    """``(queries' shape, frames' shape, training rows with padding, picks)`` of the device's
    search, or None where the codes are few enough to rank them all without it."""
    num_groups, picks = -(-num_train // GROUP), k + 5
    if num_groups <= picks:
        return None
    chunks, rows = -(-num_test // chunk_size), num_groups * GROUP
    local = chunks * rows * dims * 4 <= LOCAL_BYTES  # a frame per chunk, or one for all
    return (chunks, chunk_size, dims), ((chunks, rows, dims) if local else (rows, dims)), rows, picks


@dataclass(frozen=True)
class KnnProgram:
    """``knn_search``'s device program, compiled for the sizes ``shapes`` (``_search_shapes``)."""
    shapes: tuple
    run: Callable


def knn_program(num_train: int, num_test: int, dims: int, k: int = 5,
                chunk_size: int = 256) -> Optional[KnnProgram]:
    """``knn_search``'s device program for these sizes, compiled now (None where it needs none):
    to compile it while the device does other work (the codes) and give it to ``knn_search``."""
    shapes = _search_shapes(num_train, num_test, dims, k, chunk_size)
    if shapes is None:
        return None
    queries, frames, rows, picks = shapes
    spec = partial(jax.ShapeDtypeStruct, dtype=jnp.float32)
    return KnnProgram(shapes, _nearest.lower(spec(queries), spec(frames), jax.ShapeDtypeStruct((rows,), jnp.bool_),
                                             picks=picks).compile())


def knn_search(z_train: np.ndarray, z_test: np.ndarray, k: int = 5, chunk_size: int = 256,
               program: Optional[KnnProgram] = None) -> Callable[[], np.ndarray]:
    """``knn_neighbours`` in two steps: this starts the device's search (JAX runs it while the
    caller goes on) and returns the function that waits for it and gives the neighbours.
    ``program``: ``knn_program``'s, used if it was compiled for these sizes."""
    train = np.asarray(z_train, np.float64).reshape(len(z_train), -1)
    test = np.asarray(z_test, np.float64).reshape(len(z_test), -1)
    n = len(train)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} neighbours among {n} training codes")
    shapes = _search_shapes(n, len(test), train.shape[1], k, chunk_size)
    if shapes is None:  # few training codes: rank them all
        return lambda: _rank(test, train, np.broadcast_to(np.arange(n), (len(test), n)), k)[0]
    _, frames_shape, num_rows, picks = shapes
    # Each chunk of test codes, close together, in a frame centred on them: float32's error in a
    # distance grows with the codes' distance from the centre (see below), so a row's k-th distance is
    # then rarely too close to the next to tell them apart (Fashion-MNIST's 2-D codes: none of 10,000
    # instead of 187 with one centre for all). A frame per chunk for the training codes too, unless
    # that takes over LOCAL_BYTES: one frame, centred on the training codes, for all.
    chunks = -(-len(test) // chunk_size)
    order = _compact_order(test, chunk_size)
    ordered = test[np.concatenate([order, np.full(chunks * chunk_size - len(test), order[-1])])]
    ordered = ordered.reshape(chunks, chunk_size, -1)
    padded = np.zeros((num_rows, train.shape[1]))
    padded[:n] = train
    centres = ordered.mean(axis=1, keepdims=True) if len(frames_shape) == 3 else train.mean(axis=0)
    frames = (padded - centres).astype(np.float32)
    queries = (ordered - centres).astype(np.float32)
    valid = np.arange(num_rows) < n
    search = (program.run(queries, frames, valid) if program is not None and program.shapes == shapes
              else _nearest(queries, frames, valid, picks))
    where = np.empty(len(test), np.int64)
    where[order] = np.arange(len(test))  # test row -> its row in the chunks

    def finish() -> np.ndarray:
        index = jax.device_get(search).reshape(-1, picks)[where]
        nearest, kth = _rank(test, train, np.sort(index[:, :-1], axis=1), k)
        last = index[:, -1]  # the (k + 5)-th nearest in float32
        beyond = np.where(last < n, np.sum((train[np.minimum(last, n - 1)] - test) ** 2, axis=1), np.inf)
        # float32's error in a distance: rounding the centred codes (2 eps), then |q|^2, |t|^2 and q.t
        # (d eps each at most) and their sum (2 eps), each up to e = (2d + 12) eps times |q|^2 + |t|^2,
        # where |t|^2 <= 2 |q|^2 + 2 true: so true (1 - 2e) - 3e |q|^2 <= computed <= true (1 + 2e) + 3e |q|^2.
        # No other code is nearer than the last pick in float32 (each of the picks groups holds one at
        # most as near as the nearest member of any group not picked), so every such code is at least at
        # (beyond (1 - 2e) - 6e |q|^2) / (1 + 2e), which must exceed the k-th. Four more eps in e allow
        # for the two top_k's comparing values XLA may compute apart (each within a rounding of d2,
        # eps (|q|^2 + |t|^2), of the other's).
        e = (2 * train.shape[1] + 16) * _EPS32
        q2 = np.sum(queries.reshape(-1, train.shape[1])[where].astype(np.float64) ** 2, axis=1)  # |q|^2 in its frame
        unclear = np.flatnonzero(~(beyond * (1 - 2 * e) - 6 * e * q2 > kth * (1 + 2 * e)))
        if len(unclear):
            nearest[unclear] = _rank(test[unclear], train, np.broadcast_to(np.arange(n), (len(unclear), n)), k)[0]
        return nearest

    return finish


def knn_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray,
                 y_test: np.ndarray, k: int = 5, chunk_size: int = 256) -> float:
    """Test accuracy of k-nearest-neighbour classification (Euclidean, majority vote).

    Ties, as scikit-learn's ``KNeighborsClassifier`` (uniform weights) breaks them: among labels
    with the same vote count the smallest label wins. Training points at the same distance as the
    k-th neighbour are taken in order of their index (lowest first); scikit-learn leaves that
    choice to its search, so exact distance ties may differ from it. ``chunk_size`` test codes
    are searched at a time (see ``knn_neighbours``).
    """
    return knn_accuracy_search(z_train, y_train, z_test, y_test, k, chunk_size)()


def knn_accuracy_search(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray,
                        k: int = 5, chunk_size: int = 256,
                        program: Optional[KnnProgram] = None) -> Callable[[], float]:
    """``knn_accuracy`` in two steps (see ``knn_search``): the search starts now, the returned
    function gives the accuracy."""
    classes, train_idx = np.unique(np.asarray(y_train), return_inverse=True)  # sorted labels
    search = knn_search(z_train, z_test, k, chunk_size, program)

    def finish() -> float:
        nearest = train_idx[search()]
        votes = np.stack([np.sum(nearest == c, axis=1) for c in range(len(classes))], axis=1)
        predicted = classes[np.argmax(votes, axis=1)]  # argmax: first (smallest) label on ties
        return float(np.mean(predicted == np.asarray(y_test)))

    return finish
