"""Every shell command of README.md and docs/*.md (the `aejax-train`, `aejax-report`,
`aejax-explore` and `python -m aejax` lines of their ```bash blocks) runs as written, with a tiny
epoch override appended, and leaves the files it promises. The commands that cannot run here are
listed in NOT_RUN with the reason. One test, the commands two at a time (they are subprocesses),
the runs that others read (the documented run and sweep directories) first."""
from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import DEBIAN_FASHION_MNIST, offline_env

from aejax import rundir

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(aejax-(train|report|explore)|python -m aejax)\b")
PROGRAMS = {"aejax-train": "aejax", "python": "aejax", "aejax-report": "aejax.report", "aejax-explore": "aejax.analysis.explorer"}

# Commands not run here, by a part of their text, and why.
NOT_RUN = {
    "python -m aejax ...": "a placeholder for any aejax-train command; every other test runs `python -m aejax`",
    "logger.mode=online": "needs W&B credentials and the network",
    "distributed.coordinator=10.0.0.1": "needs two hosts (test_multihost joins two processes on 127.0.0.1)",
    "hydra/launcher=aejax_slurm": "needs a SLURM cluster",
    "--config-dir myconf": "needs the user's own package (mypkg); test_extending runs the same with real files",
    "--config-dir conf": "docs/extending.md's own files; test_extending writes them and runs these commands",
    "dataset=fashion_mnist encoder=conv decoder=conv": "one epoch of the conv networks on Fashion-MNIST takes ~20 s on "
                                                       "a 2-core CPU; test_conv checks the networks, test_mnist_family the data",
}
SET_UP = {  # the run and sweep directories the docs name, made before the commands that read them
    "outputs/2026-11-21/23-01-06": ["trainer.epochs=1"],  # README's default run
    "outputs/2026-11-21/17-40-22": ["model.latent_dim=8", "trainer.epochs=1"],  # "the run had 8" (reliability.md)
    "multirun/2026-11-21/18-30-00": ["-m", "model.latent_dim=2,4", "variant=vanilla,vae", "trainer.epochs=1",
                                     "snapshot.every=0", "eval.probe=false"],
}
# Commands whose own settings need more than one epoch (a warmup of 100 steps: 9 epochs of digits' 12 steps).
EPOCHS = {"optimizer.warmup_steps=100": 9}
REFUSED = {"model.latent_dim=4": "model.latent_dim=4 (was 8)"}  # documented as refused: exit 2 with this


def documented_commands() -> list[tuple[str, str]]:
    """``(file, command)`` of every command, comments and `&&` chains split off, without repeats."""
    found: dict[str, str] = {}
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in line.split("&&"):
                    text = re.sub(r"\s+#.*$", "", part.strip())  # a comment after the command
                    if COMMAND.match(text):
                        text = " ".join(shlex.quote(w) for w in shlex.split(text)) if "..." not in text else text
                        found.setdefault(text.rstrip(" &"), doc.name)
    return [(doc, command) for command, doc in found.items()]


def _sets(args: list[str], key: str) -> bool:
    return any(a.lstrip("+~").split("=", 1)[0] == key for a in args)


def _jobs(args: list[str]) -> int:
    """Jobs of a multirun: the product of the comma lists (a seed batch is one job)."""
    return math.prod(len(a.split("=", 1)[1].split(",")) for a in args if "=" in a and "," in a.split("=", 1)[1]
                     and not a.split("=", 1)[1].startswith(("[", "{")) and not a.startswith("hydra"))


def _run(args: list[str], cwd: Path, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return out, time.monotonic() - start


def _plan(command: str, n: int) -> tuple[list[str], dict]:
    """The argv to run (module first) and what to check afterwards."""
    words = shlex.split(command)
    program, args = words[0], words[1:] if words[0] != "python" else words[3:]
    check: dict = {"rc": 0}
    if program in ("aejax-report", "aejax-explore"):
        valued = {"-o", "--interval", "--metric"}  # options followed by a value
        positional = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in valued)]
        check["file"] = (Path(args[args.index("-o") + 1]) if "-o" in args else
                         Path(positional[0]) / ("report.md" if program == "aejax-report" else "explorer.html"))
        return [PROGRAMS[program], *args], check
    extra = []
    resume = _sets(args, "trainer.resume")
    multi = "-m" in args or "--multirun" in args
    if "--cfg" in args:
        check["stdout"] = "latent_dim"
        return ["aejax", *args], check
    if not resume:
        extra += [f"trainer.epochs={next((e for part, e in EPOCHS.items() if part in command), 1)}"]
        if multi:
            extra += [k for k in ("snapshot.every=0", "eval.enabled=false") if not _sets(args, k.split("=")[0])]
    if not _sets(args, "logger.mode"):
        extra.append("logger.mode=disabled")
    if multi:
        check["sweep"], check["jobs"] = Path(f"sweeps/{n}"), _jobs(args)
        extra.append(f"hydra.sweep.dir=sweeps/{n}")
    elif not _sets(args, "hydra.run.dir"):
        extra.append(f"hydra.run.dir=runs/{n}")
        check["run"] = None if resume else Path(f"runs/{n}")
    for key, message in REFUSED.items():
        if resume and key in args:
            check = {"rc": 2, "stderr": message}
    return ["aejax", *args, *extra], check


def _verify(command: str, check: dict, out: subprocess.CompletedProcess, cwd: Path) -> list[str]:
    problems = []
    if out.returncode != check["rc"]:
        problems.append(f"exit {out.returncode}, expected {check['rc']}: {out.stderr[-1500:]}")
    for stream in ("stdout", "stderr"):
        if stream in check and check[stream] not in getattr(out, stream):
            problems.append(f"{check[stream]!r} not in its {stream}: {getattr(out, stream)[-800:]}")
    if "Traceback" in out.stderr:
        problems.append(f"a traceback: {out.stderr[-1500:]}")
    if check.get("file") and not (cwd / check["file"]).is_file():
        problems.append(f"no {check['file']}")
    if check.get("run") and rundir.run_status(cwd / check["run"]) != "finished":
        problems.append(f"{check['run']} did not finish: {out.stderr[-1500:]}")
    if "sweep" in check:
        jobs = [p for p in (cwd / check["sweep"]).iterdir() if p.is_dir() and p.name.isdigit()]
        finished = [p for p in jobs if rundir.run_status(p) == "finished"]
        if len(finished) != check["jobs"]:
            problems.append(f"{len(finished)} of {check['jobs']} jobs finished in {check['sweep']}")
    return [f"{command}: {p}" for p in problems]


def _workspace(cwd: Path, env: dict) -> None:
    """The files the commands name: acts.npy, acts.npz, mydata.npz and the documented run and sweep directories."""
    rng = np.random.default_rng(0)
    np.save(cwd / "acts.npy", rng.normal(size=(300, 12)).astype(np.float32))
    np.savez(cwd / "mydata.npz", x_train=rng.uniform(size=(200, 8, 8, 1)).astype(np.float32),
             x_test=rng.uniform(size=(60, 8, 8, 1)).astype(np.float32), y_train=rng.integers(0, 3, 200),
             y_test=rng.integers(0, 3, 60))
    # a model's activations made of 40 known sparse features in 16 dimensions (variants.md's SAE on your own data)
    features = rng.normal(size=(40, 16))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    codes = rng.exponential(size=(360, 40)) * (rng.uniform(size=(360, 40)) < 0.05)
    x = (codes @ features).astype(np.float32)
    np.savez(cwd / "acts.npz", x_train=x[:300], x_test=x[300:], features=features.astype(np.float32))


def test_every_documented_command_runs_as_written(tmp_path):
    commands = documented_commands()
    assert len(commands) > 40 and any(c == "aejax-train" for _, c in commands)
    skipped = {c: reason for _, c in commands for part, reason in NOT_RUN.items() if part in c}
    assert all(any(part in c for _, c in commands) for part in NOT_RUN)  # no stale entry
    env = {**offline_env(), "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    if not DEBIAN_FASHION_MNIST.is_dir():
        skipped.update({c: "needs Debian's dataset-fashion-mnist" for _, c in commands if "fashion_mnist" in c})
    _workspace(tmp_path, env)
    todo = [(i, c) for i, (_, c) in enumerate(commands) if c not in skipped]
    readers = [(i, c) for i, c in todo if any(d in c for d in SET_UP)]
    problems, times = [], {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        setup = [pool.submit(_run, ["aejax", *args, *(["hydra.sweep.dir=" + d] if "-m" in args else ["hydra.run.dir=" + d]),
                                    "logger.mode=disabled", "trainer.checkpoint_every=12"], tmp_path, env)
                 for d, args in SET_UP.items()]
        planned = {i: _plan(c, i) for i, c in todo}
        first = {i: pool.submit(_run, planned[i][0], tmp_path, env) for i, c in todo if (i, c) not in readers}
        for future in setup:
            out, _ = future.result()
            assert out.returncode == 0, out.stderr[-2000:]
        for i, _ in readers:  # one at a time: a run directory takes one process at a time
            out, times[commands[i][1]] = _run(planned[i][0], tmp_path, env)
            problems += _verify(commands[i][1], planned[i][1], out, tmp_path)
        for i, future in first.items():
            out, times[commands[i][1]] = future.result()
            problems += _verify(commands[i][1], planned[i][1], out, tmp_path)
    for command, seconds in sorted(times.items(), key=lambda item: -item[1])[:5]:
        print(f"{seconds:6.1f} s  {command}")
    assert not problems, "\n".join(problems)
    assert len(times) + len(skipped) == len(commands)


@pytest.mark.parametrize("command, reason", sorted(NOT_RUN.items()))
def test_every_command_not_run_has_a_reason(command, reason):
    assert len(reason) > 20 and command in " ".join(c for _, c in documented_commands())
