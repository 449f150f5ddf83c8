"""Latent snapshots: where each probe point sits in the latent space, and where its loss pulls it.

A snapshot is taken on a fixed probe set (``snapshot.probe_size`` test examples chosen once
per seed) by one compiled function, which returns in one transfer:

- ``z``: the codes (a VAE's means), ``loss``: each point's reconstruction loss decoded from
  its code, and ``grad`` = ∂loss/∂z: the direction of steepest ascent of that point's loss
  with respect to its own code. Its negation (the "opposite gradient") is where the point
  would move to lower its loss; drawn as trails it shows where training pulls the latent space.
- ``recon``: the decoded probe points; for 2-D codes the decoded manifold, a ``grid x grid``
  lattice over the codes' range; for VAEs decoded prior samples and an interpolation.
- for a dense decoder (``aejax.analysis.dense_decoder``), its weights ``decoder_w<i>``,
  ``decoder_b<i>``: the explorer page decodes any clicked code with them.

Each point's loss is independent of the others, so the gradient of their sum with respect to
all codes is every point's own gradient. For k > 2 codes, the 2-D view is a PCA projection
of the codes, and gradients go through the same linear map (without the centering).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aejax.analysis.dense_decoder import dense_layers
from aejax.variants.losses import RECON_LOSSES


@dataclass
class SnapshotConfig:
    every: int = 5  # epochs between snapshots (also at the first and last step); 0 = no snapshots
    probe_size: int = 256  # test examples tracked through training (chosen once per seed)
    grid: int = 20  # 2-D codes: the decoded manifold is grid x grid points over the codes' range
    images: bool = True  # render figures (media/ and W&B) besides the arrays and tables
    # Figures are drawn while the host's snapshot work stays within this fraction of the training
    # time so far (always at the first and last snapshot); arrays and tables are always written.
    # null draws them at every snapshot.
    figure_budget: Optional[float] = 0.1
    recon_examples: int = 10  # columns of the reconstructions figure
    samples: int = 64  # VAE: images decoded from N(0, I)
    interp_steps: int = 10  # VAE: points on the line between two probe codes
    histogram_units: int = 32  # per-unit histograms of the first N latent units
    explorer: bool = False  # log the interactive explorer page (aejax-explore) to W&B at the end


def select_probe(test: np.ndarray | int, size: int, seed: int) -> np.ndarray:
    """Sorted test indices of the probe set: a fixed random subset per seed. ``test``: the number of
    test examples, or an array with one entry per example (its labels, its examples)."""
    rng = np.random.default_rng(seed)
    n = test if isinstance(test, (int, np.integer)) else len(test)
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


def interpolation_pair(labels: Optional[np.ndarray], n: Optional[int] = None) -> np.ndarray:
    """Two probe points to interpolate between: the first point and the first of another class
    (without labels, ``n`` probe points: the second point)."""
    n = len(labels) if labels is not None else n
    other = np.flatnonzero(labels != labels[0]) if labels is not None else np.zeros(0, int)
    return np.array([0, other[0] if len(other) else min(1, n - 1)], np.int32)


def make_snapshot_fn(graphdef: nnx.GraphDef, recon: str, grid: int, interp_steps: int, batched: bool = False):
    """``snapshot(params, x, noise, pair) -> dict of arrays``, compiled once per run; ``batched``:
    every argument and output with a leading axis of models (a seed batch)."""
    recon_loss = RECON_LOSSES[recon]

    def snapshot(params, x, noise, pair):
        model = nnx.merge(graphdef, params)
        z = model.encode(x)
        loss, pullback = jax.vjp(lambda z: recon_loss(x, model.decode_logits(z), model.activate), z)
        (grad,) = pullback(jnp.ones_like(loss))  # points are independent: row i is ∂loss_i/∂z_i
        out = {"z": z, "grad": grad, "loss": loss, "recon": model.decode(z).astype(jnp.float16)}
        layers = dense_layers(model)  # a dense decoder's weights: the explorer runs it at a clicked code
        if layers is not None:
            out.update(layers.arrays())
        if z.shape[1] == 2:
            lo, hi = z.min(axis=0), z.max(axis=0)
            pad = 0.05 * jnp.maximum(hi - lo, 1e-3)
            axes = jnp.linspace(lo - pad, hi + pad, grid)  # [grid, 2]
            z1, z2 = jnp.meshgrid(axes[:, 0], axes[:, 1])  # row i: z2 = axes[i, 1]; column j: z1 = axes[j, 0]
            lattice = jnp.stack([z1.ravel(), z2.ravel()], axis=1)
            out.update(grid_z1=axes[:, 0], grid_z2=axes[:, 1], grid_decoded=model.decode(lattice).astype(jnp.float16))
        if noise is not None:
            out["samples"] = model.decode(noise).astype(jnp.float16)
            t = jnp.linspace(0.0, 1.0, interp_steps)[:, None]
            out["interp"] = model.decode((1 - t) * z[pair[0]] + t * z[pair[1]]).astype(jnp.float16)
        return out

    return jax.jit(jax.vmap(snapshot) if batched else snapshot)


class Projection:
    """The 2-D view of the codes: identity for k = 2, ``[z, 0]`` for k = 1, PCA for k > 2.

    ``points(z) = (z - mean) @ components`` and ``directions(g) = g @ components``, so that
    ``points(z + e g) = points(z) + e directions(g)``: a gradient moves with its point. PCA is
    refitted per snapshot, with each axis' sign kept pointing the same way as in the previous
    snapshot, so the view does not flip between snapshots.
    """

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim
        self.mean = np.zeros(latent_dim, np.float32)
        self.components = np.eye(latent_dim, 2, dtype=np.float32)  # [k, 2]
        self._fitted = False

    @property
    def is_pca(self) -> bool:
        return self.latent_dim > 2

    def fit(self, z: np.ndarray) -> "Projection":
        if not self.is_pca:
            return self
        mean = z.mean(axis=0)
        _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
        components = vt[:2].T.astype(np.float32)
        if self._fitted:
            components *= np.where(np.sum(components * self.components, axis=0) < 0, -1.0, 1.0).astype(np.float32)
        self.mean, self.components, self._fitted = mean.astype(np.float32), components, True
        return self

    def restore(self, mean: np.ndarray, components: np.ndarray) -> None:
        """Continue from a saved snapshot's projection (a resumed run keeps the axes' signs)."""
        if self.is_pca:
            self.mean, self.components, self._fitted = mean, components, True

    def points(self, z: np.ndarray) -> np.ndarray:
        return ((z - self.mean) @ self.components).astype(np.float32)

    def directions(self, g: np.ndarray) -> np.ndarray:
        return (g @ self.components).astype(np.float32)


def table_columns(latent_dim: int, labeled: bool = True) -> list[str]:
    """The columns of the per-snapshot table (W&B) in order; the npz holds the same arrays. Data
    without labels has no ``label`` and ``class`` columns."""
    cols = [f"z_{i}" for i in range(latent_dim)] + [f"grad_{i}" for i in range(latent_dim)]
    if latent_dim > 2:
        cols += ["pca_0", "pca_1", "grad_pca_0", "grad_pca_1"]
    return cols + (["label", "class"] if labeled else []) + ["loss", "step"]


def table_rows(arrays: dict[str, np.ndarray], class_names: tuple[str, ...]) -> list[list]:
    """Rows of the table: coordinates, gradients, (projection), label, class name (when ``arrays``
    has ``labels``), loss, step."""
    k = arrays["z"].shape[1]
    numeric = [arrays["z"], arrays["grad"]] + ([arrays["z_2d"], arrays["grad_2d"]] if k > 2 else [])
    values = np.concatenate(numeric, axis=1).astype(np.float64).tolist()
    step, losses = int(arrays["step"]), arrays["loss"].astype(np.float64).tolist()
    if arrays.get("labels") is None:
        return [row + [loss, step] for row, loss in zip(values, losses)]
    names = [class_names[i] if 0 <= i < len(class_names) else str(i) for i in arrays["labels"].tolist()]
    return [row + [label, name, loss, step]
            for row, label, name, loss in zip(values, arrays["labels"].tolist(), names, losses)]


def limits_of(points: np.ndarray, old: Optional[np.ndarray] = None, margin: float = 0.08,
              headroom: float = 0.15) -> np.ndarray:
    """Axis limits ``[x0, x1, y0, y1]`` that hold ``points``: ``old`` when they still do (limits
    only grow during a run, so snapshots line up), else grown with ``headroom`` to spare."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    if old is not None and lo[0] >= old[0] and hi[0] <= old[1] and lo[1] >= old[2] and hi[1] <= old[3]:
        return old
    pad = (margin if old is None else margin + headroom) * np.maximum(hi - lo, 1e-3)
    new = np.array([lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]])
    if old is not None:
        new = np.array([min(new[0], old[0]), max(new[1], old[1]), min(new[2], old[2]), max(new[3], old[3])])
    return new
