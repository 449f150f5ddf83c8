"""A progress bar per run that stays quiet when stderr is not a terminal."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from tqdm.auto import tqdm


def progress_bar(total: int, mode: str, desc: str) -> tqdm:
    disable = {"on": False, "off": True, "auto": not sys.stderr.isatty()}[mode]
    return tqdm(total=total, desc=desc, unit="epoch", disable=disable, file=sys.stderr, dynamic_ncols=True, leave=False)


@contextlib.contextmanager
def logs_above(bar: tqdm) -> Iterator[None]:
    """While ``bar`` is shown, log lines to the console are written above it (``tqdm.write``), not
    into the middle of its line."""
    if bar.disable:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(tqdm_class=type(bar)):
        yield
