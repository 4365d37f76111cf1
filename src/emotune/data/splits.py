"""Hold-out splits and subsets with scikit-learn: stratified, and grouped by subject when subjects are known.

`sklearn_notes()` turns scikit-learn's warnings (repeated per fold and per epoch) into one `note:` line per kind."""
from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

from .sources import Sample


_SAID: set[str] = set()


def _note(message: str, category: type) -> tuple[str, str]:
    """(kind, one line a user can act on) for a scikit-learn warning."""
    m = re.search(r"least populated class in y has only (\d+) members?, which is less than n_splits=(\d+)", message)
    if m:
        return "least_populated", (f"a class has only {m.group(1)} image(s), fewer than the {m.group(2)} folds: some folds test "
                                   "none of it; use fewer folds or drop the class")
    if category.__name__ == "UndefinedMetricWarning" or "ill-defined" in message:
        return "undefined_metric", ("a class had no images (or no predictions) in a split; its precision/recall/F1 count "
                                    "as 0 there")
    if "y_pred contains classes not in y_true" in message:
        return "pred_not_true", "a split's predictions include classes it has no images of; balanced accuracy skips them"
    return message, message.splitlines()[0]


@contextmanager
def sklearn_notes() -> Iterator[None]:
    """Catch scikit-learn's warnings inside the block; say each kind once per process, in one `note:` line on stderr.
    Other warnings pass through unchanged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        module = getattr(w.category, "__module__", "") or ""
        if not (module.startswith("sklearn") or "sklearn" in str(w.filename)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
        kind, line = _note(str(w.message), w.category)
        if kind not in _SAID:
            _SAID.add(kind)
            print(f"note: {line}", file=sys.stderr)


def holdout_split(samples: Sequence[Sample], fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split off `fraction` for validation; no subject (or group: duplicates, themes, videos) appears on both sides
    when every sample has one."""
    y = np.array([s.label for s in samples])
    idx = np.arange(len(samples))
    subjects = [s.split_group for s in samples]
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
