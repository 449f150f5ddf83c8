"""One command for a GPU/TPU host: how fast aejax trains there, as one markdown table and JSON.

    python scripts/accelerator_report.py --out report/            # ~5-10 minutes on a fresh GPU host
    python scripts/accelerator_report.py --smoke --out /tmp/r     # tiny sizes (8x8 images): a CPU check of the script

Cases (each a real ``aejax.train`` run in this process: W&B, snapshots, checkpoints and the
end-of-run evaluation off; figures from its summary):

- ``speed``: the bowtie MLP (784-128-32-2, ``encoder.hidden=[128,32]``) and the conv autoencoder
  (``encoder=conv decoder=conv``) at batch 256 and 1024, float32;
- ``torch``: their PyTorch twins (same layers, Adam 1e-3, MSE, data on the device, one
  ``randperm`` per epoch) when ``import torch`` works; torch is never installed by aejax;
- ``seeds``: the bowtie at batch 256 as a seed batch of 1, 8 and 64 models (``trainer.num_seeds``);
- ``group``: the bowtie at batch 256 as one job, then as a batched sweep's group of 64 jobs
  (``hydra/launcher=aejax_batched``: ``model.latent_dim=2,4,8,16 x optimizer.lr x seed``, padded
  codes and each model's own learning rate), each through ``aejax-train -m`` in its own process; the
  table's note gives the group's training time over the one job's (the goal: at most 2x);
- ``precision``: bfloat16 against float32 (``model.dtype``), both models at batch 1024;
- ``sharded``: both models at batch 1024 with ``trainer.parallel=sharded`` against ``none``,
  when there are several devices.

Data: Fashion-MNIST when it is prepared (``--data-dir``; never downloaded), else random data of
its shape (the speed does not depend on the pixels; the JSON says which). Writes
``accelerator_report.md`` and ``accelerator_report.json`` into ``--out``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing it
    sys.path.insert(0, str(ROOT))

MODELS = {
    "bowtie": ["encoder.hidden=[128,32]", "decoder.hidden=[32,128]"],
    "conv": ["encoder=conv", "decoder=conv"],
}
COMMON = ["logger.mode=disabled", "eval.enabled=false", "snapshot.every=0", "trainer.checkpoint_every=0",
          "trainer.progress=off", "model.latent_dim=2"]


def sizes(smoke: bool) -> dict[str, Any]:
    """What each case runs: the full report's sizes, or tiny ones for a CPU smoke run."""
    if smoke:
        return {"train": 256, "test": 64, "side": 8, "epochs": 1, "batches": (16, 32), "big": 32, "seeds": (1, 2),
                "seed_batch": 16, "group": ("2,3", "1e-3", "0")}
    return {"train": None, "test": None, "side": 28, "epochs": 5, "batches": (256, 1024), "big": 1024,
            "seeds": (1, 8, 64), "seed_batch": 256, "group": ("2,4,8,16", "1e-3,2e-3,3e-3,5e-3", "0,1,2,3")}


def load_data(data_dir: Optional[str], size: dict[str, Any]):
    """``(dataset, description)``: Fashion-MNIST if prepared (cut to the smoke sizes), else random data of its shape."""
    from aejax import Dataset

    data, source = None, "random data of Fashion-MNIST's shape (60,000 + 10,000 x 28x28x1)"
    if size["train"] is None:
        try:
            from aejax.api import compose
            from aejax.data import load_dataset

            cfg = compose(["dataset=fashion_mnist", "dataset.download=false",
                           *([f"dataset.data_dir={data_dir}"] if data_dir else [])])
            data, source = load_dataset(cfg.dataset), "Fashion-MNIST"
        except Exception as e:  # not prepared on this host: the speed does not depend on the pixels
            print(f"accelerator_report: Fashion-MNIST not available ({type(e).__name__}); using random data",
                  file=sys.stderr)
    if data is None:
        n_train, n_test = size["train"] or 60000, size["test"] or 10000
        rng = np.random.default_rng(0)
        x = rng.random((n_train + n_test, size["side"], size["side"], 1), dtype=np.float32)
        y = rng.integers(0, 10, n_train + n_test)
        data = Dataset("fashion_mnist", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                       tuple(str(i) for i in range(10)), unit_range=True)
        if size["train"] is not None:
            source = f"random data, {n_train} + {n_test} x {size['side']}x{size['side']}x1 (smoke sizes)"
    return data, source


def run_aejax(case: str, model: str, batch: int, data, out: Path, epochs: int, seeds: int = 1,
              dtype: str = "float32", parallel: str = "none") -> dict[str, Any]:
    import aejax

    overrides = [*COMMON, *MODELS[model], f"trainer.batch_size={batch}", f"trainer.epochs={epochs}",
                 f"trainer.num_seeds={seeds}", f"model.dtype={dtype}", f"trainer.parallel={parallel}"]
    name = f"{case}-{model}-b{batch}-s{seeds}-{dtype}-{parallel}"
    start = time.perf_counter()
    result = aejax.train(overrides, data=data, run_dir=out / "runs" / name)
    s = result.summary if not result.seeds else result.seeds[0].summary
    per_model = float(s["examples_per_s"])
    return {"case": case, "framework": "aejax", "model": model, "batch": batch, "seeds": seeds, "dtype": dtype,
            "parallel": parallel, "epochs": int(s["epochs"]), "steps": int(s["steps"]),
            "train_s": float(s["train_time_s"]), "compile_s": float(s["compile_time_s"]),
            "examples_per_s": per_model, "model_examples_per_s": per_model * seeds,
            "val_loss": float(result.summary["val/loss"]) if not result.seeds else
            float(np.mean([r.summary["val/loss"] for r in result.seeds])),
            "wall_s": round(time.perf_counter() - start, 2), "overrides": overrides}


def run_group(data, out: Path, batch: int, epochs: int, grid: tuple[str, str, str]) -> list[dict[str, Any]]:
    """One job, then the grid ``(latent dims, learning rates, seeds)`` as one batched group, each as
    ``aejax-train -m`` in its own process on the data written to an array file: a row each, from
    their jobs' summaries (a group's jobs share its training time)."""
    import subprocess

    path = out / "group_data.npz"
    np.savez(path, x_train=data.x_train, x_test=data.x_test)
    common = [o for o in COMMON if not o.startswith("model.latent_dim")]
    rows = []
    for name, (dims, lrs, seeds) in (("one", tuple(v.split(",")[0] for v in grid)), ("group", grid)):
        where = out / "runs" / f"group-{name}"
        command = [sys.executable, "-m", "aejax", "-m", "hydra/launcher=aejax_batched", "dataset=array",
                   f"dataset.path={path.absolute()}", *common, *MODELS["bowtie"], f"trainer.batch_size={batch}",
                   f"trainer.epochs={epochs}", f"model.latent_dim={dims}", f"optimizer.lr={lrs}", f"seed={seeds}",
                   f"hydra.sweep.dir={where.absolute()}"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the {name} sweep failed:\n{done.stderr[-3000:]}")
        jobs = [json.loads(p.read_text()) for p in sorted(where.glob("*/summary.json"))]
        s, n = jobs[0], len(jobs)
        rows.append({"case": "group", "framework": "aejax", "model": "bowtie", "batch": batch, "seeds": n,
                     "dtype": "float32", "parallel": "none", "epochs": int(s["epochs"]), "steps": int(s["steps"]),
                     "train_s": float(s["train_time_s"]), "compile_s": float(s["compile_time_s"]),
                     "examples_per_s": float(s["examples_per_s"]), "model_examples_per_s": float(s["examples_per_s"]) * n,
                     "val_loss": float(np.mean([j["val/loss"] for j in jobs])),
                     "wall_s": round(time.perf_counter() - start, 2), "overrides": command[3:]})
    return rows


def torch_twin(model: str, batch: int, data, epochs: int) -> dict[str, Any]:
    """The same network in PyTorch, trained as plainly as aejax's own loop: data on the device."""
    import torch
    from torch import nn

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    h, w, _ = data.example_shape  # 28x28x1 (8x8x1 in a smoke run)
    if model == "bowtie":
        net = nn.Sequential(nn.Flatten(), nn.Linear(h * w, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU(),
                            nn.Linear(32, 2), nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 128), nn.ReLU(),
                            nn.Linear(128, h * w), nn.Sigmoid(), nn.Unflatten(1, (1, h, w)))
    else:  # stride-2 4x4 convs 32 -> 64, a linear code of 2, mirrored
        net = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                            nn.Linear(h // 4 * w // 4 * 64, 2), nn.Linear(2, h // 4 * w // 4 * 64),
                            nn.Unflatten(1, (64, h // 4, w // 4)),
                            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1),
                            nn.Sigmoid())
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.as_tensor(np.asarray(data.x_train)).permute(0, 3, 1, 2).contiguous().to(device)  # NCHW

    def epoch() -> float:
        order = torch.randperm(len(x), device=device)
        for i in range(0, len(x), batch):
            xb = x[order[i:i + batch]]
            loss = torch.mean((net(xb) - xb) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return float(loss)

    epoch()  # warm-up (cuDNN's algorithm choice, allocator)
    start = time.perf_counter()
    for _ in range(epochs):
        last = epoch()
    train_s = time.perf_counter() - start
    steps = epochs * math.ceil(len(x) / batch)
    return {"case": "speed", "framework": f"torch {torch.__version__} ({device})", "model": model, "batch": batch,
            "seeds": 1, "dtype": "float32", "parallel": "none", "epochs": epochs, "steps": steps,
            "train_s": round(train_s, 3), "compile_s": 0.0, "examples_per_s": epochs * len(x) / train_s,
            "model_examples_per_s": epochs * len(x) / train_s, "val_loss": last, "wall_s": round(train_s, 2)}


def machine() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": platform.node(), "python": platform.python_version(), "jax": jax.__version__,
            "backend": jax.default_backend(), "devices": len(devices),
            "device_kind": devices[0].device_kind, "cpus": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    if hasattr(os, "getloadavg"):
        info["load_average"] = round(os.getloadavg()[0], 2)
    return info


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# aejax accelerator report, {m['date']}", "",
             f"{m['devices']} x {m['device_kind']} ({m['backend']}), {m['cpus']} CPUs, Python {m['python']}, "
             f"JAX {m['jax']}" + (f", torch {m['torch']}" if m.get("torch") else ", no torch") +
             (f", load average {m['load_average']}" if "load_average" in m else "") + f"; data: {report['data']}; "
             f"{report['settings']['epochs']} epochs per case; `{report['command']}`", "",
             "| case | framework | model | batch | seeds | dtype | parallel | examples/s per model | "
             "examples/s all models | compile s | train s | steps | val loss |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['case']} | {r['framework']} | {r['model']} | {r['batch']} | {r['seeds']} | {r['dtype']} | "
                     f"{r['parallel']} | {r['examples_per_s']:,.0f} | {r['model_examples_per_s']:,.0f} | "
                     f"{r['compile_s']:.2f} | {r['train_s']:.2f} | {r['steps']} | {r['val_loss']:.5f} |")
    group = {r["seeds"]: r for r in report["rows"] if r["case"] == "group"}
    if len(group) == 2:
        one, n = group[min(group)], max(group)
        lines += ["", f"- a batched group of {n} models trains in {group[n]['train_s'] / one['train_s']:.2f}x the "
                      f"training time of one of them alone ({group[n]['train_s']:.2f} s against {one['train_s']:.2f} s)"]
    lines += [""] + [f"- skipped: {s}" for s in report["skipped"]]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="accelerator-report", help="folder for the table, the JSON and the runs")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script on a CPU in seconds")
    parser.add_argument("--data-dir", default=None, help="dataset.data_dir where Fashion-MNIST is prepared")
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch twins")
    args = parser.parse_args(argv)
    from aejax.startup import setup_compile_cache

    setup_compile_cache()
    import jax

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = sizes(args.smoke)
    data, source = load_data(args.data_dir, size)
    report: dict[str, Any] = {"machine": machine(), "data": source, "settings": size, "rows": [], "skipped": [],
                              "command": " ".join(["python", "scripts/accelerator_report.py", *(argv or sys.argv[1:])])}
    rows, epochs, big = report["rows"], size["epochs"], size["big"]

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        print(f"{row['case']:9s} {row['framework'][:22]:22s} {row['model']:6s} batch {row['batch']:5d} "
              f"seeds {row['seeds']:3d} {row['dtype']:8s} {row['parallel']:7s} {row['examples_per_s']:12,.0f} examples/s "
              f"({row['wall_s']:.1f} s)", flush=True)

    try:
        import torch  # noqa: F401
        torch_ok = not args.no_torch
    except ImportError:
        torch_ok = False
    if not torch_ok:
        report["skipped"].append("PyTorch twins: " + ("--no-torch" if args.no_torch else "torch is not importable"))
    for model in MODELS:
        for batch in size["batches"]:
            add(run_aejax("speed", model, batch, data, out, epochs))
            if torch_ok:
                add(torch_twin(model, batch, data, epochs))
    for n in size["seeds"]:
        add(run_aejax("seeds", "bowtie", size["seed_batch"], data, out, epochs, seeds=n))
    for row in run_group(data, out, size["seed_batch"], epochs, size["group"]):
        add(row)
    for model in MODELS:
        add(run_aejax("precision", model, big, data, out, epochs, dtype="bfloat16"))
    if jax.device_count() > 1 and big % jax.device_count() == 0:
        for model in MODELS:
            add(run_aejax("sharded", model, big, data, out, epochs, parallel="sharded"))
    else:
        report["skipped"].append(f"trainer.parallel=sharded: {jax.device_count()} device(s)"
                                 + ("" if jax.device_count() == 1 else f", batch {big} does not split over them"))
    (out / "accelerator_report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "accelerator_report.md").write_text(markdown(report))
    print(f"\n{markdown(report)}\nwritten: {out / 'accelerator_report.md'}, {out / 'accelerator_report.json'}")


if __name__ == "__main__":
    main()
