"""``aejax-report MULTIRUN_DIR``: compare the runs of a sweep from their run directories alone.

Reads each job's ``config.yaml``, ``summary.json``, ``metrics.jsonl`` and Hydra's
``.hydra/overrides.yaml`` (no W&B), and writes into the sweep directory (or ``--out``):

- ``report.md`` and ``report.csv``: a row per run with the parameters that vary across the runs,
  its status (runs that failed or diverged are marked, with their error), the untrained model's
  validation loss (``val/loss@0``) and the final metrics;
- ``final_loss_vs_latent_dim.png``: the final metric (``--metric``, default ``val/loss``) against
  ``model.latent_dim``, one line per series (what varies besides the bottleneck and the seed,
  e.g. the variant): the mean over seeds, the min-max spread as a band, every run as a dot, and
  PCA's test MSE at the same sizes when the metric is an MSE; with one bottleneck size,
  ``final_loss_by_run.png`` instead: a bar per series;
- ``loss_curves.png``: training and validation loss per epoch of every run;

and prints the Markdown table.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

FINISHED = "finished"
# Final metrics shown when any run has them, in this order.
METRICS = ("val/loss", "val/mse", "train/loss", "val/loss_best", "test/mse", "test/pca_mse", "test/ae_pca_ratio",
           "test/probe_accuracy", "test/knn_accuracy", "test/iwae_nll", "test/active_units", "anomaly/auroc",
           "epochs", "train_time_s", "compile_time_s")
GROUPS = ("encoder", "decoder", "variant", "dataset", "optimizer", "trainer", "logger")
IGNORED = ("logger.", "hydra.")  # never "what varies": names, tags and groups follow from the rest
SEED, LATENT = "seed", "model.latent_dim"


@dataclass
class Run:
    path: Path
    name: str  # relative to the report's root
    status: str
    config: dict[str, Any]  # flattened: "model.latent_dim" -> 2
    overrides: Optional[dict[str, str]]  # Hydra's task overrides of the job, key -> value as typed
    summary: dict[str, Any]
    rows: list[dict[str, float]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)  # the varied parameters, filled in by load_runs

    @property
    def ok(self) -> bool:
        return self.status == FINISHED


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def _read_yaml(path: Path) -> Any:
    """A YAML file as plain data (interpolations left as written), or None."""
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except (OSError, ValueError, OmegaConfBaseException, yaml.YAMLError):
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _read_rows(path: Path) -> list[dict[str, float]]:
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:  # a job killed mid-write leaves a partial last line
            break
    return rows


def _natural(path: Path) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts]


def find_runs(root: Path) -> list[Path]:
    """Run directories under ``root`` (or ``root`` itself): those with a summary.json, a
    config.yaml beside metrics.jsonl, or Hydra's .hydra/overrides.yaml."""
    found = set()
    for marker in ("summary.json", ".hydra/overrides.yaml", "metrics.jsonl"):
        for path in root.rglob(marker):
            run = path.parent.parent if marker.startswith(".hydra") else path.parent
            if "wandb" not in run.relative_to(root).parts:
                found.add(run)
    found -= {run for run in found if _batch_runs(run)}  # a seed batch is shown as its runs
    return sorted(found, key=lambda p: _natural(p.relative_to(root)))


def _batch_runs(path: Path) -> list[str]:
    """The runs of a seed batch's directory (``trainer.num_seeds > 1``), none for a run."""
    runs = _read_json(path / "summary.json").get("runs")
    return runs if isinstance(runs, list) else []


def _override_key(key: str) -> str:
    return key.lstrip("+~")


def _overrides(run: Path) -> Optional[dict[str, str]]:
    items = _read_yaml(run / ".hydra" / "overrides.yaml")
    if not isinstance(items, list):
        return None
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        key = _override_key(key).split("@")[0]  # experiment/intro_part@_global_ -> experiment/intro_part
        if not key.startswith("hydra."):
            out[key] = value
    return out


def load_run(path: Path, root: Path) -> Run:
    config = _read_yaml(path / "config.yaml")
    overrides = _overrides(path)
    if overrides is None and path.name in _batch_runs(path.parent) and isinstance(config, dict):
        overrides = _overrides(path.parent)  # a seed batch's run: the batch's overrides, with its own seed
        if overrides is not None:
            overrides.pop("trainer.num_seeds", None)
            overrides["seed"] = str(config.get("seed"))
    summary = _read_json(path / "summary.json")
    return Run(path=path, name=str(path.relative_to(root)) if path != root else path.name,
               status=str(summary.get("status", "missing")), config=_flatten(config) if isinstance(config, dict) else {},
               overrides=overrides, summary=summary, rows=_read_rows(path / "metrics.jsonl"))


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def varied_parameters(runs: list[Run]) -> list[str]:
    """The parameters that differ across runs: Hydra's overrides when every run has them (as the
    user typed them: ``variant=vae``), else the differing config values (a group by its name)."""
    if runs and all(run.overrides is not None for run in runs):
        keys = list(dict.fromkeys(k for run in runs for k in run.overrides))  # type: ignore[union-attr]
        varied = [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]  # type: ignore[union-attr]
        for run in runs:
            run.params = {k: run.overrides.get(k, "") for k in varied}  # type: ignore[union-attr]
        return varied
    keys = list(dict.fromkeys(k for run in runs for k in run.config if not k.startswith(IGNORED)))
    varied = [k for k in keys if len({_fmt_value(run.config.get(k)) for run in runs}) > 1]
    named = {g for g in GROUPS if f"{g}.name" in varied}  # variant=vae says what variant.recon etc. are
    varied = [k for k in varied if k.split(".")[0] not in named or k == f"{k.split('.')[0]}.name"]
    labels = [k.split(".")[0] if k.split(".")[0] in named else k for k in varied]  # variant.name -> variant
    for run in runs:
        run.params = {label: _fmt_value(run.config[k]) if k in run.config else "" for label, k in zip(labels, varied)}
    return labels


def load_runs(root: Path) -> tuple[list[Run], list[str]]:
    runs = [load_run(path, root) for path in find_runs(root)]
    return runs, varied_parameters(runs)


def metric_columns(runs: list[Run]) -> list[str]:
    return [m for m in METRICS if any(m in run.summary for run in runs)]


INITIAL = "val/loss@0"  # the untrained model's validation loss (metrics.jsonl, step 0)


def _initial_loss(run: Run) -> Optional[float]:
    first = run.rows[0] if run.rows else {}
    return first.get("val/loss") if first.get("step") == 0 else None


def _problem(run: Run) -> str:
    """Why a run did not finish: its error, or where it diverged."""
    if run.summary.get("error"):
        return str(run.summary["error"])
    if run.status == "diverged" and "diverged_at_step" in run.summary:
        return f"NaN/Inf loss at step {run.summary['diverged_at_step']}"
    return ""


def table(runs: list[Run], varied: list[str]) -> tuple[list[str], list[list[Any]]]:
    """The columns and the raw cells of the comparison table (numbers stay numbers)."""
    metrics = metric_columns(runs)
    initial = [INITIAL] if any(_initial_loss(run) is not None for run in runs) else []
    errors = any(_problem(run) for run in runs)
    header = ["run", "status", *varied, *initial, *metrics, *(["error"] if errors else [])]
    rows = []
    for run in runs:
        row = [run.name, run.status, *(run.params.get(k, "") for k in varied), *([_initial_loss(run)] if initial else []),
               *(run.summary.get(m) for m in metrics)]
        if errors:
            row.append(_problem(run))
        rows.append(row)
    return header, rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [_cell(v) for v in row]
        if row[1] != FINISHED:  # failed, diverged, running (killed), missing
            cells[1] = f"**{cells[1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])


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


def write_report(root: Path, out: Optional[Path] = None, metric: str = "val/loss") -> tuple[str, list[Path]]:
    """Write the report files; return the Markdown table and the paths written."""
    out = out or root
    out.mkdir(parents=True, exist_ok=True)
    runs, varied = load_runs(root)
    if not runs:
        raise FileNotFoundError(f"no run directories (summary.json, config.yaml) under {root}")
    header, rows = table(runs, varied)
    md_table = markdown_table(header, rows)
    written = [out / "report.csv"]
    write_csv(written[0], header, rows)
    figures = []
    sizes = {run.config.get(LATENT) for run in runs if run.ok}
    if len(sizes) > 1:  # a bottleneck sweep
        if plot_vs_latent_dim(runs, varied, metric, out / "final_loss_vs_latent_dim.png"):
            figures.append(out / "final_loss_vs_latent_dim.png")
    elif plot_by_series(runs, varied, metric, out / "final_loss_by_run.png"):
        figures.append(out / "final_loss_by_run.png")
    if plot_loss_curves(runs, varied, out / "loss_curves.png"):
        figures.append(out / "loss_curves.png")
    finished = sum(run.ok for run in runs)
    counts = f"{len(runs)} runs: {finished} finished" + (f", {len(runs) - finished} did not finish" if finished < len(runs) else "")
    text = [f"# aejax report: {root}", "", counts + (f"; varied: {', '.join(varied)}" if varied else ""), "", md_table, ""]
    text += [f"![{p.stem}]({p.relative_to(out) if p.is_relative_to(out) else p})" for p in figures]
    (out / "report.md").write_text("\n".join(text) + "\n")
    written = [out / "report.md", *written, *figures]
    return md_table, written


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="aejax-report", description="Compare the runs of a sweep from their run directories: "
                                     "report.md, report.csv and plots (no W&B needed).")
    parser.add_argument("multirun_dir", type=Path, help="a sweep directory (multirun/DATE/TIME) or any folder of run directories")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: MULTIRUN_DIR)")
    parser.add_argument("--metric", default="val/loss",
                        help="summary metric plotted against model.latent_dim (default val/loss; test/mse or val/mse compare "
                             "across variants and add PCA's error)")
    args = parser.parse_args(argv)
    if not args.multirun_dir.is_dir():
        print(f"aejax-report: {args.multirun_dir} is not a directory", file=sys.stderr)
        return 2
    try:
        md_table, written = write_report(args.multirun_dir, args.out, args.metric)
    except FileNotFoundError as e:
        print(f"aejax-report: {e}", file=sys.stderr)
        return 2
    print(md_table)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
