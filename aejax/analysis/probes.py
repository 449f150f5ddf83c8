"""What the codes say about labels they never saw: a linear probe and k-nearest neighbours,
computed without scikit-learn (whose import alone, ~1 s, cost more than the rest of an
evaluation) and giving its numbers.

``linear_probe_accuracy``: scikit-learn's ``LogisticRegression()`` (L2, C=1, multinomial; one
logit for two classes) on codes standardised as its ``StandardScaler`` does, fitted by Newton's
method in float64 numpy to the optimum (scikit-learn's L-BFGS stops near it, at ``tol=1e-4``),
its Hessian built from matrix products on one BLAS thread (a 64-unit code's probe: ~1.5 CPU-s).
``knn_accuracy``: exact k nearest neighbours. The device finds, for each test code, the k + 4
groups of 16 training codes whose nearest members are closest (float32); float64 numpy ranks
the codes of those groups exactly, and a row whose k-th distance is not clear of the next
group's (by a bound on float32's error) is ranked against all training codes instead.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

GROUP = 16  # training codes per group of the kNN search
_EPS32 = float(np.finfo(np.float32).eps)


def _standardise(z_train: np.ndarray, z_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both splits scaled as ``StandardScaler().fit(z_train)`` scales them, with a column of ones appended."""
    train = np.asarray(z_train, np.float64).reshape(len(z_train), -1)
    test = np.asarray(z_test, np.float64).reshape(len(z_test), -1)
    mean, scale = train.mean(axis=0), train.std(axis=0)
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0  # constant codes: as scikit-learn, not scaled
    return tuple(np.hstack([(a - mean) / scale, np.ones((len(a), 1))]) for a in (train, test))


def _logits(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    z = x @ theta
    return np.hstack([np.zeros((len(z), 1)), z]) if theta.shape[1] == 1 else z  # two classes: [0, z]


def _loss(x: np.ndarray, onehot: np.ndarray, theta: np.ndarray, penalised: np.ndarray) -> float:
    logits = _logits(x, theta)
    top = logits.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.sum(log_norm - np.sum(onehot * logits, axis=1)) + 0.5 * np.sum(penalised * theta**2))


def _hessian(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``sum_n kron(x_n x_n^T, diag(p_n) - p_n p_n^T)`` as ``[features * M, features * M]``
    (the index of weight ``[a, k]`` is ``a * M + k``): a block diagonal minus ``Q^T Q``, every
    part a matrix product (BLAS), so that it stays cheap for wide codes."""
    n, f = x.shape
    m = p.shape[1]
    q = (x[:, :, None] * p[:, None, :]).reshape(n, f * m)
    h = -(q.T @ q).reshape(f, m, f, m)
    for k in range(m):
        h[:, k, :, k] += (x * p[:, k:k + 1]).T @ x
    return h.reshape(f * m, f * m)


def fit_probe(x: np.ndarray, labels: np.ndarray, num_classes: int, max_iter: int = 100) -> np.ndarray:
    """Weights ``[features, M]`` (``M = 1`` for two classes) minimising the summed log loss plus
    ``||W||^2 / 2`` (intercept, the last row, not penalised): Newton's method with backtracking."""
    m = 1 if num_classes == 2 else num_classes
    onehot = np.eye(num_classes)[labels]
    theta = np.zeros((x.shape[1], m))
    penalised = np.ones_like(theta)
    penalised[-1] = 0.0
    loss = _loss(x, onehot, theta, penalised)
    for _ in range(max_iter):
        logits = _logits(x, theta)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p, target = (p[:, 1:], onehot[:, 1:]) if m == 1 else (p, onehot)
        grad = x.T @ (p - target) + penalised * theta
        h = _hessian(x, p) + np.diag(penalised.ravel())
        h += np.eye(len(h)) * 1e-10 * np.trace(h) / len(h)  # the intercepts' common shift is a null direction
        step = np.linalg.solve(h, grad.ravel()).reshape(theta.shape)
        decrement = float(np.sum(grad * step))
        if decrement <= 1e-20 * max(1.0, abs(loss)):
            break
        t = 1.0
        while t > 1e-10:
            new = _loss(x, onehot, theta - t * step, penalised)
            if new <= loss - 1e-4 * t * decrement:
                break
            t *= 0.5
        else:
            break  # no decrease within rounding: at the optimum
        theta, loss = theta - t * step, new
        if decrement <= 1e-12 * max(1.0, abs(loss)):
            break
    return theta


def linear_probe_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray,
                          y_test: np.ndarray, max_iter: int = 100) -> float:
    """Test accuracy of a logistic regression (scikit-learn's defaults: L2, C=1) fitted on the
    training codes, both splits standardised with the training codes' mean and standard deviation."""
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency; 10 ms to import

    classes, labels = np.unique(np.asarray(y_train), return_inverse=True)
    x_train, x_test = _standardise(z_train, z_test)
    if len(classes) == 1:
        predicted = np.full(len(x_test), classes[0])
    else:
        # one BLAS thread: OpenBLAS's threads spin for a core while XLA's or another job's hold
        # them, and a wide code's fit then took 10x the CPU time (measured, k = 64: 11 CPU-s to 1.5)
        with threadpool_limits(limits=1, user_api="blas"):
            theta = fit_probe(x_train, labels, len(classes), max_iter)
        logits = _logits(x_test, theta)
        predicted = classes[np.argmax(logits, axis=1)]  # first (smallest) label on ties, as scikit-learn
    return float(np.mean(predicted == np.asarray(y_test)))


@partial(jax.jit, static_argnames=("groups",))
def _nearest_groups(test: jax.Array, train: jax.Array, valid: jax.Array, groups: int) -> jax.Array:
    """For each chunk of test codes ``[chunks, c, d]``, in float32: the ``groups + 1`` groups of
    ``GROUP`` training codes (``[G * GROUP, d]``) whose nearest members are closest, nearest
    first (``[chunks, c, groups + 1]``); no code of another group is nearer than the last's."""
    sq = jnp.where(valid, jnp.sum(train**2, axis=1), jnp.finfo(jnp.float32).max)  # padding: never near

    def chunk(block):
        d2 = (block @ train.T) * -2.0 + sq + jnp.sum(block**2, axis=1, keepdims=True)
        # only the indices: XLA:CPU's top_k is 6x slower when its values are used too
        return jax.lax.top_k(-jnp.min(d2.reshape(len(block), -1, GROUP), axis=2), groups + 1)[1]

    return jax.lax.map(chunk, test)


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
    train = np.asarray(z_train, np.float64).reshape(len(z_train), -1)
    test = np.asarray(z_test, np.float64).reshape(len(z_test), -1)
    n = len(train)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} neighbours among {n} training codes")
    num_groups = -(-n // GROUP)
    picks = k + 4  # groups ranked exactly: the next group's nearest member is beyond the (k + 4)-th code
    if num_groups <= picks + 1:  # few training codes: rank them all
        return _rank(test, train, np.broadcast_to(np.arange(n), (len(test), n)), k)[0]
    centre = train.mean(axis=0)
    padded = np.zeros((num_groups * GROUP, train.shape[1]), np.float32)
    padded[:n] = train - centre
    rows = -(-len(test) // chunk_size) * chunk_size
    queries = np.zeros((rows, train.shape[1]), np.float32)
    queries[:len(test)] = test - centre
    index = jax.device_get(_nearest_groups(queries.reshape(-1, chunk_size, train.shape[1]), padded,
                                           np.arange(len(padded)) < n, picks)).reshape(rows, picks + 1)[:len(test)]
    members = index[:, :, None] * GROUP + np.arange(GROUP)  # [rows, picks + 1, GROUP]
    nearest, kth = _rank(test, train, np.sort(members[:, :picks].reshape(len(test), -1), axis=1), k)
    last = members[:, picks]
    beyond = np.sum((train[np.minimum(last, n - 1)] - test[:, None, :]) ** 2, axis=2)
    beyond = np.where(last < n, beyond, np.inf).min(axis=1)  # the next group's nearest member, exactly
    # float32's error in a distance: rounding the centred codes (2 eps), then |q|^2, |t|^2 and q.t
    # (d eps each at most) and their sum (2 eps), each up to e = (2d + 12) eps times |q|^2 + |t|^2,
    # where |t|^2 <= 2 |q|^2 + 2 true: so true (1 - 2e) - 3e |q|^2 <= computed <= true (1 + 2e) + 3e |q|^2.
    # No code of another group is nearer than the next group's nearest member in float32, so every
    # such code is at least at (beyond (1 - 2e) - 6e |q|^2) / (1 + 2e), which must exceed the k-th.
    e = (2 * train.shape[1] + 12) * _EPS32
    q2 = np.sum(queries[:len(test)].astype(np.float64) ** 2, axis=1)
    unclear = np.flatnonzero(~(beyond * (1 - 2 * e) - 6 * e * q2 > kth * (1 + 2 * e)))
    if len(unclear):
        nearest[unclear] = _rank(test[unclear], train, np.broadcast_to(np.arange(n), (len(unclear), n)), k)[0]
    return nearest


def knn_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray,
                 y_test: np.ndarray, k: int = 5, chunk_size: int = 256) -> float:
    """Test accuracy of k-nearest-neighbour classification (Euclidean, majority vote).

    Ties, as scikit-learn's ``KNeighborsClassifier`` (uniform weights) breaks them: among labels
    with the same vote count the smallest label wins. Training points at the same distance as the
    k-th neighbour are taken in order of their index (lowest first); scikit-learn leaves that
    choice to its search, so exact distance ties may differ from it. ``chunk_size`` test codes
    are searched at a time (see ``knn_neighbours``).
    """
    classes, train_idx = np.unique(np.asarray(y_train), return_inverse=True)  # sorted labels
    nearest = train_idx[knn_neighbours(z_train, z_test, k, chunk_size)]
    votes = np.stack([np.sum(nearest == c, axis=1) for c in range(len(classes))], axis=1)
    predicted = classes[np.argmax(votes, axis=1)]  # argmax: first (smallest) label on ties
    return float(np.mean(predicted == np.asarray(y_test)))
