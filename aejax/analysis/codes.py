"""Evaluation of sparse dictionaries and discrete codes: pure metrics, and the ``test/*`` values
``aejax.analysis.evaluate`` adds for a sparse autoencoder or a VQ-VAE (decided from the model).

Sparse dictionaries: ``test/l0`` (active latents per example), ``test/fvu`` (fraction of variance
unexplained: squared error over the test split's squared deviation from its mean),
``test/dead_fraction`` (latents active on no test example) and, on data with ground-truth features,
``test/mmcs`` (mean over the true features of the largest cosine similarity to a dictionary
direction) and ``test/recovered_fraction`` (true features with such a similarity above 0.9).
Codebooks: ``test/codebook_perplexity`` (exp of the entropy of the entries' use on the test split)
and ``test/codebook_usage`` (the fraction of entries used at least once).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

RECOVERED = 0.9  # cosine similarity above which a true feature counts as recovered


def max_cosines(true: np.ndarray, learned: np.ndarray) -> np.ndarray:
    """For each true direction (rows of ``true``), the largest cosine similarity to a row of ``learned``."""
    t = np.asarray(true, np.float64)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    d = np.asarray(learned, np.float64)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return (t @ d.T).max(axis=1)


def mmcs(true: np.ndarray, learned: np.ndarray) -> float:
    """Mean max cosine similarity of the true features to the learned dictionary."""
    return float(np.mean(max_cosines(true, learned)))


def fvu(x: np.ndarray, squared_error: float) -> float:
    """Fraction of variance unexplained: the total squared error over ``sum (x - mean x)^2``."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return float(squared_error / np.sum((x - x.mean(axis=0)) ** 2))


def perplexity(indices: np.ndarray, size: int) -> float:
    """``exp(H)`` of the empirical distribution of ``indices`` over ``size`` entries (natural log)."""
    p = np.bincount(np.ravel(indices), minlength=size) / np.size(indices)
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def code_metrics(model: nnx.Module, graphdef: nnx.GraphDef, params: nnx.State, x_test: np.ndarray,
                 z_test: np.ndarray, mse_test: np.ndarray, ground_truth: np.ndarray | None,
                 batch: int) -> dict[str, float]:
    """The ``test/*`` values of a sparse autoencoder or a VQ-VAE (empty for other models)."""
    from aejax.models.sae import SparseAutoencoder
    from aejax.models.vq import VQAutoencoder

    out: dict[str, float] = {}
    if isinstance(model, SparseAutoencoder):
        active = np.asarray(z_test) != 0
        out["test/l0"] = float(active.sum(axis=1).mean())
        values = int(np.prod(x_test.shape[1:]))
        out["test/fvu"] = fvu(x_test, float(np.sum(np.asarray(mse_test, np.float64)) * values))
        out["test/dead_fraction"] = float(np.mean(~active.any(axis=0)))
        if ground_truth is not None and ground_truth.shape[1] == values:
            cos = max_cosines(ground_truth, np.asarray(model.directions()))
            out["test/mmcs"] = float(cos.mean())
            out["test/recovered_fraction"] = float(np.mean(cos > RECOVERED))
    if isinstance(model, VQAutoencoder):
        idx = codebook_indices(graphdef, params, x_test, batch)
        out["test/codebook_perplexity"] = perplexity(idx, model.codebook_size)
        out["test/codebook_usage"] = float(len(np.unique(idx)) / model.codebook_size)
    return out


def codebook_indices(graphdef: nnx.GraphDef, params: nnx.State, x: np.ndarray, batch: int) -> np.ndarray:
    """The codebook entry of every code vector of ``x``, ``[N, latent_dim / code_dim]``."""

    @jax.jit
    def chunk(params, x):
        model = nnx.merge(graphdef, params)
        return model.indices(model.pre_quantize(model.features(x)))

    return np.concatenate([np.asarray(chunk(params, jnp.asarray(x[i:i + batch]))) for i in range(0, len(x), batch)])
