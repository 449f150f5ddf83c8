"""What the explorer page shows, from a run directory: one JSON-ready dict (``explorer_data``).

Images go in as *atlases*, one tile grid per snapshot instead of one data URI per example: PNG
compresses across tiles and the page draws a tile with ``drawImage``. A dense decoder's weights
(``aejax.analysis.dense_decoder``) go in as base64 float32, so the page decodes the exact
clicked code; within ``DECODER_BUDGET`` bytes, for every snapshot or for evenly spaced ones
(always the last). Numbers the page only draws keep 4 significant digits.
"""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aejax import rundir
from aejax.analysis.dense_decoder import from_snapshot
from aejax.analysis.snapshot_files import SnapshotError, load_snapshots

DECODER_BUDGET = 4_000_000  # bytes of float32 decoder weights in one page (before base64)
ZERO_CLIP = 1e-7  # the all-zeros output under BCE: clipped as TF.js's binaryCrossentropy does


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
                          ("latent_dim", "model.latent_dim"), ("recon", "variant.recon")):
            value = OmegaConf.select(cfg, key, default=None)
            if value is not None:
                header[name] = value if isinstance(value, (int, float)) else str(value)
    return header


def _metrics(run_dir: Path) -> tuple[str, list[dict[str, Any]]]:
    """``(name, [{step, train, val}])`` from ``metrics.jsonl``: the reconstruction term
    (``train/recon``, ``val/recon``, what the baselines compare with) where the run logs it, else the
    loss; the rows that have a step and one of them."""
    all_rows = rundir.read_metrics(run_dir)
    name = "recon" if any("val/recon" in r or "train/recon" in r for r in all_rows) else "loss"
    rows = []
    for row in all_rows:
        if "step" in row and (f"train/{name}" in row or f"val/{name}" in row):
            rows.append({"step": row["step"], "train": _num(row.get(f"train/{name}", math.nan)),
                         "val": _num(row.get(f"val/{name}", math.nan))})
    return name, rows


def _baselines(x: np.ndarray, recon: Any) -> list[dict[str, Any]]:
    """Reconstruction losses of outputs that ignore the input, on the probe set (mean per value):
    BCE: 0.5 everywhere (ln 2, an untrained sigmoid output) and all zeros (clipped at ``ZERO_CLIP``,
    as TF.js does; unclipped it is infinite wherever a value is not 0); MSE: all zeros and the
    probe set's mean example (the best constant output)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if recon == "bce":
        zeros = float(np.mean(-x * np.log(ZERO_CLIP) - (1 - x) * np.log1p(-ZERO_CLIP)))
        return [{"label": "output 0.5 everywhere: ln 2", "value": _num(math.log(2))},
                {"label": f"all-zeros output (clipped at {ZERO_CLIP:g})", "value": _num(zeros)}]
    if recon == "mse":
        return [{"label": "all-zeros output", "value": _num(np.mean(x ** 2))},
                {"label": "the mean example as output", "value": _num(np.mean((x - x.mean(axis=0)) ** 2))}]
    return []


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode("ascii")


def _decoders(snaps: list[dict[str, np.ndarray]]) -> tuple[dict[str, str] | None, dict[int, dict[str, Any]]]:
    """The dense decoder's activations and, per snapshot index, its weights as base64 float32: every
    snapshot's within ``DECODER_BUDGET``, else evenly spaced ones and the last."""
    layers = [from_snapshot(s) for s in snaps]
    have = [i for i, layer in enumerate(layers) if layer is not None]
    if not have:
        return None, {}
    size = sum(np.size(w) + np.size(b) for w, b in layers[have[-1]].weights) * 4
    n = max(1, min(len(have), DECODER_BUDGET // max(size, 1)))
    keep = sorted({have[int(round(t))] for t in np.linspace(len(have) - 1, 0, n)})
    out = {i: {"w": [_b64(w) for w, _ in layers[i].weights], "b": [_b64(b) for _, b in layers[i].weights],
               "shapes": [list(np.shape(w)) for w, _ in layers[i].weights]} for i in keep}
    last = layers[have[-1]]
    return {"activation": last.activation, "output": last.output}, out


def _extent(points: np.ndarray) -> list:
    """``[x0, x1, y0, y1]`` holding ``points`` with 5 % to spare (a flat axis, k = 1, gets room too)."""
    points = points[np.isfinite(points).all(axis=1)]
    lo, hi = (points.min(axis=0), points.max(axis=0)) if len(points) else (np.zeros(2), np.ones(2))
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
    pad = 0.05 * span + np.where(hi > lo, 0.0, 0.5 * span)
    return _num([lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]], 6)


def _colors(num_classes: int) -> list[str]:
    """Class colours as in ``aejax.analysis.figures``: tab10, tab20 beyond ten classes."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    return [to_hex(cmap(i % cmap.N)) for i in range(max(num_classes, 1))]


def explorer_data(run_dir: Path) -> dict[str, Any]:
    """Everything the page shows, as one JSON-ready dict (images as PNG data URIs)."""
    run_dir = Path(run_dir)
    probe, snaps = load_snapshots(run_dir)
    x = np.asarray(probe["x"], np.float32)
    labeled = "labels" in probe  # data without labels: one colour, no classes
    labels = np.asarray(probe["labels"]).astype(int) if labeled else np.zeros(len(x), int)
    names = [str(n) for n in np.asarray(probe.get("class_names", []))] if labeled else []
    if labeled:  # labels beyond the names
        names += [str(i) for i in range(len(names), int(labels.max(initial=-1)) + 1)]
    examples = _Examples(x.shape[1:], bool(probe.get("unit_range", False)), x)
    k = int(snaps[0]["z"].shape[1])
    decoder, weights = _decoders(snaps)
    snapshots = []
    for i, s in enumerate(snaps):
        snap = {"step": int(s["step"]), "epoch": float(s["epoch"]), "mean_loss": _num(np.mean(s["loss"])),
                "z": _num(s["z_2d"]), "grad": _num(s["grad_2d"]), "loss": _num(s["loss"]),
                "extent": _extent(np.asarray(s["z_2d"], np.float64)), "recon": examples.encode(s["recon"])}
        if k == 2 and "grid_decoded" in s:
            grid = len(s["grid_z1"])
            snap["grid"] = {"z1": _num(s["grid_z1"], 6), "z2": _num(s["grid_z2"], 6),
                            "decoded": examples.encode(s["grid_decoded"], cols=grid)}
        if i in weights:
            snap["decoder"] = weights[i]
        snapshots.append(snap)
    header = _header(run_dir, k)
    loss_name, metrics = _metrics(run_dir)
    return {"header": header, "k": k, "kind": examples.kind, "shape": list(x.shape[1:]),
            "unit_range": examples.unit_range, "range": _num([examples.lo, examples.hi], 6),
            "labeled": labeled, "class_names": names, "colors": _colors(len(names)), "labels": labels.tolist(),
            "index": np.asarray(probe.get("index", np.arange(len(x)))).astype(int).tolist(),
            "extent": _extent(np.concatenate([s["z_2d"] for s in snaps]).astype(np.float64)),
            "probe": examples.encode(x), "snapshots": snapshots, "decoder": decoder,
            "loss_name": loss_name, "metrics": metrics, "baselines": _baselines(x, header.get("recon")),
            "follow": None}
