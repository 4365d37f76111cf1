"""Two models on the same images: paired tables, accuracy difference with a bootstrap interval, exact McNemar test."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class PairedComparison:
    """Model b against model a on the same images: the accuracy difference, its bootstrap interval and McNemar's test."""

    n: int
    accuracy_a: float
    accuracy_b: float
    diff: float  # b - a
    ci95: tuple[float, float]
    only_a_right: int
    only_b_right: int
    p_mcnemar: float

    def sentence(self, a: str = "a", b: str = "b") -> str:
        return (f"{b} - {a}: {self.diff * 100:+.1f} points (95% bootstrap interval [{self.ci95[0] * 100:+.1f}, "
                f"{self.ci95[1] * 100:+.1f}]); of {self.n} images, {self.only_b_right} are right only with {b} and "
                f"{self.only_a_right} only with {a}; exact McNemar p = {self.p_mcnemar:.3f}")


def class_columns(table: pd.DataFrame) -> list[str]:
    """The class-probability columns of a prediction table, in its order."""
    return [c for c in table.columns if c not in ("file", "label", "pred")]


def aligned_tables(tables: Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    """Prediction tables of several models on the same images, each sorted by file so that rows pair up.

    Refuses tables that list an image twice, hold different images or disagree on a true label, so that each model's
    accuracy stays its own."""
    if not tables:
        raise ValueError("no prediction table given")
    out = []
    for i, t in enumerate(tables):
        dup = t["file"][t["file"].duplicated()]
        if len(dup):
            raise ValueError(f"prediction table {i + 1} lists {dup.iloc[0]!r} more than once")
        out.append(t.sort_values("file", kind="stable").reset_index(drop=True))
    if out[0].empty:
        raise ValueError("the prediction tables hold no image")
    for i, t in enumerate(out[1:], start=2):
        shared = len(set(out[0]["file"]) & set(t["file"]))
        if shared != len(out[0]) or shared != len(t):
            raise ValueError(f"prediction tables 1 and {i} hold different images: {len(out[0])} and {len(t)} rows, "
                             f"{shared} shared (score both models on the same data, given by the same path)")
        if (out[0]["label"].to_numpy() != t["label"].to_numpy()).any():
            raise ValueError(f"prediction tables 1 and {i} disagree on the true label of some images")
    return out


def paired_bootstrap_ci(right_a: np.ndarray, right_b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                        method: str = "BCa") -> tuple[float, float]:
    """95% interval of accuracy(b) - accuracy(a), resampling images (pairs) with scipy.stats.bootstrap.
    Constant differences (e.g. a model against itself) have no spread: the interval is that one value."""
    from scipy.stats import bootstrap

    d = right_b.astype(np.int8) - right_a.astype(np.int8)
    if (d == d[0]).all():
        return float(d[0]), float(d[0])
    res = bootstrap((right_a.astype(float), right_b.astype(float)), lambda a, b, axis: b.mean(axis) - a.mean(axis),
                    paired=True, vectorized=True, n_resamples=n_boot, confidence_level=0.95, method=method,
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def compare_predictions(a: pd.DataFrame, b: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> PairedComparison:
    """Paired comparison of two prediction tables (`EvalReport.predictions`) of the same images.

    Image-level pairing is far more sensitive than comparing two accuracies: it only counts the images where the
    models disagree on correctness (exact McNemar test, a binomial test on those). Both tables must hold the same
    images, each once, so that the two accuracies are the models' own."""
    from scipy.stats import binomtest

    a, b = aligned_tables([a, b])
    ra = (a["pred"] == a["label"]).to_numpy()
    rb = (b["pred"] == b["label"]).to_numpy()
    only_a, only_b = int((ra & ~rb).sum()), int((rb & ~ra).sum())
    p = binomtest(only_b, only_a + only_b).pvalue if only_a + only_b else 1.0
    ci = paired_bootstrap_ci(ra, rb, n_boot, seed)
    return PairedComparison(len(a), float(ra.mean()), float(rb.mean()), float(rb.mean() - ra.mean()), ci, only_a, only_b, float(p))
