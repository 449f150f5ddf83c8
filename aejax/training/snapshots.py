"""Taking latent snapshots during training without stalling it.

``Snapshots.take`` dispatches the compiled snapshot program (one per run, or one for all runs of
a seed batch) and returns at once; each run's ``SnapshotRecorder.flush`` fetches the arrays (one
transfer), writes ``snapshots/step_XXXXXXX.npz``, draws the figures into ``media/`` and logs
table, histograms and images at the snapshot's step. The loop calls ``flush`` right after
dispatching the next epoch, so the host's work overlaps the device's. The figures' module
(matplotlib, ~0.3 s to import) is imported when the first figure is drawn, after training has started.

Files: ``snapshots/probe.npz`` (the probe inputs, labels, test indices, class names) once,
then per snapshot ``step``, ``epoch``, ``z``, ``grad``, ``loss``, ``labels``, ``z_2d``,
``grad_2d``, ``pca_mean``, ``pca_components``, ``recon`` and, as they apply, ``grid_z1``,
``grid_z2``, ``grid_decoded`` (2-D codes), ``samples``, ``interp`` (VAEs) and a dense decoder's
weights ``decoder_w<i>``, ``decoder_b<i>``, ``decoder_activation``, ``decoder_output``. Data without labels
has no ``labels`` in either file (and empty class names); its figures use one colour.
"""
from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import jax
import numpy as np
from flax import nnx

from aejax.analysis.dense_decoder import dense_layers
from aejax.analysis.painters import Painters
from aejax.analysis.snapshot import (Projection, SnapshotConfig, interpolation_pair, limits_of, make_snapshot_fn,
                                     select_probe, table_columns, table_rows)
from aejax.analysis.snapshot_files import snapshot_name
from aejax.data import Dataset
from aejax.tracking import Tracker
from aejax.tracking.media import Histogram, Html, Image, Media, Table
from aejax.training.parallel import first_replica

EVOLUTION_PANELS = 8
log = logging.getLogger(__name__)


@partial(jax.jit, static_argnums=(1, 2))
def _prior_noise(seed: int, samples: int, latent_dim: int) -> jax.Array:
    """The codes of the decoded prior samples, N(0, I), fixed by the seed (one compiled program)."""
    return jax.random.normal(jax.random.fold_in(jax.random.key(seed), 7), (samples, latent_dim))


class SnapshotRecorder:
    """The host's side of one run's snapshots: its probe set, files, figures and logging."""

    def __init__(self, settings: SnapshotConfig, data: Dataset, run_dir: Path, tracker: Tracker, *, seed: int,
                 label: str, latent_dim: int, vae: bool, painters: Optional[Painters] = None):
        """``seed`` picks the probe set and the prior samples; ``label`` (the variant's name) titles the
        figures; ``latent_dim`` and ``vae`` (a Gaussian head: prior samples, interpolation) describe the
        built model. Data without labels gets no ``labels`` in its files and one colour in its figures.
        ``painters``: the figures' painters, shared by the recorders of one program (each figure is
        built once and drawn for every run whose figure has its layout, each run's own colours; the
        figures several runs owe are drawn in parallel, see ``aejax.analysis.painters``)."""
        sc = self.settings = settings
        self.tracker, self.variant = tracker, label
        self.latent_dim = latent_dim
        self.folder, self.media = Path(run_dir) / "snapshots", Path(run_dir) / "media"
        self.run_dir = Path(run_dir)
        index = select_probe(len(data.x_test), sc.probe_size, seed)
        self.x = data.x_test[index]
        self.labels = data.y_test[index].astype(np.int32) if data.labeled else None
        self.class_names, self.image = data.class_names, len(data.example_shape) == 3
        self.pair = interpolation_pair(self.labels, len(index))
        noise = np.asarray(_prior_noise(seed, sc.samples, latent_dim)) if vae else None
        self.args = (self.x, noise, self.pair)  # the snapshot program's inputs besides the parameters
        self.folder.mkdir(parents=True, exist_ok=True)
        labels = {} if self.labels is None else {"labels": self.labels}
        np.savez(self.folder / "probe.npz", x=self.x, **labels, index=index.astype(np.int64),
                 class_names=np.array(self.class_names, dtype=str), unit_range=np.bool_(data.unit_range))
        self.projection = Projection(self.latent_dim)
        self.limits: Optional[np.ndarray] = None
        self.frames: list[tuple[np.ndarray, np.ndarray, str]] = []
        self._pending: Optional[tuple] = None
        self._painters = Painters(1) if painters is None else painters
        self._drawing = 0  # figure sets submitted and not yet logged
        self._started = time.perf_counter()
        self.figure_steps: list[int] = []  # the snapshots that got figures
        self.host_seconds = 0.0  # time the host spent on snapshots (fetch, files, figures, logging)
        self.decoder_meta: dict[str, np.ndarray] = {}  # a dense decoder's activations (set by Snapshots)

    def start(self) -> None:
        """Training starts now: the figure budget counts from here."""
        self._started = time.perf_counter()

    def resume(self, step: int) -> None:
        """Continue a run after its checkpoint at ``step``: snapshot files past it are removed (they
        are taken again), the earlier ones reloaded for the axis limits, the PCA axes' signs and the
        evolution figure."""
        for path in [*self.folder.glob("step_*.npz"), *self.media.glob("*/step_*.png")]:
            if int(path.stem.split("_")[1]) > step:
                path.unlink()
        for path in sorted(self.folder.glob("step_*.npz")):
            try:
                with np.load(path) as f:
                    frame = (f["z_2d"], f["grad_2d"], f"step {int(f['step'])} (epoch {float(f['epoch']):g})")
                    pca = (f["pca_mean"], f["pca_components"])
            except Exception as e:  # a damaged file with no checkpoint before it (see damaged): dropped
                log.warning("snapshot %s cannot be read (%s: %s); dropped", path, type(e).__name__, e)
                path.unlink()
                continue
            self.limits = limits_of(frame[0], self.limits)
            self.frames.append(frame)
            self.projection.restore(*pca)
        self.figure_steps = sorted(int(p.stem.split("_")[1]) for p in (self.media / "latent").glob("step_*.png"))

    def damaged(self) -> list[int]:
        """The steps whose snapshot file cannot be read whole (truncated by a crash or a failed disk):
        a resume goes back to a checkpoint before the first, so that it is taken again."""
        out = []
        for path in self.folder.glob("step_*.npz"):
            try:
                with np.load(path) as f:
                    for key in f.files:
                        f[key]  # reading each array checks its CRC
            except Exception:
                out.append(int(path.stem.split("_")[1]))
        return sorted(out)

    def due(self, epoch: int, epochs: int) -> bool:
        every = self.settings.every
        return every > 0 and (epoch % every == 0 or epoch == epochs)

    def take(self, out: dict, index: Optional[int], step: int, epoch: float, last: bool = False) -> None:
        """Keep the snapshot program's dispatched output (row ``index`` of a seed batch's) until
        ``flush``; a pending one is flushed first."""
        if self._pending is not None:
            self.flush()
            self._painters.draw()
        self._pending = (out, index, step, epoch, last)

    def _draw_figures(self, first: bool, last: bool) -> bool:
        """Figures cost the host most; they are skipped while over the budget (see SnapshotConfig)."""
        budget = self.settings.figure_budget
        if not self.settings.images:
            return False
        if first or last or budget is None:
            return True
        if self._drawing:  # the last figures are still being drawn (in the background): not these
            return False
        return self.host_seconds <= budget * (time.perf_counter() - self._started)

    def _place(self) -> tuple[Callable[[int, dict[str, Media]], None], bool]:
        """Where the media of figures about to be submitted go, and whether they may be drawn in the
        background: a place reserved in the run's order of calls (``Trackers.reserve``) where the
        program's runs share painters, else the tracker itself (drawn before the next call)."""
        reserve = getattr(self.tracker, "reserve", None)
        if reserve is None or self._painters.runs == 1:
            return self.tracker.log_media, False
        return reserve(self._painters.join), True

    def flush(self) -> None:
        if self._pending is None:
            return
        start = time.perf_counter()
        out, index, step, epoch, last = self._pending
        self._pending = None
        arrays = {k: np.asarray(v if index is None else v[index]) for k, v in jax.device_get(out).items()}
        self.projection.fit(arrays["z"])
        if self.labels is not None:
            arrays["labels"] = self.labels
        arrays.update(step=np.int64(step), epoch=np.float64(epoch),
                      z_2d=self.projection.points(arrays["z"]), grad_2d=self.projection.directions(arrays["grad"]),
                      pca_mean=self.projection.mean, pca_components=self.projection.components)
        if "decoder_w0" in arrays:
            arrays.update(self.decoder_meta)
        np.savez(self.folder / f"{snapshot_name(step)}.npz", **arrays)
        self.limits = limits_of(arrays["z_2d"], self.limits)
        self.frames.append((arrays["z_2d"], arrays["grad_2d"], f"step {step} (epoch {epoch:g})"))
        media: dict[str, Media] = {"latent/table": Table(table_columns(self.latent_dim, self.labels is not None),
                                                         table_rows(arrays, self.class_names))}
        for i in range(min(self.latent_dim, self.settings.histogram_units)):
            media[f"latent/hist/z_{i}"] = Histogram(arrays["z"][:, i])
        self.host_seconds += time.perf_counter() - start
        if self._draw_figures(first=len(self.frames) == 1, last=last):
            images, paint = self._figures(arrays, step, epoch)
            self.figure_steps.append(step)
            place, deferred = self._place()
            self._drawing += 1
            self._painters.submit(paint, lambda spent: self._log(place, step, {**media, **images}, spent), deferred)
        else:
            self.tracker.log_media(step, media)

    def _log(self, place, step: int, media: dict[str, Media], spent: float) -> None:
        """Log a snapshot's media once its figures are drawn (``spent`` seconds: their drawing's)."""
        place(step, media)
        self.host_seconds += spent
        self._drawing -= 1

    def _painter(self, kind: str, make):
        """The painter of ``kind`` for this run's layout (built by ``make`` the first time a program needs it)."""
        classes = None if self.labels is None else tuple(np.unique(self.labels))  # the legend's entries
        key = (kind, self.projection.is_pca, classes, tuple(self.class_names), len(self.x),
               None if self.image or kind != "recon" else id(self))  # vector data's figure holds its own inputs
        return self._painters.get(key, make)

    def _colors(self) -> np.ndarray:
        from aejax.analysis import figures

        return figures.point_colors(self.labels, self.class_names, len(self.x))

    def _figures(self, a: dict[str, np.ndarray], step: int, epoch: float) -> tuple[dict[str, Image], Callable[[], None]]:
        """The snapshot's figures as media, and what draws them (now or in a figure process)."""
        from aejax.analysis import figures

        name, limits, colors = f"{snapshot_name(step)}.png", self.limits, self._colors()
        title = f"{self.variant}, k={self.latent_dim}: step {step} (epoch {epoch:g})"
        axes = ("PC 1 of z", "PC 2 of z") if self.projection.is_pca else ("z₁", "z₂")
        scatter = self._painter("scatter", lambda: figures.LatentScatter(self.labels, self.class_names, axes, n=len(self.x)))
        draws = {"latent/scatter": (scatter, self.media / "latent" / name, a["z_2d"], a["grad_2d"], limits, title, colors)}
        n = self.settings.recon_examples
        if not self.image:
            recon = self._painter("recon", lambda: figures.DataSpace(self.x, self.labels, self.class_names))
            draws["latent/reconstructions"] = (recon, self.media / "reconstructions" / name,
                                               a["recon"].astype(np.float32), title, a.get("grid_decoded"))
        else:
            recon = self._painter("recon", lambda: figures.ImageRows(["input", "output"]))
            draws["latent/reconstructions"] = (recon, self.media / "reconstructions" / name,
                                               [self.x[:n], a["recon"][:n]], title)
            if "grid_decoded" in a:
                draws["latent/manifold"] = (self._painter("manifold", figures.Manifold), self.media / "manifold" / name,
                                            a["grid_decoded"], a["grid_z1"], a["grid_z2"], limits,
                                            f"decoded latent grid: {title}")
            if "samples" in a:
                side = int(np.sqrt(len(a["samples"])))
                samples = self._painter(f"samples{side}", lambda: figures.ImageRows([""] * side))
                draws["vae/samples"] = (samples, self.media / "samples" / name,
                                        [a["samples"][r * side:(r + 1) * side] for r in range(side)],
                                        f"decoded from N(0, I): {title}")
                interp = self._painter("interp", lambda: figures.ImageRows(["z(a) → z(b)"]))
                draws["vae/interpolation"] = (interp, self.media / "interpolation" / name, [a["interp"]],
                                              f"interpolation: {title}")

        def paint() -> None:
            for painter, *args in draws.values():
                painter.draw(*args)

        return {key: Image(args[1], title) for key, args in draws.items()}, paint

    def finish(self, step: int) -> None:
        """Flush the last snapshot; log the evolution figure and, if enabled, the explorer page."""
        self.flush()
        media: dict[str, Media] = {}
        paint = None
        if self.settings.images and self.frames:
            from aejax.analysis import figures

            picks = np.unique(np.linspace(0, len(self.frames) - 1, min(EVOLUTION_PANELS, len(self.frames))).astype(int))
            axes = ("PC 1", "PC 2") if self.projection.is_pca else ("z₁", "z₂")
            painter = self._painter(f"evolution{len(picks)}", lambda: figures.Evolution(
                len(picks), self.labels, self.class_names, len(self.x), axes))
            path, frames, limits, colors = self.media / "latent_evolution.png", [self.frames[i] for i in picks], \
                self.limits, self._colors()
            paint = lambda: painter.draw(path, frames, limits, colors)  # noqa: E731
            media["latent/evolution"] = Image(path, f"{self.variant}, k={self.latent_dim}: latent space over training")

        place, deferred = self._place()

        def then(spent: float) -> None:
            start = time.perf_counter()
            if self.settings.explorer:  # its page shows the figures: after they are drawn
                from aejax.analysis.explorer import write_explorer

                media["latent/explorer"] = Html(write_explorer(self.run_dir))
            if media or deferred:  # (empty media too fill the reserved place, logging nothing)
                place(step, media)
            self.host_seconds += spent + time.perf_counter() - start

        self._painters.submit(paint or (lambda: None), then, deferred)


class Snapshots:
    """One compiled snapshot program for a run, or for all runs of a seed batch (``batched``: the
    parameters and every recorder's probe set stacked on a leading axis), and their recorders.
    Snapshots run on one device with the first replica of the parameters (host work: process 0's
    alone with several processes)."""

    def __init__(self, recorders: list[SnapshotRecorder], graphdef: nnx.GraphDef, params, recon: str,
                 batched: bool = False):
        self.recorders, self.batched = recorders, batched
        sc = recorders[0].settings
        args = jax.tree.map(lambda *a: np.stack(a), *(r.args for r in recorders)) if batched else recorders[0].args
        self._args = jax.device_put(args)
        layers = dense_layers(nnx.merge(graphdef, first_replica(params)))  # static: the activations' names
        for recorder in recorders:
            recorder.decoder_meta = {} if layers is None else {"decoder_activation": np.str_(layers.activation),
                                                               "decoder_output": np.str_(layers.output)}
        self._fn = make_snapshot_fn(graphdef, recon, sc.grid, sc.interp_steps, batched).lower(
            first_replica(params), *self._args).compile()

    def take(self, params, step: int, epoch: float, last: bool = False, runs: Optional[list[int]] = None) -> None:
        """Dispatch a snapshot of ``params`` (asynchronously) for the runs ``runs`` (default: all)."""
        out = self._fn(first_replica(params), *self._args)
        for i, recorder in enumerate(self.recorders):
            if runs is None or i in runs:
                recorder.take(out, i if self.batched else None, step, epoch, last)
