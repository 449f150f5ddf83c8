"""The evaluation figures of docs/evaluation.md: AE/PCA error ratio and probe accuracy at k = 2 and 32;
with --speed, what the end-of-run evaluation costs against training (docs/performance.md).

Runs `aejax-train` (W&B off) on scikit-learn's digits (the default experiment) and on
Fashion-MNIST (the 784-128-32-k bowtie, 20 epochs), reads each summary.json, prints a table.
--speed: trains `dataset=fashion_mnist` (the default MLP, --epochs 10) in a fresh process per
round with the evaluation off, then times `evaluate` in that process as a run does (cold: its
imports and compiles come from that process; the compile cache as `aejax-train` sets it up),
for this checkout and, with --baseline DIR, another one side by side (rounds alternate); each
part's wall and CPU seconds, and what a dataset's first run adds (the PCA basis fitted and its
test error computed without the cache, after the timed evaluation).
Usage: python scripts/measure_eval.py [--fashion-epochs 20] [--data-dir DIR]
       python scripts/measure_eval.py --speed [--epochs 10] [--rounds 3] [--baseline ../main] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in the checkout under test (PYTHONPATH): train with the evaluation off, then evaluate once.
SPEED_DRIVER = """
import json, sys, time
from aejax.startup import setup_compile_cache
setup_compile_cache()
import jax
from omegaconf import OmegaConf
import aejax
from aejax.analysis.evaluate import evaluate
from aejax.assemble import load_data
overrides, run_dir = json.loads(sys.argv[1]), sys.argv[2]
run = aejax.train([*overrides, "eval.enabled=false"], run_dir=run_dir)
cfg = aejax.compose(overrides)
data = load_data(cfg.dataset)
from flax import nnx
graphdef, params = nnx.split(run.model)
import inspect
parts, cpu_parts, started = {}, {}, {}
def report(name, seconds):  # each part's wall and CPU seconds (all threads)
    if seconds is None:
        started[name] = time.process_time()
    else:
        parts[name], cpu_parts[name] = round(seconds, 3), round(time.process_time() - started[name], 3)
extra = {"report": report} if "report" in inspect.signature(evaluate).parameters else {}
settings, key = OmegaConf.to_object(cfg.eval), jax.random.key(0)  # made before the clock starts, as a run does
start, cpu = time.perf_counter(), time.process_time()
s = evaluate(settings, data, graphdef, params, key, recon=cfg.variant.recon, batch_size=cfg.trainer.eval_batch_size,
             **extra)
s["eval_s"], s["eval_cpu_s"], s["parts"], s["cpu_parts"] = (time.perf_counter() - start, time.process_time() - cpu,
                                                             parts, cpu_parts)
s["train_time_s"] = run.summary["train_time_s"]
from aejax.analysis import pca
if hasattr(pca, "baseline"):  # a dataset's first run: the basis fitted and the test error computed, no cache
    start, cpu = time.perf_counter(), time.process_time()
    pca.baseline(data.x_train, data.x_test, cfg.model.latent_dim, None)
    s["pca_first_s"], s["pca_first_cpu_s"] = time.perf_counter() - start, time.process_time() - cpu
print("RESULT " + json.dumps(s))
"""

RUNS = {
    "digits": [],
    "fashion_mnist": ["dataset=fashion_mnist", "encoder.hidden=[128,32]"],
}


def speed(args: argparse.Namespace) -> None:
    checkouts = {"this checkout": ROOT, **({"baseline": Path(args.baseline).resolve()} if args.baseline else {})}
    overrides = ["dataset=fashion_mnist", f"trainer.epochs={args.epochs}", "logger.mode=disabled", "trainer.progress=off",
                 *([f"dataset.data_dir={args.data_dir}"] if args.data_dir else [])]
    rows: dict[str, list[dict]] = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, path in (list(checkouts.items()) if r % 2 == 0 else list(checkouts.items())[::-1]):
                env = {**os.environ, "PYTHONPATH": str(path)}
                out = subprocess.run([sys.executable, "-c", SPEED_DRIVER, json.dumps(overrides), f"{tmp}/{name}-{r}"],
                                     env=env, capture_output=True, text=True, cwd=tmp)
                line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
                if line is None:
                    raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
                rows[name].append(json.loads(line[7:]))
                s = rows[name][-1]
                each = ", ".join(f"{p} {t:.2f}/{s.get('cpu_parts', {}).get(p, float('nan')):.2f}"
                                 for p, t in s["parts"].items()) or "no parts"
                first = (f"; a first run's PCA {s['pca_first_s']:.2f} s ({s['pca_first_cpu_s']:.2f} CPU-s)"
                         if "pca_first_s" in s else "")
                print(f"round {r + 1} {name}: train {s['train_time_s']:.2f} s, evaluation {s['eval_s']:.2f} s "
                      f"({s['eval_cpu_s']:.2f} CPU-s; parts wall/CPU s: {each}){first}, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\n| {args.epochs} epochs, Fashion-MNIST, default MLP | training (train_time_s) | evaluation | its CPU time | "
          "evaluation / training | test/mse | PCA | probe | kNN |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, runs in rows.items():
        train = sorted(s["train_time_s"] for s in runs)
        ev = sorted(s["eval_s"] for s in runs)
        ratio = sorted(s["eval_s"] / s["train_time_s"] for s in runs)
        s = runs[0]
        cpu = sorted(s["eval_cpu_s"] for s in runs)
        print(f"| {name} | {train[len(train) // 2]:.2f} s ({train[0]:.2f}-{train[-1]:.2f}) | "
              f"{ev[len(ev) // 2]:.2f} s ({ev[0]:.2f}-{ev[-1]:.2f}) | {cpu[0]:.2f}-{cpu[-1]:.2f} s | "
              f"{ratio[len(ratio) // 2]:.1%} | "
              f"{s['test/mse']:.5f} | {s['test/pca_mse']:.5f} | {s['test/probe_accuracy']:.2%} | {s['test/knn_accuracy']:.2%} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fashion-epochs", type=int, default=20)
    parser.add_argument("--data-dir", default=None, help="dataset.data_dir for Fashion-MNIST")
    parser.add_argument("--speed", action="store_true", help="time the evaluation against training instead")
    parser.add_argument("--epochs", type=int, default=10, help="--speed: epochs of training")
    parser.add_argument("--rounds", type=int, default=3, help="--speed: processes per checkout")
    parser.add_argument("--baseline", default=None, help="--speed: another checkout to time side by side")
    args = parser.parse_args()
    if args.speed:
        return speed(args)
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
