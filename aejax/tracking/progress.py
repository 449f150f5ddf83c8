"""A progress bar per run that stays quiet when stderr is not a terminal."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(total: int, mode: str, desc: str) -> tqdm:
    disable = {"on": False, "off": True, "auto": not sys.stderr.isatty()}[mode]
    return tqdm(total=total, desc=desc, unit="epoch", disable=disable, file=sys.stderr, dynamic_ncols=True, leave=False)
