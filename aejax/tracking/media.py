"""Sink-neutral media: what the training loop hands to trackers besides numbers.

The loop never imports W&B: it logs these plain records and each sink turns them into its own
objects (``WandbTracker``: ``wandb.Table``, ``wandb.Image``, ``wandb.Histogram``,
``wandb.Html``). The run directory keeps the files and arrays they come from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list]


@dataclass(frozen=True)
class Image:
    path: Path
    caption: str = ""


@dataclass(frozen=True)
class Histogram:
    values: np.ndarray


@dataclass(frozen=True)
class Html:
    path: Path


Media = Table | Image | Histogram | Html
