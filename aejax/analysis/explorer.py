"""``aejax-explore RUN_DIR``: one self-contained HTML page for walking through a run's latent space.

The training loop saves snapshots of a fixed probe set in ``RUN_DIR/snapshots`` (see
``aejax.analysis.snapshot``): the codes, their loss gradients, the reconstructions, for a 2-D
code a decoded grid and for a dense decoder its weights. ``aejax.analysis.explorer_data`` packs
them into one dict and this module into a single HTML file: a latent scatter with a slider over
the snapshots, opposite-gradient trails, a hover view of input and reconstruction (for 3-D data,
two rotatable 3-D views linked to the scatter), the decoder at a clicked code and the loss curve
with its baselines.

The page must open from disk with no network (a laptop, a W&B ``Html`` panel, an archive years
later), so everything is inline: the JS and CSS of ``explorer_template.html``, the images as PNG
data URIs and the decoder's weights as base64.

    aejax-explore RUN_DIR [-o OUT.html]      # writes RUN_DIR/explorer.html by default
    aejax-explore --follow RUN_DIR           # rewrites it while the run trains; the page reloads
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from aejax import rundir
from aejax.analysis.explorer_data import explorer_data
from aejax.analysis.snapshot_files import SnapshotError

PROG = "aejax-explore"
DATA_TOKEN = "__AEJAX_DATA__"  # replaced in the template by the run's JSON
PARTS_TOKEN = "/*__AEJAX_PARTS__*/"  # replaced by the script's parts, in this order
PARTS = ("explorer_panels.js", "explorer_view3d.js", "explorer_decode.js")

__all__ = ["explorer_data", "follow", "main", "render", "write_explorer"]


def render(data: dict[str, Any]) -> str:
    """The page: the template with ``data`` as inline JSON (``</`` escaped so no string ends the script)."""
    files = resources.files("aejax.analysis")
    template = files.joinpath("explorer_template.html").read_text(encoding="utf-8")
    parts = "".join(files.joinpath(name).read_text(encoding="utf-8") for name in PARTS)
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return template.replace(PARTS_TOKEN, parts).replace(DATA_TOKEN, payload)


def write_explorer(run_dir: Path, out: Path | None = None, reload_every: Optional[float] = None) -> Path:
    """Write the explorer page of ``run_dir`` to ``out`` (default ``run_dir/explorer.html``); returns its
    path. ``reload_every``: seconds after which the page reloads itself (a run still training)."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "explorer.html"
    data = explorer_data(run_dir)
    data["follow"] = None if reload_every is None else {"seconds": reload_every}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")  # a browser reloading meanwhile reads the old or the new page
    tmp.write_text(render(data), encoding="utf-8")
    tmp.replace(out)
    return out


def _signature(run_dir: Path) -> tuple:
    """What changes when the run writes a new snapshot or metrics row."""
    files = [*sorted((run_dir / rundir.SNAPSHOTS).glob("step_*.npz")), run_dir / rundir.METRICS]
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.exists())


def follow(run_dir: Path, out: Path | None = None, interval: float = 5.0,
           report: Callable[[str], None] = print) -> Path:
    """Rewrite the page whenever the run writes a snapshot, while its summary says it is running (or
    it has none yet: a run starting); then write it once more, without the reload, and return its path."""
    run_dir, seen, page = Path(run_dir), None, None
    while True:
        live = rundir.run_status(run_dir) in (rundir.RUNNING, rundir.MISSING)
        signature = _signature(run_dir)
        if not live:
            break
        if signature != seen and any(name.startswith("step_") for name, *_ in signature):
            try:
                page = write_explorer(run_dir, out, reload_every=interval)
            except (SnapshotError, OSError, ValueError, EOFError, zipfile.BadZipFile):  # a file being written
                time.sleep(interval)
                continue
            count = sum(name.startswith("step_") for name, *_ in signature)
            report(f"{PROG}: {page} updated ({count} snapshot{'s' if count != 1 else ''}); "
                   f"the page reloads every {interval:g} s")
            seen = signature
        time.sleep(interval)
    page = write_explorer(run_dir, out)
    report(f"{PROG}: the run is {rundir.run_status(run_dir)}: wrote the final page {page}")
    return page


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Write a self-contained HTML page (no network "
                                     "needed) for exploring the latent snapshots of a training run.")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory with snapshots/")
    parser.add_argument("-o", "--out", type=Path, metavar="OUT.html", help="default: RUN_DIR/explorer.html")
    parser.add_argument("--follow", action="store_true", help="while the run trains, rewrite the page at each "
                        "new snapshot (the open page reloads itself); stops when the run ends")
    parser.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                        help="with --follow: how often to look for new snapshots and reload the page (default 5)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or bad usage (2): argparse has printed why
        return int(e.code or 0)
    if args.interval <= 0:
        print(f"{PROG}: --interval must be > 0 seconds, got {args.interval:g}", file=sys.stderr)
        return 2
    try:
        if args.follow:
            if not args.run_dir.is_dir():  # a run just launched: its directory comes first
                print(f"{PROG}: waiting for {args.run_dir} to appear (Ctrl-C to stop)")
                while not args.run_dir.is_dir():
                    time.sleep(args.interval)
            follow(args.run_dir, args.out, args.interval)
            return 0
        out = write_explorer(args.run_dir, args.out)
    except SnapshotError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"{PROG}: wrote {out} ({out.stat().st_size / 1e6:.2f} MB); open it in a browser, no network needed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
