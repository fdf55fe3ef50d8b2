"""A tqdm progress bar for the store commands (on stderr, so stdout keeps the summary)."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm


def bar(names: Iterable[str], total: int, what: str) -> Iterable[str]:
    return tqdm(names, total=total, desc=what, unit="file", file=sys.stderr, dynamic_ncols=True)
