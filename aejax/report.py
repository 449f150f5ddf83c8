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
import sys
from pathlib import Path
from typing import Optional

from aejax.reporting.plots import plot_by_series, plot_loss_curves, plot_vs_latent_dim
from aejax.reporting.runs import LATENT, Run, find_runs, load_run, load_runs, varied_parameters
from aejax.reporting.table import INITIAL, METRICS, markdown_table, metric_columns, table, write_csv
from aejax.rundir import FINISHED

__all__ = ["FINISHED", "INITIAL", "METRICS", "Run", "find_runs", "load_run", "load_runs", "main", "markdown_table",
           "metric_columns", "plot_by_series", "plot_loss_curves", "plot_vs_latent_dim", "table", "varied_parameters",
           "write_csv", "write_report"]


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
