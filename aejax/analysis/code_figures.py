"""The end-of-run figure of a sparse dictionary or a codebook, ``media/codes.png`` in the run dir.

Sparse autoencoders: the histogram of each latent's activation frequency on the test split (log
scale; dead latents at the left edge) and, on data with ground truth, the recovered-feature
matrix: the cosine similarity of every true feature (rows, ordered by how well it is recovered)
to its best-matching dictionary directions (columns, in the same order), and each feature's best
similarity against the 0.9 line. VQ-VAEs: how often each codebook entry is used, sorted.
Drawn with matplotlib's object API after the evaluation; other models get no figure.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aejax.analysis.codes import RECOVERED, codebook_indices
from aejax.rundir import CODES_FIGURE


def _codes(graphdef: nnx.GraphDef, params: nnx.State, x: np.ndarray, batch: int) -> np.ndarray:
    encode = jax.jit(lambda p, x: nnx.merge(graphdef, p).encode(x))
    return np.concatenate([np.asarray(encode(params, jnp.asarray(x[i:i + batch]))) for i in range(0, len(x), batch)])


def write_code_figure(run_dir: Path, graphdef: nnx.GraphDef, params: nnx.State, x_test: np.ndarray,
                      ground_truth: Optional[np.ndarray], batch: int) -> Optional[Path]:
    """Draw the figure of the model's code into the run dir; None for a model without one."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from aejax.models.sae import SparseAutoencoder
    from aejax.models.vq import VQAutoencoder

    model = nnx.merge(graphdef, params)
    if isinstance(model, SparseAutoencoder):
        freq = np.mean(_codes(graphdef, params, x_test, batch) != 0, axis=0)
        truth = ground_truth is not None and ground_truth.shape[1] == model.directions().shape[1]
        fig = Figure(figsize=(11 if truth else 5, 4))
        axes = fig.subplots(1, 3 if truth else 1)
        ax = axes[0] if truth else axes
        floor = 0.5 / len(x_test)
        ax.hist(np.log10(np.maximum(freq, floor)), bins=40, color="tab:blue")
        ax.set(xlabel="log10 activation frequency (test)", ylabel="latents",
               title=f"{int(np.sum(freq == 0))} of {len(freq)} latents never active")
        if truth:
            t = ground_truth / np.linalg.norm(ground_truth, axis=1, keepdims=True)
            cos = t @ np.asarray(model.directions()).T  # [true, latents]
            best = cos.max(axis=1)
            order = np.argsort(-best)
            match = cos.argmax(axis=1)[order]
            image = axes[1].imshow(cos[order][:, match], vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
            fig.colorbar(image, ax=axes[1])
            axes[1].set(xlabel="best-matching latent of each feature", ylabel="true feature (by recovery)",
                        title="recovered-feature matrix (cosine)")
            axes[2].plot(best[order], color="tab:green")
            axes[2].axhline(RECOVERED, color="grey", ls="--")
            axes[2].set(xlabel="true feature (by recovery)", ylabel="max cosine to the dictionary", ylim=(0, 1.02),
                        title=f"MMCS {best.mean():.3f}, {np.mean(best > RECOVERED):.0%} above {RECOVERED}")
    elif isinstance(model, VQAutoencoder):
        idx = codebook_indices(graphdef, params, x_test, batch)
        counts = np.sort(np.bincount(idx.ravel(), minlength=model.codebook_size))[::-1]
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        ax.bar(np.arange(len(counts)), counts / idx.size, color="tab:purple", width=1.0)
        ax.set(xlabel="codebook entry (by use)", ylabel="fraction of code vectors (test)",
               title=f"{int(np.sum(counts > 0))} of {model.codebook_size} entries used")
    else:
        return None
    fig.tight_layout()
    path = Path(run_dir) / CODES_FIGURE
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(path))
    return path
