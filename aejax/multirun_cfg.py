"""``aejax-train -m ... --cfg job``: print the config of every job of a multirun, run nothing.

Hydra refuses ``--cfg`` together with ``--multirun`` (a ValueError and its traceback). aejax
expands the sweep as Hydra's basic sweeper does (the sweeper's ``params``, e.g. from a preset, then
the command line's overrides) and prints each job's config, headed by its overrides. A sweeper that
draws its jobs while it runs (Optuna) has no list of jobs in advance: its search space is printed
with the config of the values that are fixed.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

FLAGS_WITH_VALUE = {"-c": "cfg", "--cfg": "cfg", "-p": "package", "--package": "package", "-cd": "config_dir",
                    "--config-dir": "config_dir", "-cn": "config_name", "--config-name": "config_name"}


def _parse(args: list[str]) -> Optional[dict]:
    """The flags and overrides of ``-m ... --cfg WHICH``; None unless both flags are there."""
    out: dict = {"overrides": [], "resolve": False, "multirun": False}
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, value = arg.partition("=")
        if arg in ("-m", "--multirun"):
            out["multirun"] = True
        elif arg == "--resolve":
            out["resolve"] = True
        elif flag in FLAGS_WITH_VALUE and flag.startswith("--") and eq:
            out[FLAGS_WITH_VALUE[flag]] = value
        elif arg in FLAGS_WITH_VALUE and i + 1 < len(args):
            out[FLAGS_WITH_VALUE[arg]] = args[i + 1]
            i += 1
        elif arg.startswith("-"):
            return None  # a flag this does not know: leave it to Hydra
        else:
            out["overrides"].append(arg)
        i += 1
    return out if out["multirun"] and "cfg" in out else None


def _show(cfg, which: str, package: Optional[str], resolve: bool) -> str:
    from omegaconf import OmegaConf, open_dict

    if which == "job":
        with open_dict(cfg):
            cfg.pop("hydra", None)
    elif which == "hydra":
        cfg = cfg.hydra
    if package:
        cfg = OmegaConf.select(cfg, package)
    return OmegaConf.to_yaml(cfg, resolve=resolve) if OmegaConf.is_config(cfg) else f"{cfg}\n"


def print_job_configs(argv: list[str]) -> Optional[int]:
    """Print each job's config for ``-m ... --cfg job|hydra|all``; return the exit status, or None
    when ``argv`` does not ask for that (Hydra then handles the command)."""
    opts = _parse(argv)
    if opts is None:
        return None
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from aejax.startup import config_dir

    which, name = opts["cfg"], opts.get("config_name", "config")
    if which not in ("job", "hydra", "all"):
        print(f"aejax: --cfg takes job, hydra or all, got {which!r}", file=sys.stderr)
        return 2
    search = [f"hydra.searchpath=[file://{Path(opts['config_dir']).expanduser().resolve()}]"] if "config_dir" in opts else []
    show = dict(which=which, package=opts.get("package"), resolve=opts["resolve"])
    GlobalHydra.instance().clear()
    try:
        from hydra.types import RunMode

        with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name="aejax"):
            hydra = GlobalHydra.instance().hydra

            def composed(overrides: list[str], mode=RunMode.RUN):
                return hydra.compose_config(name, [*search, *overrides], run_mode=mode, from_shell=True,
                                            with_log_configuration=False)

            top = composed(opts["overrides"], RunMode.MULTIRUN)
            params = OmegaConf.select(top, "hydra.sweeper.params", default=None) or {}
            items = [f"{k}={v}" for k, v in params.items()] + opts["overrides"]
            parsed = OverridesParser.create().parse_overrides(items)
            sweeper = str(OmegaConf.select(top, "hydra.sweeper._target_", default=""))
            if not sweeper.endswith("BasicSweeper"):
                fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
                swept = [o.input_line for o in parsed if o.is_sweep_override()]
                print(f"# {sweeper.rsplit('.', 1)[-1]} draws its jobs while it runs; searched: {' '.join(swept) or '-'}")
                print(_show(composed(fixed), **show), end="")
                return 0
            jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
            for n, job in enumerate(jobs):
                print(f"# job {n} of {len(jobs)}: {' '.join(job)}")
                print(_show(composed(job), **show), end="")
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        print(f"aejax: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}", file=sys.stderr)
        return 2
    finally:
        GlobalHydra.instance().clear()
    return 0
