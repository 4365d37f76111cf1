"""Progress bars (tqdm) that stay quiet in logs and CI: shown only on a terminal unless forced off."""
from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress(iterable: Iterable, enabled: bool = True, **kw) -> tqdm:
    return tqdm(iterable, disable=(not enabled) or not sys.stderr.isatty(), leave=False, mininterval=0.5, **kw)
