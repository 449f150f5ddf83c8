"""Collect a study's measured results into experiments/<study>/ for its README.

    python experiments/collect.py STUDY RUN_OR_SWEEP_DIR [--metric test/mse] [--figures JOB ...]

Writes ``report.md``, ``report.csv`` and the report's plots (``aejax-report``, run here with the
sweep directory shown relative to the working directory), and copies the figures the runs drew
themselves (snapshots): the latent space over training, the last latent scatter with its
opposite-gradient trails, the last decoded grid and reconstructions, named ``<job>_<figure>.png``
(``--figures`` picks the jobs; all by default).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from aejax.report import find_runs, write_report

HERE = Path(__file__).resolve().parent
FIGURES = {"latent_evolution": "media/latent_evolution.png", "latent_final": "media/latent/step_*.png",
           "decoded_grid": "media/manifold/step_*.png", "reconstructions": "media/reconstructions/step_*.png"}


def collect(study: str, root: Path, metric: str, jobs: list[str] | None) -> list[Path]:
    out = HERE / study
    out.mkdir(exist_ok=True)
    table, written = write_report(root, out, metric)
    print(table)
    for run in find_runs(root):
        label = run.name if run != root else "run"
        if jobs and label not in jobs:
            continue
        for name, pattern in FIGURES.items():
            found = sorted(run.glob(pattern))
            if found:  # the last one: the end of training
                target = out / f"{label}_{name}.png"
                shutil.copyfile(found[-1], target)
                written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="the folder under experiments/, e.g. bottleneck_sweep")
    parser.add_argument("root", type=Path, help="the study's sweep (or run) directory")
    parser.add_argument("--metric", default=None, help="the report's plotted metric (default: aejax-report's)")
    parser.add_argument("--figures", nargs="*", default=None, help="jobs whose snapshot figures to copy (default: all)")
    args = parser.parse_args()
    for path in collect(args.study, args.root, args.metric, args.figures):
        print("wrote", path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)


if __name__ == "__main__":
    main()
