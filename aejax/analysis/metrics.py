"""Evaluation metrics for autoencoders: pure functions, arrays in, floats (or arrays) out.

Reconstruction: ``psnr``, and ``pca_test_mse`` (the linear baseline). Latent codes:
``linear_probe_accuracy``, ``knn_accuracy``, ``active_units``. Out-of-distribution scores:
``auroc``, ``detection_rate``. Likelihood: ``gaussian_iwae``, the importance-weighted bound
on log p(x) of a model with a Gaussian encoder and a standard normal prior.
The probe and kNN live in ``aejax.analysis.probes`` (without scikit-learn), the PCA fit in
``aejax.analysis.pca``. SciPy is imported by the function that uses it: a training run reaches
its first step without it.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from aejax.analysis import pca
from aejax.analysis.probes import knn_accuracy, linear_probe_accuracy

__all__ = ["psnr", "pca_test_mse", "linear_probe_accuracy", "knn_accuracy", "auroc", "detection_rate",
           "active_units", "gaussian_iwae"]

_LOG_2PI = math.log(2.0 * math.pi)


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(peak**2 / mse)``; ``inf`` when ``mse == 0``."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def pca_test_mse(x_train: np.ndarray, x_test: np.ndarray, k: int) -> float:
    """Mean squared error, per value and example, of reconstructing ``x_test`` from its
    projection on the top ``k`` principal components of ``x_train`` (examples flattened), in
    float64 (``aejax.analysis.pca``). ``k`` at or above the number of features (with more
    training examples than features) reconstructs exactly, giving 0 up to rounding.
    """
    return pca.test_mse(pca.fit(x_train, k), x_test)


def auroc(scores_negative: np.ndarray, scores_positive: np.ndarray) -> float:
    """Area under the ROC curve for "positives score higher": the Mann-Whitney U statistic over
    ``n_neg * n_pos``, i.e. P(s_pos > s_neg) + P(s_pos == s_neg) / 2 (average ranks for ties)."""
    from scipy.stats import rankdata  # ~0.6 s to import: only when used

    neg = np.ravel(scores_negative)
    pos = np.ravel(scores_positive)
    ranks = rankdata(np.concatenate([neg, pos]))  # 1-based, ties get their average rank
    u = ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(neg) * len(pos)))


def detection_rate(train_scores: np.ndarray, positive_scores: np.ndarray,
                   percentile: float = 95.0) -> tuple[float, float]:
    """``(threshold, rate)``: the threshold is ``np.percentile(train_scores, percentile)`` (linear
    interpolation), the rate is the fraction of ``positive_scores`` strictly above it."""
    threshold = float(np.percentile(train_scores, percentile))
    return threshold, float(np.mean(np.asarray(positive_scores) > threshold))


def active_units(posterior_means: np.ndarray, threshold: float = 0.01) -> int:
    """Number of latent units whose variance over the data (``[N, units]``, population variance)
    of the posterior mean exceeds ``threshold``: the activity measure of Burda et al. (2016)."""
    variance = np.var(np.asarray(posterior_means, np.float64), axis=0)
    return int(np.sum(variance > threshold))


def _standard_normal_logpdf(eps: jax.Array) -> jax.Array:
    return -0.5 * (eps**2 + _LOG_2PI)


def gaussian_iwae(log_px_given_z: Callable[[jax.Array], jax.Array], mean: jax.Array, logvar: jax.Array,
                  key: jax.Array, num_samples: int) -> jax.Array:
    """Importance-weighted lower bound on log p(x) per example, ``[B]`` (Burda et al. 2016).

    ``log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)`` with ``z_k ~ q = N(mean, exp(logvar))``
    (``mean``, ``logvar``: ``[B, d]``), prior ``N(0, I)``, computed with ``logsumexp``.
    ``log_px_given_z`` maps codes ``[B, d]`` to the log-likelihood of each example ``[B]``;
    it is applied to the ``K = num_samples`` draws with ``jax.vmap``. At ``K = 1`` the bound's
    expectation is the ELBO; it increases with ``K`` towards log p(x). Pure and jittable with ``K``
    static; jit the caller (eagerly each op compiles on its own, about a second per new shape).
    """
    eps = jax.random.normal(key, (num_samples, *mean.shape), mean.dtype)
    z = mean + jnp.exp(0.5 * logvar) * eps  # [K, B, d]
    log_q = jnp.sum(_standard_normal_logpdf(eps) - 0.5 * logvar, axis=-1)
    log_prior = jnp.sum(_standard_normal_logpdf(z), axis=-1)
    log_w = jax.vmap(log_px_given_z)(z) + log_prior - log_q  # [K, B]
    return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)
