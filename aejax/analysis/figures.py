"""Figures of snapshots, drawn with matplotlib's object API (no pyplot state) to PNG files.

A run draws the same figures at every snapshot, so each kind is an object that builds its
figure once and then only updates its data (building axes, ticks and legends is most of
matplotlib's cost): ``LatentScatter`` (codes coloured by class with opposite-gradient
trails), ``ImageRows`` (reconstructions, prior samples, interpolations), ``Manifold`` (the
decoded lattice of a 2-D code) and ``DataSpace`` (vector data with its reconstructions).
``Evolution`` draws the latent space over training as small multiples on shared axes. The painters
recolour their points at every draw, so the runs of one program (a seed batch, a batched sweep's
group) share them: one figure built, drawn for every run.
Labelled axes and a legend by class (one colour and no legend for data without labels); the
caller passes the axis limits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image as PILImage

DPI = 110


def class_colors(num_classes: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N) for i in range(max(num_classes, 1))])


def point_colors(labels: Optional[np.ndarray], class_names: Sequence[str], n: int) -> np.ndarray:
    """One RGBA colour per point: its class's, or the first class colour for all without labels."""
    if labels is None:
        return np.repeat(class_colors(1)[:1], n, axis=0)
    return class_colors(len(class_names))[np.clip(labels, 0, None) % max(len(class_names), 1)]


def _new_figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


class _Blitter:
    """Draws a figure whose frame (axes, ticks, labels, legend) rarely changes: the frame is
    rendered once per ``layout`` and kept as pixels; each call draws only the ``dynamic``
    artists over a copy of it and writes the PNG (about 5x faster than a full redraw)."""

    def __init__(self, fig: Figure, dynamic: Sequence):
        self.fig, self.dynamic = fig, list(dynamic)
        for artist in self.dynamic:
            artist.set_animated(True)  # left out of the frame
        self._layout, self._frame = None, None

    def save(self, path: Path, layout=None) -> Path:
        canvas = self.fig.canvas
        if self._frame is None or layout != self._layout:
            canvas.draw()
            self._frame, self._layout = canvas.copy_from_bbox(self.fig.bbox), layout
        else:
            canvas.restore_region(self._frame)
        for artist in self.dynamic:
            self.fig.draw_artist(artist)
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).save(path, compress_level=1)
        return path


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})  # fast to write; a few 10 kB
    return path


def _legend(ax, fig_or_ax, labels: Optional[np.ndarray], class_names: Sequence[str], **kwargs) -> None:
    if labels is None:  # no classes to tell apart
        return
    colors = class_colors(len(class_names))
    handles = [ax.scatter([], [], color=colors[i], s=16, label=class_names[i] if i < len(class_names) else str(i))
               for i in np.unique(labels)]
    fig_or_ax.legend(handles=handles, frameon=False, fontsize=8, title="class", title_fontsize=8, **kwargs)


def trail_segments(points: np.ndarray, grads: np.ndarray, width: float, fraction: float = 0.06) -> np.ndarray:
    """Segments from each point along its opposite gradient; the 95th-percentile trail is
    ``fraction`` of the plot width (one outlier does not shrink the rest to dots)."""
    norms = np.linalg.norm(grads, axis=1)
    ref = np.percentile(norms, 95) if len(norms) else 0.0
    scale = fraction * width / ref if ref > 0 else 0.0
    return np.stack([points, points - scale * grads], axis=1)


class LatentScatter:
    """The 2-D codes of the probe points coloured by class, each with its opposite-gradient trail."""

    def __init__(self, labels: Optional[np.ndarray], class_names: Sequence[str], axis_names=("z₁", "z₂"),
                 n: Optional[int] = None):
        """``labels`` None (data without labels): ``n`` points in one colour, no legend."""
        self.fig = _new_figure((5.6, 5.0))
        self.ax = ax = self.fig.add_subplot()
        n = len(labels) if labels is not None else n
        self.colors = point_colors(labels, class_names, n)
        self.trails = ax.add_collection(LineCollection([], colors=self.colors, linewidths=0.8, alpha=0.55))
        self.points = ax.scatter(np.zeros(n), np.zeros(n), c=self.colors, s=9, linewidths=0)
        ax.set(xlabel=axis_names[0], ylabel=axis_names[1])
        _legend(ax, ax, labels, class_names, loc="center left", bbox_to_anchor=(1.01, 0.5))
        self.fig.subplots_adjust(left=0.13, right=0.78, bottom=0.11, top=0.92)
        self.title = ax.set_title("", fontsize=9)
        self.blitter = _Blitter(self.fig, [self.trails, self.points, self.title])

    def draw(self, path: Path, points: np.ndarray, grads: np.ndarray, limits: np.ndarray, title: str,
             colors: Optional[np.ndarray] = None) -> Path:
        """``colors``: the points' own (a painter shared by runs whose probe sets differ)."""
        if colors is not None:
            self.points.set_facecolors(colors)
            self.trails.set_colors(colors)
        self.points.set_offsets(points)
        self.trails.set_segments(trail_segments(points, grads, limits[1] - limits[0]))
        self.ax.set(xlim=limits[:2], ylim=limits[2:])
        self.title.set_text(title)
        return self.blitter.save(path, layout=tuple(limits))


def _as_image(x: np.ndarray) -> np.ndarray:
    """``H x W x C`` values as something ``imshow`` draws: clipped to [0, 1], 2-D for C = 1."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    return x[..., 0] if x.shape[-1] == 1 else x


def tile(images: np.ndarray, rows: int, cols: int, gap: int = 0, fill: float = 1.0) -> np.ndarray:
    """``[rows * cols, H, W, C]`` images as one mosaic, row-major, ``gap`` pixels of ``fill`` between."""
    n, h, w, c = images.shape
    cells = np.full((rows * cols, h + gap, w + gap, c), fill, np.float32)
    cells[:n, :h, :w] = images[: rows * cols]
    mosaic = cells.reshape(rows, cols, h + gap, w + gap, c).transpose(0, 2, 1, 3, 4)
    return mosaic.reshape(rows * (h + gap), cols * (w + gap), c)[: rows * (h + gap) - gap, : cols * (w + gap) - gap]


class ImageRows:
    """Rows of images (each ``[n, H, W, C]``) with a label per row, drawn as one mosaic."""

    def __init__(self, row_labels: Sequence[str]):
        self.row_labels = list(row_labels)
        self.fig = None

    def _build(self, shape: tuple[int, ...], cols: int) -> None:
        rows, (h, w, _) = len(self.row_labels), shape
        scale = 0.55 if h <= 16 else 0.75
        width, height = scale * cols + 0.9, scale * rows + 0.45
        self.fig = _new_figure((width, height))
        self.ax = ax = self.fig.add_axes((0.8 / width, 0.02, 1 - 0.85 / width, 1 - 0.42 / height))
        self.image = ax.imshow(np.zeros((rows * (h + 1) - 1, cols * (w + 1) - 1)), cmap="gray", vmin=0, vmax=1,
                               interpolation="nearest", aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([(h + 1) * r + h / 2 for r in range(rows)], self.row_labels, fontsize=8)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        self.title = self.fig.suptitle("", fontsize=9, y=0.995, va="top")
        self.blitter = _Blitter(self.fig, [self.image, self.title])

    def draw(self, path: Path, rows: Sequence[np.ndarray], title: str) -> Path:
        cols = max(len(r) for r in rows)
        shape = rows[0].shape[1:]
        if self.fig is None:
            self._build(shape, cols)
        padded = np.ones((len(rows), cols, *shape), np.float32)
        for r, images in enumerate(rows):
            padded[r, : len(images)] = images
        self.image.set_data(_as_image(tile(padded.reshape(-1, *shape), len(rows), cols, gap=1)))
        self.title.set_text(title)
        return self.blitter.save(path)


class Manifold:
    """The decoded lattice of a 2-D code placed at its coordinates, its cells whole and square
    (``limits``, the scatter's, are not used: the axes span the lattice). Antialiased: a 20x20
    lattice of 28x28 images is drawn smaller than its pixels, and nearest-pixel sampling would
    drop whole rows of them. ``decoded[i * G + j]`` is the decoding of ``(z1[j], z2[i])`` with ``z2``
    ascending; the mosaic's rows are flipped so that high z₂ is on top."""

    def __init__(self):
        self.fig = _new_figure((5.0, 5.0))
        self.ax = ax = self.fig.add_subplot()
        self.image = ax.imshow(np.zeros((2, 2)), cmap="gray", vmin=0, vmax=1, interpolation="antialiased", aspect="auto")
        ax.set(xlabel="z₁", ylabel="z₂", facecolor="0.85")
        self.fig.subplots_adjust(left=0.14, right=0.97, bottom=0.11, top=0.93)
        self.title = ax.set_title("", fontsize=9)
        self.blitter = _Blitter(self.fig, [self.image, self.title])

    def draw(self, path: Path, decoded: np.ndarray, z1: np.ndarray, z2: np.ndarray, limits: np.ndarray,
             title: str) -> Path:
        g = len(z1)
        self.image.set_data(_as_image(tile(
            decoded.reshape(g, g, *decoded.shape[1:])[::-1].reshape(g * g, *decoded.shape[1:]), g, g, gap=1)))
        d1, d2 = ((z[-1] - z[0]) / (g - 1) if g > 1 and z[-1] != z[0] else 1.0 for z in (z1, z2))
        extent = (z1[0] - d1 / 2, z1[-1] + d1 / 2, z2[0] - d2 / 2, z2[-1] + d2 / 2)
        self.image.set_extent(extent)
        # every cell whole (the axes span the lattice, not the scatter's wider limits), and square:
        # one z2 unit drawn d1/d2 times as tall as one z1 unit
        self.ax.set(xlim=extent[:2], ylim=extent[2:])
        self.ax.set_aspect(d1 / d2, adjustable="box")
        self.title.set_text(title)
        return self.blitter.save(path, layout=extent)


class DataSpace:
    """Vector data (the first two coordinates): the inputs coloured by class, their reconstructions
    joined to them, and the decoded lattice of a 2-D code (the learned manifold) when given."""

    def __init__(self, x: np.ndarray, labels: Optional[np.ndarray], class_names: Sequence[str]):
        self.fig = _new_figure((5.6, 5.0))
        self.ax = ax = self.fig.add_subplot()
        colors = point_colors(labels, class_names, len(x))
        self.links = ax.add_collection(LineCollection([], colors="0.75", linewidths=0.5))
        ax.scatter(x[:, 0], x[:, 1], c=colors, s=8, linewidths=0, label="input")
        self.recon = ax.scatter(x[:, 0], x[:, 1], facecolors="none", edgecolors="k", s=10, linewidths=0.5,
                                label="reconstruction")
        self.grid = ax.scatter([], [], c="tab:red", s=3, linewidths=0, label="decoded grid")
        self.x = x
        ax.set(xlabel="x₁", ylabel="x₂")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        self.fig.subplots_adjust(left=0.13, right=0.97, bottom=0.11, top=0.92)

    def draw(self, path: Path, recon: np.ndarray, title: str, decoded: Optional[np.ndarray] = None) -> Path:
        self.links.set_segments(np.stack([self.x[:, :2], recon[:, :2]], axis=1))
        self.recon.set_offsets(recon[:, :2])
        self.grid.set_offsets(decoded[:, :2] if decoded is not None else np.zeros((0, 2)))
        both = np.concatenate([self.x[:, :2], recon[:, :2]])
        lo, hi = both.min(axis=0), both.max(axis=0)
        pad = 0.08 * np.maximum(hi - lo, 1e-3)
        self.ax.set(xlim=(lo[0] - pad[0], hi[0] + pad[0]), ylim=(lo[1] - pad[1], hi[1] + pad[1]))
        self.ax.set_title(title, fontsize=9)
        return _save(self.fig, path)  # limits follow the data: a full redraw


class Evolution:
    """Small multiples of the latent scatter over training (``panels`` of them, four to a row) on
    shared axis limits, built once and redrawn with each run's frames: about 3x cheaper than a
    figure built for every run. Titles sit at a fixed height (matplotlib's automatic placement
    of a title above its axes is a third of a fresh figure's drawing)."""

    def __init__(self, panels: int, labels: Optional[np.ndarray], class_names: Sequence[str], n: int,
                 axis_names=("z₁", "z₂")):
        cols = min(panels, 4)
        rows = -(-panels // cols)
        width, height = 3.0 * cols + 1.2, 2.9 * rows
        self.fig = fig = _new_figure((width, height))
        self.axes = axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
        colors = point_colors(labels, class_names, n)
        self.trails, self.points, self.titles = [], [], []
        for ax in axes.flat[:panels]:
            self.trails.append(ax.add_collection(LineCollection([], colors=colors, linewidths=0.6, alpha=0.5),
                                                 autolim=False))
            self.points.append(ax.scatter(np.zeros(n), np.zeros(n), c=colors, s=4, linewidths=0))
            self.titles.append(ax.set_title("", fontsize=9, y=1.0, pad=4.0))
        for ax in axes.flat[panels:]:
            ax.axis("off")
        for axis in (axes[0, 0].xaxis, axes[0, 0].yaxis):  # shared by every panel: few ticks to build and draw
            axis.set_major_locator(MaxNLocator(4))
        for ax in axes[-1]:
            ax.set_xlabel(axis_names[0])
        for ax in axes[:, 0]:
            ax.set_ylabel(axis_names[1])
        _legend(axes[0, 0], fig, labels, class_names, loc="center right")
        fig.subplots_adjust(left=0.75 / width, right=1 - 1.25 / width, bottom=0.55 / height, top=1 - 0.3 / height,
                            wspace=0.08, hspace=0.2)

    def draw(self, path: Path, frames: Sequence[tuple[np.ndarray, np.ndarray, str]], limits: np.ndarray,
             colors: Optional[np.ndarray] = None) -> Path:
        """``frames``: ``(points, grads, title)`` per panel; ``colors``: the points' own, if not the built ones."""
        for trails, points, title, (xy, grads, text) in zip(self.trails, self.points, self.titles, frames):
            if colors is not None:
                points.set_facecolors(colors)
                trails.set_colors(colors)
            points.set_offsets(xy)
            trails.set_segments(trail_segments(xy, grads, limits[1] - limits[0]))
            title.set_text(text)
        self.axes[0, 0].set(xlim=limits[:2], ylim=limits[2:])  # shared by every panel
        canvas = self.fig.canvas
        canvas.draw()
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).save(path, compress_level=1)
        return path

