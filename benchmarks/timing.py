"""Timing shared by the benchmarks and the peer workers (standard library only: workers run in other venvs)."""
from __future__ import annotations

import time


def timed(fn, runs: int, warmup: int, budget_s: float = 0.0) -> list[float]:
    """Per-call seconds of `runs` calls after `warmup` calls; with budget_s, stop early once that much time is spent
    (after at least 5 timed calls; warm-up gets a quarter of it), so slow configurations do not blow the run time."""
    t0 = time.perf_counter()
    for i in range(warmup):
        fn()
        if budget_s and i and time.perf_counter() - t0 > budget_s / 4:
            break
    out: list[float] = []
    t0 = time.perf_counter()
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
        if budget_s and len(out) >= 5 and time.perf_counter() - t0 > budget_s:
            break
    return out
