"""Fault injection under real runs: kill, signal, corrupt and fill the disk, then check that nothing
finished is lost (issue 16, "Nothing lost").

Each case starts a real ``python -m aejax`` run (a small net on digits, 40 epochs of 12 steps, a
checkpoint every epoch), injects its fault, recovers the way docs/bad-input.md says (resume, free
space, run the sweep again) and compares the outcome with an uninterrupted reference run: the same
metrics rows, final parameters and val/loss, bit for bit, or files left byte-identical where the
fault must change nothing. It prints a Markdown table (the one in docs/reliability.md) and exits 1
if any case fails. The full-disk case mounts a tmpfs and needs root (it is skipped otherwise).

Usage: python scripts/faults.py [--only NAME ...] [--keep DIR] [--write docs/reliability.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

RUN = ("trainer.epochs=40", "trainer.checkpoint_every=12", "trainer.checkpoint_keep=10", "eval.enabled=false",
       "snapshot.every=5", "snapshot.probe_size=64", "snapshot.images=false", "trainer.progress=off",
       "logger.mode=disabled", "encoder.hidden=[16]", "decoder.hidden=[16]")
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}, "WANDB_MODE": "offline",
       "WANDB_SILENT": "true"}


class Failed(AssertionError):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise Failed(what)


def aejax(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aejax", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=600)


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aejax", *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def steps(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def wait(run_dir: Path, proc: subprocess.Popen, at_least: int) -> None:
    deadline = time.monotonic() + 300
    while not (steps(run_dir) and steps(run_dir)[-1] >= at_least):
        check(proc.poll() is None and time.monotonic() < deadline, f"no checkpoint {at_least} before the run ended")
        time.sleep(0.02)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def files(run_dir: Path) -> dict:
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "aejax.log" and ".hydra" not in p.parts}


def final_params(run_dir: Path) -> list:
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    tree = ocp.PyTreeCheckpointer().restore(run_dir / "checkpoints" / str(steps(run_dir)[-1]) / "state")
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def same_run(run_dir: Path, reference: Path) -> str:
    """Check the run equals the reference; say how."""
    import numpy as np

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    check(rows == ref, f"metrics differ ({len(rows)} rows vs {len(ref)})")
    check(summary(run_dir)["status"] == "finished", f"status {summary(run_dir)['status']}")
    check(summary(run_dir)["val/loss"] == summary(reference)["val/loss"], "val/loss differs")
    check(all(np.array_equal(a, b) for a, b in zip(final_params(run_dir), final_params(reference), strict=True)),
          "final parameters differ")
    snaps = sorted(p.name for p in (reference / "snapshots").glob("step_*.npz"))
    check(sorted(p.name for p in (run_dir / "snapshots").glob("step_*.npz")) == snaps, "snapshot files differ")
    return f"{len(rows)} rows, state, val/loss, {len(snaps)} snapshots equal the reference"


def killed(root: Path, at: int = 72) -> Path:
    run_dir = root / "run"
    proc = start(f"hydra.run.dir={run_dir}", *RUN, cwd=root)
    wait(run_dir, proc, at)
    proc.kill()
    proc.communicate()
    return run_dir


def resume(run_dir: Path, root: Path, reference: Path, code: int = 0) -> str:
    out = aejax(f"hydra.run.dir={run_dir}", *RUN, "trainer.resume=true", cwd=root)
    check(out.returncode == code, f"resume exited {out.returncode}: {out.stderr[-300:]}")
    return same_run(run_dir, reference)


# ---------------------------------------------------------------------------------------------
# The cases: each returns what it observed, or raises Failed


def kill_9(root, ref):
    return "kill -9 at a checkpoint; resume: " + resume(killed(root), root, ref)


def stop_signal(sig):
    def case(root, ref):
        run_dir = root / "run"
        proc = start(f"hydra.run.dir={run_dir}", *RUN, cwd=root)
        wait(run_dir, proc, 36)
        proc.send_signal(sig)
        proc.communicate(timeout=300)
        check(proc.returncode == 75 and summary(run_dir)["status"] == "preempted",
              f"exit {proc.returncode}, status {summary(run_dir).get('status')}")
        return f"exit 75, preempted at {summary(run_dir)['preempted_at_step']}; resume: " + resume(run_dir, root, ref)
    return case


def garbled_checkpoint(root, ref):
    run_dir = killed(root)
    latest = run_dir / "checkpoints" / str(steps(run_dir)[-1])
    big = max((p for p in (latest / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
              key=lambda p: p.stat().st_size)
    data = bytearray(big.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 4):
        data[i] ^= 0xFF
    big.write_bytes(bytes(data))
    return f"4 bytes flipped in checkpoint {latest.name}; resume: " + resume(run_dir, root, ref)


def damaged_file(name, damage):
    def case(root, ref):
        run_dir = killed(root)
        damage(run_dir)
        return f"{name}; resume: " + resume(run_dir, root, ref)
    return case


def _truncate_snapshot(run_dir):
    path = sorted((run_dir / "snapshots").glob("step_*.npz"))[-1]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def full_disk(root, ref):
    disk = root / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True).returncode:
        return None  # skipped: needs root
    try:
        run_dir = disk / "run"
        proc = start(f"hydra.run.dir={run_dir}", *RUN, cwd=root)
        wait(run_dir, proc, 24)
        with open(disk / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        _, err = proc.communicate(timeout=300)
        check(proc.returncode == 4 and "the disk is full" in err, f"exit {proc.returncode}: {err[-300:]}")
        check(summary(run_dir)["status"] == "failed", f"status {summary(run_dir).get('status')}")
        (disk / "filler").unlink()
        return "8 MiB tmpfs filled mid-run: exit 4, status failed; space freed, resume: " + resume(run_dir, root, ref)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fresh_run_into_finished(root, ref):
    run_dir = root / "ref-copy"
    shutil.copytree(ref, run_dir)
    before = files(run_dir)
    out = aejax(f"hydra.run.dir={run_dir}", *RUN, "seed=1", cwd=root)
    check(out.returncode == 2 and "holds a run" in out.stderr, f"exit {out.returncode}")
    again = aejax(f"hydra.run.dir={run_dir}", *RUN, "trainer.resume=true", cwd=root)
    check(again.returncode == 0 and "nothing to resume" in again.stderr, f"resume exit {again.returncode}")
    check(files(run_dir) == before, "the finished run's files changed")
    return "fresh run: exit 2; resume of the finished run: exit 0; every file byte-identical"


def second_run_at_once(root, ref):
    run_dir = root / "run"
    proc = start(f"hydra.run.dir={run_dir}", *RUN, cwd=root)
    try:
        wait(run_dir, proc, 12)
        out = aejax(f"hydra.run.dir={run_dir}", *RUN, "trainer.resume=true", cwd=root)
        check(out.returncode == 2 and "is in use by another run" in out.stderr, f"exit {out.returncode}")
    finally:
        proc.communicate(timeout=300)
    check(proc.returncode == 0, f"the first run exited {proc.returncode}")
    return "second run: exit 2 naming the holder; the first: " + same_run(run_dir, ref)


def joblib_worker_killed(root, ref):
    sweep = root / "sweep"
    args = ["-m", "seed=0,1,2", *RUN, f"hydra.sweep.dir={sweep}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    proc = start(*args, cwd=root)
    wait(sweep / "0", proc, 24)
    os.kill(json.loads((sweep / "0" / ".aejax.lock").read_text())["pid"], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    statuses = [summary(sweep / j)["status"] for j in "012"]
    check(proc.returncode == 1 and statuses == ["failed", "finished", "finished"], f"exit {proc.returncode}, {statuses}")
    done = {j: files(sweep / j) for j in "12"}
    line = next(line for line in err.splitlines() if "aejax-train --multirun" in line)
    out = subprocess.run([sys.executable, "-m", "aejax", *shlex.split(line.split(": ", 1)[1])[1:]], cwd=root, env=ENV,
                         capture_output=True, text=True, timeout=600)
    check(out.returncode == 0, f"the sweep's resume exited {out.returncode}: {out.stderr[-300:]}")
    check({j: files(sweep / j) for j in "12"} == done, "finished jobs changed")
    return ("worker of job 0 killed: job 0 failed, jobs 1-2 finished; the printed command resumed job 0, "
            "jobs 1-2 byte-identical; job 0: " + same_run(sweep / "0", ref))


CASES: dict[str, tuple[str, Callable]] = {
    "kill-9": ("SIGKILL mid-run", kill_9),
    "sigterm": ("SIGTERM", stop_signal(signal.SIGTERM)),
    "sighup": ("SIGHUP (terminal closed)", stop_signal(signal.SIGHUP)),
    "sigusr1": ("SIGUSR1 (SLURM's warning)", stop_signal(signal.SIGUSR1)),
    "garbled-checkpoint": ("garbled bytes in the latest checkpoint", garbled_checkpoint),
    "torn-metrics": ("torn last line of metrics.jsonl", damaged_file(
        "a torn row appended", lambda d: open(d / "metrics.jsonl", "a").write('{"step": 9, "tr'))),
    "garbled-summary": ("garbled summary.json", damaged_file(
        "summary.json garbled", lambda d: (d / "summary.json").write_text('{"status": '))),
    "lost-config": ("config.yaml deleted", damaged_file("config.yaml deleted", lambda d: (d / "config.yaml").unlink())),
    "truncated-snapshot": ("truncated snapshot .npz", damaged_file("newest snapshot cut in half", _truncate_snapshot)),
    "full-disk": ("the disk fills up mid-run", full_disk),
    "fresh-into-finished": ("a fresh run into a finished run's directory", fresh_run_into_finished),
    "two-at-once": ("a second run into a directory in use", second_run_at_once),
    "joblib-worker": ("a joblib worker killed (OOM killer)", joblib_worker_killed),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="run these cases only")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--write", type=Path, help="replace the table in this Markdown file (docs/reliability.md)")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="aejax-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    reference = base / "reference"
    if not (reference / "summary.json").exists():
        out = aejax(f"hydra.run.dir={reference}", *RUN, cwd=base)
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return 1
    rows, failed = [], 0
    for name in args.only or list(CASES):
        title, case = CASES[name]
        root = base / name
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        began = time.monotonic()
        try:
            observed = case(root, reference)
            verdict = "skipped (needs root to mount a tmpfs)" if observed is None else "pass"
        except Failed as e:
            observed, verdict, failed = str(e), "**FAIL**", failed + 1
        rows.append(f"| {name} | {title} | {observed or ''} | {verdict} | {time.monotonic() - began:.0f} s |")
        print(rows[-1], flush=True)
    table = "\n".join(["| case | fault | observed | verdict | time |", "|---|---|---|---|---|", *rows])
    stamp = (f"Last run: {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, Python {platform.python_version()}, "
             f"{len(rows) - failed}/{len(rows)} pass.")
    if args.write:
        text = args.write.read_text()
        head, _, rest = text.partition("<!-- faults:begin -->")
        _, _, tail = rest.partition("<!-- faults:end -->")
        args.write.write_text(f"{head}<!-- faults:begin -->\n{stamp}\n\n{table}\n<!-- faults:end -->{tail}")
    print(f"\n{stamp}")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
