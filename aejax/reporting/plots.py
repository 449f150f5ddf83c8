"""The figures of ``aejax-report``: the final metric against the bottleneck size (or per series
with one size) and every run's loss curves. Each returns its matplotlib Figure (what it plotted,
for tests), or None when there is nothing to plot. matplotlib is imported only when a figure is drawn."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from aejax.reporting.runs import LATENT, SEED, Run


def _series_label(run: Run, varied: list[str]) -> str:
    parts = [f"{k.replace('/', '.').split('.')[-1]}={run.params[k]}" for k in varied if k not in (LATENT, SEED) and k in run.params]
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


def _dataset(run: Run) -> str:
    return str(run.config.get("dataset.name", "data"))


def plot_vs_latent_dim(runs: list[Run], varied: list[str], metric: str, path: Path):
    """The final ``metric`` against model.latent_dim per series, and PCA's test MSE at the same
    sizes when the metric is an MSE, one line per dataset; the Figure, or None if there is nothing to plot."""
    from matplotlib.figure import Figure

    points: dict[str, dict[int, list[float]]] = {}
    pca: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        k, y = run.config.get(LATENT), _number(run.summary.get(metric))
        if not run.ok or not isinstance(k, int) or y is None:
            continue
        points.setdefault(_series_label(run, varied), {}).setdefault(k, []).append(y)
        if _number(run.summary.get("test/pca_mse")) is not None:
            pca.setdefault(_dataset(run), {}).setdefault(k, []).append(float(run.summary["test/pca_mse"]))
    if not points:
        return None
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
        for i, (dataset, by_k) in enumerate(sorted(pca.items())):
            ks = sorted(by_k)
            where = f" on {dataset}" if len(pca) > 1 else ""
            ax.plot(ks, [sum(by_k[k]) / len(by_k[k]) for k in ks], color="k", ls=["--", ":", "-."][i % 3], marker="x",
                    label=f"PCA, k components{where} (test MSE)")
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
    return fig


def plot_by_series(runs: list[Run], varied: list[str], metric: str, path: Path):
    """The final ``metric`` per series (one bottleneck size): the mean over seeds as a bar, each run
    as a dot, and when the metric is an MSE the PCA baseline of each series' own dataset as a dashed
    mark over its bar; the Figure, or None if there is nothing to plot."""
    from matplotlib.figure import Figure

    values: dict[str, list[float]] = {}
    pca: dict[str, list[float]] = {}
    for run in runs:
        y = _number(run.summary.get(metric))
        if run.ok and y is not None:
            label = _series_label(run, varied)
            values.setdefault(label, []).append(y)
            if _number(run.summary.get("test/pca_mse")) is not None:
                pca.setdefault(label, []).append(float(run.summary["test/pca_mse"]))
    if not values:
        return None
    labels = list(values)
    fig = Figure(figsize=(max(5.0, 1.2 * len(labels) + 2), 4.4), layout="constrained")
    ax = fig.subplots()
    for i, label in enumerate(labels):
        ax.bar(i, sum(values[label]) / len(values[label]), color=f"C{i % 10}", alpha=0.6)
        ax.scatter([i] * len(values[label]), values[label], color="k", s=12, zorder=3)
    if pca and "mse" in metric:
        for i, label in enumerate(labels):
            if label in pca:
                ax.hlines(sum(pca[label]) / len(pca[label]), i - 0.42, i + 0.42, color="k", ls="--", zorder=4,
                          label="PCA, same k, same dataset (test MSE)" if i == 0 else None)
        fig.legend(loc="outside lower center", fontsize="small")  # below: not over a bar's mark
    # one parameter per line: long labels side by side do not overlap
    ax.set_xticks(range(len(labels)), [label.replace(", ", "\n") for label in labels], fontsize="small")
    ks = {run.config.get(LATENT) for run in runs if run.ok}
    ax.set(ylabel=f"final {metric}", title=f"final {metric}" + (f", model.latent_dim={ks.pop()}" if len(ks) == 1 else "")
           + "\nbars: mean over seeds, dots: runs")
    ax.grid(True, axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    return fig


LOSSES = ("train/loss", "val/loss")


def plot_loss_curves(runs: list[Run], varied: list[str], path: Path, keys: tuple[str, ...] = LOSSES,
                     ylabel: str = "loss (the variant's objective, mean per value)"):
    """``keys`` (train/loss and val/loss; ``("val/mse",)`` when the runs' objectives differ) per
    epoch of every run that logged any, a panel per key: a colour per series, and with at most 12
    runs a legend entry per run; runs that did not finish are dashed. The Figure, or None."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    runs = [run for run in runs if any(key in r for r in run.rows for key in keys)]
    if not runs:
        return None
    series = list(dict.fromkeys(_series_label(run, varied) for run in runs))
    per_run = len(runs) <= 12
    fig = Figure(figsize=(5.5 * len(keys) + 2.5, 4.2), layout="constrained")
    axes = list(fig.subplots(1, len(keys), sharey=True, squeeze=False)[0])
    values, handles = [], []
    styles = ["-", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]
    seen: dict[str, int] = {}
    for run in runs:
        label = _series_label(run, varied)
        color = f"C{series.index(label) % 10}"
        style = "--" if not run.ok else styles[seen.get(label, 0) % len(styles)] if per_run else "-"
        seen[label] = seen.get(label, 0) + 1
        for ax, key in zip(axes, keys):
            xy = [(r["epoch"], float(r[key])) for r in run.rows if _number(r.get(key)) is not None and "epoch" in r]
            if xy:
                values += [y for _, y in xy]
                ax.plot(*zip(*xy), linestyle=style, color=color, alpha=0.85, lw=1.3, label=label)
        if per_run:
            name = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in run.params.items()) or run.name
            handles.append(Line2D([], [], color=color, linestyle=style, label=f"{name} ({run.status})" if not run.ok else name))
    if not per_run:
        handles = [Line2D([], [], color=f"C{i % 10}", label=label) for i, label in enumerate(series)]
    for ax, key in zip(axes, keys):
        ax.set(xlabel="epoch", title=f"{key}, {len(runs)} runs")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        _log_scale_if_wide(ax, values)
    axes[0].set_ylabel(ylabel)
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    fig.savefig(path, dpi=110)
    return fig
