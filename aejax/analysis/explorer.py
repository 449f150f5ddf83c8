"""``aejax-explore RUN_DIR``: one self-contained HTML page for walking through a run's latent space.

The training loop saves snapshots of a fixed probe set in ``RUN_DIR/snapshots`` (see
``aejax.analysis.snapshot``): the codes, their loss gradients, the reconstructions and, for a
2-D code, a decoded grid. This module packs them into a single HTML file: a latent scatter with
a slider over the snapshots, opposite-gradient trails, a hover view of input and reconstruction,
the decoder under a click and the training-loss curve.

The page must open from disk with no network (a laptop, a W&B ``Html`` panel, an archive years
later), so everything is inline: the JS and CSS of ``explorer_template.html`` and the images as
PNG data URIs. Images go in as *atlases*, one tile grid per snapshot instead of one data URI per
example: PNG compresses across tiles and the page draws a tile with ``drawImage``.

    aejax-explore RUN_DIR [-o OUT.html]      # writes RUN_DIR/explorer.html by default
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import math
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aejax import rundir
from aejax.analysis.snapshot_files import SnapshotError, load_snapshots

PROG = "aejax-explore"
DATA_TOKEN = "__AEJAX_DATA__"  # replaced in the template by the run's JSON


def _num(a: Any, digits: int = 4) -> Any:
    """A JSON-ready nested list with ``digits`` significant digits (and ``None`` for NaN/inf):
    the page only draws these numbers, and 4 digits are well below a pixel."""
    a = np.asarray(a, np.float64)
    flat: list = [float(f"{v:.{digits}g}") if math.isfinite(v) else None for v in a.ravel().tolist()]
    for n in reversed(a.shape[1:]):
        flat = [flat[i:i + n] for i in range(0, len(flat), n)]
    return flat if a.ndim else flat[0]


def _to_uint8(x: np.ndarray, unit_range: bool, lo: float, hi: float) -> np.ndarray:
    """Images as uint8: data in [0, 1] clipped to it; other data scaled by the probe inputs' range
    (the same ``lo, hi`` for inputs, reconstructions and decoded grids, so their shades compare)."""
    x = np.nan_to_num(np.asarray(x, np.float32))
    if not unit_range:
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _atlas(images: np.ndarray, cols: int) -> dict[str, Any]:
    """``[N, H, W, C]`` uint8 images as one PNG data URI, tile ``i`` at column ``i % cols``, row ``i // cols``."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    sheet = np.zeros((rows * h, cols * w, c), np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, cols)
        sheet[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
    buffer = io.BytesIO()
    Image.fromarray(sheet[..., 0] if c == 1 else sheet).save(buffer, format="PNG")
    return {"src": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
            "cols": cols, "h": h, "w": w}


class _Examples:
    """How examples of this run go into the page: image atlases, or numbers for vector data."""

    def __init__(self, shape: tuple[int, ...], unit_range: bool, x: np.ndarray):
        if len(shape) == 1:
            self.kind = "vector"
        elif len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3)):
            self.kind = "image"
        else:
            raise SnapshotError(f"cannot show examples of shape {shape}: expected (d,), (H, W) or (H, W, C) with C = 1 or 3")
        self.shape, self.unit_range = shape, unit_range
        finite = x[np.isfinite(x)]
        self.lo, self.hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)

    def encode(self, x: np.ndarray, cols: int | None = None) -> Any:
        x = np.asarray(x, np.float32)
        if self.kind == "vector":
            return {"values": _num(x)}
        images = _to_uint8(x.reshape(len(x), self.shape[0], self.shape[1], -1), self.unit_range, self.lo, self.hi)
        return _atlas(images, cols or max(1, math.ceil(math.sqrt(len(x)))))


def _header(run_dir: Path, k: int) -> dict[str, Any]:
    """Variant, dataset and seed from ``config.yaml``, ``None`` for what it does not say."""
    header: dict[str, Any] = {"run": run_dir.resolve().name, "variant": None, "dataset": None, "seed": None,
                              "latent_dim": k}
    cfg = rundir.read_config(run_dir)
    if cfg is not None:
        from omegaconf import OmegaConf

        for name, key in (("variant", "variant.name"), ("dataset", "dataset.name"), ("seed", "seed"),
                          ("latent_dim", "model.latent_dim")):
            value = OmegaConf.select(cfg, key, default=None)
            if value is not None:
                header[name] = value if isinstance(value, (int, float)) else str(value)
    return header


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    """``[{step, train, val}]`` from ``metrics.jsonl``: the rows that have a step and a loss."""
    rows = []
    for row in rundir.read_metrics(run_dir):
        if "step" in row and ("train/loss" in row or "val/loss" in row):
            rows.append({"step": row["step"], "train": _num(row.get("train/loss", math.nan)),
                         "val": _num(row.get("val/loss", math.nan))})
    return rows


def _colors(num_classes: int) -> list[str]:
    """Class colours as in ``aejax.analysis.figures``: tab10, tab20 beyond ten classes."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    return [to_hex(cmap(i % cmap.N)) for i in range(max(num_classes, 1))]


def explorer_data(run_dir: Path) -> dict[str, Any]:
    """Everything the page shows, as one JSON-ready dict (images as PNG data URIs)."""
    probe, snaps = load_snapshots(run_dir)
    x = np.asarray(probe["x"], np.float32)
    labeled = "labels" in probe  # data without labels: one colour, no classes
    labels = np.asarray(probe["labels"]).astype(int) if labeled else np.zeros(len(x), int)
    names = [str(n) for n in np.asarray(probe.get("class_names", []))] if labeled else []
    if labeled:  # labels beyond the names
        names += [str(i) for i in range(len(names), int(labels.max(initial=-1)) + 1)]
    examples = _Examples(x.shape[1:], bool(probe.get("unit_range", False)), x)
    k = int(snaps[0]["z"].shape[1])
    points = np.concatenate([s["z_2d"] for s in snaps]).astype(np.float64)
    points = points[np.isfinite(points).all(axis=1)]
    lo, hi = (points.min(axis=0), points.max(axis=0)) if len(points) else (np.zeros(2), np.ones(2))
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))  # a flat axis (k = 1) gets room too
    pad = 0.05 * span + np.where(hi > lo, 0.0, 0.5 * span)
    snapshots = []
    for s in snaps:
        snap = {"step": int(s["step"]), "epoch": float(s["epoch"]), "mean_loss": _num(np.mean(s["loss"])),
                "z": _num(s["z_2d"]), "grad": _num(s["grad_2d"]), "loss": _num(s["loss"]),
                "recon": examples.encode(s["recon"])}
        if k == 2 and "grid_decoded" in s:
            grid = len(s["grid_z1"])
            snap["grid"] = {"z1": _num(s["grid_z1"], 6), "z2": _num(s["grid_z2"], 6),
                            "decoded": examples.encode(s["grid_decoded"], cols=grid)}
        snapshots.append(snap)
    return {"header": _header(run_dir, k), "k": k, "kind": examples.kind, "shape": list(x.shape[1:]),
            "labeled": labeled, "class_names": names, "colors": _colors(len(names)), "labels": labels.tolist(),
            "index": np.asarray(probe.get("index", np.arange(len(x)))).astype(int).tolist(),
            "extent": _num([lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]], 6),
            "probe": examples.encode(x), "snapshots": snapshots, "metrics": _metrics(run_dir)}


def render(data: dict[str, Any]) -> str:
    """The page: the template with ``data`` as inline JSON (``</`` escaped so no string ends the script)."""
    template = resources.files("aejax.analysis").joinpath("explorer_template.html").read_text(encoding="utf-8")
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return template.replace(DATA_TOKEN, payload)


def write_explorer(run_dir: Path, out: Path | None = None) -> Path:
    """Write the explorer page of ``run_dir`` to ``out`` (default ``run_dir/explorer.html``); returns its path."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "explorer.html"
    html = render(explorer_data(run_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Write a self-contained HTML page (no network "
                                     "needed) for exploring the latent snapshots of a training run.")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory with snapshots/")
    parser.add_argument("-o", "--out", type=Path, metavar="OUT.html", help="default: RUN_DIR/explorer.html")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or bad usage (2): argparse has printed why
        return int(e.code or 0)
    try:
        out = write_explorer(args.run_dir, args.out)
    except SnapshotError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    print(f"{PROG}: wrote {out} ({out.stat().st_size / 1e6:.2f} MB); open it in a browser, no network needed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
