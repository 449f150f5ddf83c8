"""``aejax-report MULTIRUN_DIR``: compare the runs of a sweep from their run directories alone.

Reads each job's ``config.yaml``, ``summary.json``, ``metrics.jsonl`` and Hydra's
``.hydra/overrides.yaml`` (no W&B), and writes into the sweep directory (or ``--out``):

- ``report.md`` and ``report.csv``: a row per run with the parameters that vary across the runs,
  its status (runs that failed or diverged are marked, with their error), the untrained model's
  validation loss (``val/loss@0``) and the final metrics;
- ``final_loss_vs_latent_dim.png``: the final metric (``--metric``; by default ``val/loss``, or
  ``val/mse`` when the runs' objectives differ: ``choose_metric``) against ``model.latent_dim``,
  one line per series (what varies besides the bottleneck and the seed, e.g. the variant): the
  mean over seeds, the min-max spread as a band, every run as a dot, and PCA's test MSE at the
  same sizes (one line per dataset) when the metric is an MSE; with one bottleneck size,
  ``final_loss_by_run.png`` instead: a bar per series, with its dataset's PCA error over it;
- ``loss_curves.png``: training and validation loss per epoch of every run (``val/mse`` alone when
  their objectives differ: one axis never holds two objectives);

and prints the Markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from aejax.reporting.plots import LOSSES, plot_by_series, plot_loss_curves, plot_vs_latent_dim
from aejax.reporting.runs import LATENT, Run, find_runs, load_run, load_runs, objective, varied_parameters
from aejax.reporting.table import INITIAL, METRICS, markdown_table, metric_columns, table, write_csv
from aejax.rundir import FINISHED

__all__ = ["FINISHED", "INITIAL", "METRICS", "Run", "choose_metric", "find_runs", "load_run", "load_runs", "main", "markdown_table",
           "metric_columns", "plot_by_series", "plot_loss_curves", "plot_vs_latent_dim", "table", "varied_parameters",
           "write_csv", "write_report"]


# Metrics in the units of each run's own objective: not comparable across objectives.
OBJECTIVE_METRICS = ("val/loss", "train/loss", "val/loss_best")


def choose_metric(runs: list[Run], metric: Optional[str]) -> tuple[str, str]:
    """``(metric to plot, the sentence that says why)``: ``metric`` (default ``val/loss``), except that
    an objective's value is replaced by the shared ``val/mse`` (``test/mse`` when a run lacks it)
    when the runs' objectives differ (``mse`` and ``bce + kl (1.0)`` on one axis mean nothing)."""
    objectives = sorted({objective(run) for run in runs if run.ok})
    asked = metric or "val/loss"
    if len(objectives) <= 1:
        return asked, f"plotted: {asked}" + (f" (the objective: {objectives[0]})" if asked in OBJECTIVE_METRICS and objectives else "")
    if asked not in OBJECTIVE_METRICS:
        return asked, f"plotted: {asked}"
    shared = "val/mse" if all("val/mse" in run.summary for run in runs if run.ok) else "test/mse"
    return shared, (f"plotted: {shared}, not {asked}: the runs' objectives differ ({'; '.join(objectives)}), so each "
                    f"{asked} is on its own scale; {shared} (per value) is shared by all")


def write_report(root: Path, out: Optional[Path] = None, metric: Optional[str] = None) -> tuple[str, list[Path]]:
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
    metric, why = choose_metric(runs, metric)
    figures = []
    sizes = {run.config.get(LATENT) for run in runs if run.ok}
    if len(sizes) > 1:  # a bottleneck sweep
        if plot_vs_latent_dim(runs, varied, metric, out / "final_loss_vs_latent_dim.png"):
            figures.append(out / "final_loss_vs_latent_dim.png")
    elif plot_by_series(runs, varied, metric, out / "final_loss_by_run.png"):
        figures.append(out / "final_loss_by_run.png")
    shared = metric not in OBJECTIVE_METRICS and len({objective(run) for run in runs if run.ok}) > 1
    curves = (("val/mse",), "val/mse (per value, shared by every objective)") if shared else (LOSSES,)
    if plot_loss_curves(runs, varied, out / "loss_curves.png", *curves):
        figures.append(out / "loss_curves.png")
    finished = sum(run.ok for run in runs)
    counts = f"{len(runs)} runs: {finished} finished" + (f", {len(runs) - finished} did not finish" if finished < len(runs) else "")
    text = [f"# aejax report: {root}", "", counts + (f"; varied: {', '.join(varied)}" if varied else ""), "", md_table, "",
            why + ".", ""]
    text += [f"![{p.stem}]({p.relative_to(out) if p.is_relative_to(out) else p})" for p in figures]
    (out / "report.md").write_text("\n".join(text) + "\n")
    written = [out / "report.md", *written, *figures]
    return md_table + "\n\n" + why + ".", written


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="aejax-report", description="Compare the runs of a sweep from their run directories: "
                                     "report.md, report.csv and plots (no W&B needed).")
    parser.add_argument("multirun_dir", type=Path, help="a sweep directory (multirun/DATE/TIME) or any folder of run directories")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: MULTIRUN_DIR)")
    parser.add_argument("--metric", default=None,
                        help="summary metric plotted against model.latent_dim (default val/loss, or val/mse when the runs' "
                             "objectives differ; test/mse or val/mse add PCA's error)")
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
