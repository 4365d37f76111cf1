"""Probability ensembles of prediction tables: several models scored on the same images, averaged image by image."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .paired import aligned_tables, class_columns
from .report import prediction_table

if TYPE_CHECKING:
    import pandas as pd


def average_predictions(tables: Sequence[pd.DataFrame], weights: Sequence[float] | None = None) -> pd.DataFrame:
    """A probability ensemble: the (weighted) mean class probabilities of several models scored on the same images,
    as one prediction table, so that it is scored and compared like any single model."""
    tables = aligned_tables(tables)
    labels = class_columns(tables[0])
    if not labels:
        raise ValueError("the prediction tables hold no class probabilities (write them with emotune evaluate --out)")
    for i, t in enumerate(tables[1:], start=2):
        if sorted(class_columns(t)) != sorted(labels):
            raise ValueError(f"prediction table {i} has other classes than table 1: the models must share their labels")
    w = np.ones(len(tables)) if weights is None else np.asarray(weights, dtype=float)
    if len(w) != len(tables) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"need one non-negative weight per table ({len(tables)}), not all zero; got {list(w)}")
    probs = sum(wi * t[labels].to_numpy(dtype=float) for wi, t in zip(w, tables)) / w.sum()
    y = [labels.index(v) for v in tables[0]["label"]]
    return prediction_table(tables[0]["file"].tolist(), y, probs.argmax(1), labels, probs)
