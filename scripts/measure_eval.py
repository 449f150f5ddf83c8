"""The evaluation figures of docs/evaluation.md: AE/PCA error ratio and probe accuracy at k = 2 and 32.

Runs `aejax-train` (W&B off) on scikit-learn's digits (the default experiment) and on
Fashion-MNIST (the 784-128-32-k bowtie, 20 epochs), reads each summary.json, prints a table.
Usage: python scripts/measure_eval.py [--fashion-epochs 20] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

RUNS = {
    "digits": [],
    "fashion_mnist": ["dataset=fashion_mnist", "encoder.hidden=[128,32]"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fashion-epochs", type=int, default=20)
    parser.add_argument("--data-dir", default=None, help="dataset.data_dir for Fashion-MNIST")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, overrides in RUNS.items():
            extra = list(overrides)
            if dataset == "fashion_mnist":
                extra.append(f"trainer.epochs={args.fashion_epochs}")
                if args.data_dir:
                    extra.append(f"dataset.data_dir={args.data_dir}")
            for k in (2, 32):
                run_dir = Path(tmp) / f"{dataset}-{k}"
                command = ["aejax-train", *extra, f"model.latent_dim={k}", "logger.mode=disabled",
                           f"hydra.run.dir={run_dir}"]
                subprocess.run(command, check=True, capture_output=True, cwd=tmp)
                s = json.loads((run_dir / "summary.json").read_text())
                rows.append((dataset, k, s))
                print(" ".join(command[1:-1]), flush=True)
    print("\n| dataset | k | epochs | test MSE | PCA MSE | AE/PCA | linear probe | kNN (k=5) |")
    print("|---|---|---|---|---|---|---|---|")
    for dataset, k, s in rows:
        print(f"| {dataset} | {k} | {s['epochs']} | {s['test/mse']:.4f} | {s['test/pca_mse']:.4f} | "
              f"{s['test/ae_pca_ratio']:.2f} | {s['test/probe_accuracy']:.1%} | {s['test/knn_accuracy']:.1%} |")


if __name__ == "__main__":
    main()
