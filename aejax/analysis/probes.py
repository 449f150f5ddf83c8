"""What the codes say about labels they never saw: a linear probe and k-nearest neighbours,
computed without scikit-learn (whose import alone, ~1 s, cost more than the rest of an
evaluation) and giving its numbers.

``linear_probe_accuracy``: scikit-learn's ``LogisticRegression()`` (L2, C=1, multinomial; one
logit for two classes) on codes standardised as its ``StandardScaler`` does, fitted by Newton's
method in float64 numpy to the optimum (scikit-learn's L-BFGS stops near it, at ``tol=1e-4``),
its Hessian built from matrix products on one BLAS thread (a 64-unit code's probe: ~1.5 CPU-s).
``knn_accuracy`` and the rest of the kNN search are in ``aejax.analysis.knn`` (imported here too).
"""
from __future__ import annotations

import numpy as np

from aejax.analysis.knn import knn_accuracy, knn_accuracy_search, knn_neighbours, knn_program, knn_search

__all__ = ["fit_probe", "linear_probe_accuracy", "knn_accuracy", "knn_accuracy_search", "knn_neighbours",
           "knn_program", "knn_search"]


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
