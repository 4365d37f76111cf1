"""Hold-out splits and subsets with scikit-learn: stratified, and grouped by subject when subjects are known."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

from .sources import Sample


def holdout_split(samples: Sequence[Sample], fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split off `fraction` for validation; no subject appears on both sides when every sample has one."""
    y = np.array([s.label for s in samples])
    idx = np.arange(len(samples))
    subjects = [s.subject for s in samples]
    if all(subjects):
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        tr, va = next(splitter.split(idx, y, groups=subjects))
    else:
        counts = np.unique(y, return_counts=True)[1]
        n_val = int(np.ceil(fraction * len(y)))  # as StratifiedShuffleSplit counts its test side
        stratify = counts.min() >= 2 and n_val >= len(counts) and len(y) - n_val >= len(counts)
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed) if stratify else None
        if splitter is not None:
            tr, va = next(splitter.split(idx, y))
        else:
            perm = np.random.default_rng(seed).permutation(len(idx))
            cut = max(1, int(round(fraction * len(idx))))
            va, tr = perm[:cut], perm[cut:]
    return [samples[i] for i in sorted(tr)], [samples[i] for i in sorted(va)]


def stratified_subset(samples: Sequence[Sample], n: int, seed: int = 0) -> list[Sample]:
    """A class-stratified random subset of `n` samples (all of them when n <= 0 or n >= len)."""
    if n <= 0 or n >= len(samples):
        return list(samples)
    y = np.array([s.label for s in samples])
    try:
        _, keep = next(StratifiedShuffleSplit(n_splits=1, test_size=n, random_state=seed).split(np.zeros(len(y)), y))
    except ValueError:  # a class too rare to stratify
        keep = np.random.default_rng(seed).choice(len(samples), size=n, replace=False)
    return [samples[i] for i in sorted(keep)]
