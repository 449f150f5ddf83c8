"""The figures of ``aejax-report``: the final metric against the bottleneck size (or per series
with one size) and every run's loss curves. matplotlib is imported only when a figure is drawn."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from aejax.reporting.runs import LATENT, SEED, Run


def _series_label(run: Run, varied: list[str]) -> str:
    parts = [f"{k.split('.')[-1]}={run.params[k]}" for k in varied if k not in (LATENT, SEED) and k in run.params]
    if parts:
        return ", ".join(parts)
    return str(run.config.get("variant.name", "runs"))


def _number(value: Any) -> Optional[float]:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _log_scale_if_wide(ax, values: list[float]) -> None:
    """A log y-axis when the values span more than a factor of 20 (VAE and MSE losses together)."""
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")


def plot_vs_latent_dim(runs: list[Run], varied: list[str], metric: str, path: Path) -> bool:
    """The final ``metric`` against model.latent_dim per series; False if there is nothing to plot."""
    from matplotlib.figure import Figure

    points: dict[str, dict[int, list[float]]] = {}
    pca: dict[int, list[float]] = {}
    for run in runs:
        k, y = run.config.get(LATENT), _number(run.summary.get(metric))
        if not run.ok or not isinstance(k, int) or y is None:
            continue
        points.setdefault(_series_label(run, varied), {}).setdefault(k, []).append(y)
        if _number(run.summary.get("test/pca_mse")) is not None:
            pca.setdefault(k, []).append(float(run.summary["test/pca_mse"]))
    if not points:
        return False
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for label, by_k in points.items():
        ks = sorted(by_k)
        mean = [sum(by_k[k]) / len(by_k[k]) for k in ks]
        (line,) = ax.plot(ks, mean, marker="o", label=label)
        if any(len(by_k[k]) > 1 for k in ks):
            ax.fill_between(ks, [min(by_k[k]) for k in ks], [max(by_k[k]) for k in ks], color=line.get_color(), alpha=0.2)
        ax.scatter([k for k in ks for _ in by_k[k]], [y for k in ks for y in by_k[k]], s=10, color=line.get_color())
    if pca and "mse" in metric:
        ks = sorted(pca)
        ax.plot(ks, [sum(pca[k]) / len(pca[k]) for k in ks], "k--", marker="x", label="PCA, k components (test MSE)")
    all_k = sorted({k for by_k in points.values() for k in by_k})
    if len(all_k) > 1 and all_k[0] > 0:
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_k, [str(k) for k in all_k])
    _log_scale_if_wide(ax, [y for by_k in points.values() for ys in by_k.values() for y in ys])
    seeds = {run.config.get(SEED) for run in runs if run.ok}
    spread = f"mean over {len(seeds)} seeds, band: min-max" if len(seeds) > 1 else "one seed"
    ax.set(xlabel="model.latent_dim (bottleneck size)", ylabel=f"final {metric}", title=f"final {metric} ({spread})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    return True


def plot_by_series(runs: list[Run], varied: list[str], metric: str, path: Path) -> bool:
    """The final ``metric`` per series (one bottleneck size): the mean over seeds as a bar, each run
    as a dot, and PCA's test MSE as a line when the metric is an MSE."""
    from matplotlib.figure import Figure

    values: dict[str, list[float]] = {}
    pca: list[float] = []
    for run in runs:
        y = _number(run.summary.get(metric))
        if run.ok and y is not None:
            values.setdefault(_series_label(run, varied), []).append(y)
            if _number(run.summary.get("test/pca_mse")) is not None:
                pca.append(float(run.summary["test/pca_mse"]))
    if not values:
        return False
    fig = Figure(figsize=(max(5.0, 1.3 * len(values) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    labels = list(values)
    for i, label in enumerate(labels):
        ax.bar(i, sum(values[label]) / len(values[label]), color=f"C{i % 10}", alpha=0.6)
        ax.scatter([i] * len(values[label]), values[label], color="k", s=12, zorder=3)
    if pca and "mse" in metric:
        ax.axhline(sum(pca) / len(pca), color="k", ls="--", label=f"PCA, same k (test MSE) {sum(pca) / len(pca):.4g}")
        ax.legend(fontsize="small")
    ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center")
    ks = {run.config.get(LATENT) for run in runs if run.ok}
    ax.set(ylabel=f"final {metric}", title=f"final {metric}" + (f", model.latent_dim={ks.pop()}" if len(ks) == 1 else "")
           + "\nbars: mean over seeds, dots: runs")
    ax.grid(True, axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    return True


def plot_loss_curves(runs: list[Run], varied: list[str], path: Path) -> bool:
    """train/loss and val/loss per epoch of every run that logged any: a colour per series, and
    with at most 12 runs a legend entry per run; runs that did not finish are dashed."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    runs = [run for run in runs if run.rows]
    if not runs:
        return False
    series = list(dict.fromkeys(_series_label(run, varied) for run in runs))
    per_run = len(runs) <= 12
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    values, handles = [], []
    styles = ["-", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]
    seen: dict[str, int] = {}
    for run in runs:
        label = _series_label(run, varied)
        color = f"C{series.index(label) % 10}"
        style = "--" if not run.ok else styles[seen.get(label, 0) % len(styles)] if per_run else "-"
        seen[label] = seen.get(label, 0) + 1
        for ax, key in zip(axes, ("train/loss", "val/loss")):
            xy = [(r["epoch"], float(r[key])) for r in run.rows if _number(r.get(key)) is not None and "epoch" in r]
            if xy:
                values += [y for _, y in xy]
                ax.plot(*zip(*xy), linestyle=style, color=color, alpha=0.85, lw=1.3)
        if per_run:
            name = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in run.params.items()) or run.name
            handles.append(Line2D([], [], color=color, linestyle=style, label=f"{name} ({run.status})" if not run.ok else name))
    if not per_run:
        handles = [Line2D([], [], color=f"C{i % 10}", label=label) for i, label in enumerate(series)]
    for ax, key in zip(axes, ("train/loss", "val/loss")):
        ax.set(xlabel="epoch", title=f"{key}, {len(runs)} runs")
        ax.grid(True, alpha=0.3)
        _log_scale_if_wide(ax, values)
    axes[0].set_ylabel("loss (the variant's objective, mean per value)")
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    fig.savefig(path, dpi=110)
    return True
