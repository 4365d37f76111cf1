"""What `emotune evaluate` writes: eval.json (with its `kind`), eval.md, confusion.png and predictions.csv; for a
model with continuous targets also their scores with bootstrap 95% intervals and scatter.png (predicted vs true)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..io import atomic_write, atomic_write_json, atomic_write_text
from ..kinds import EVAL as EVAL_KIND
from .metrics import Metrics
from .plots import plot_confusion
from .regression import RegressionMetrics, plot_scatter

if TYPE_CHECKING:
    import pandas as pd

# the `kind` of an eval.json, so that `emotune report` knows a result file by its content, not its name


@dataclass
class EvalReport:
    model: str
    data: str
    metrics: Metrics | None  # None for a model without classes
    skipped: list[dict] = field(default_factory=list)
    dropped_labels: dict[str, int] = field(default_factory=dict)
    tta: bool = False
    predictions: pd.DataFrame | None = field(default=None, repr=False)  # one row per scored image: file, label, pred[, probs]
    regression: RegressionMetrics | None = None  # the continuous targets' scores (on [-1, 1])
    target_arrays: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # (pred, true) N x T for the scatter

    def to_dict(self) -> dict:
        out: dict = {"kind": EVAL_KIND, "model": self.model, "data": self.data, "tta": self.tta}
        if self.metrics is not None:
            out.update({**self.metrics.summary(), "per_class": [asdict(c) for c in self.metrics.per_class], "labels": self.metrics.labels,
                        "confusion": self.metrics.confusion})
        if self.regression is not None:
            out.update({"targets": self.regression.per_target(), "target_means": self.regression.summary()})
        out.update({"skipped": self.skipped, "dropped_labels": self.dropped_labels})
        if self.metrics is not None and self.metrics.extra:
            out["pipeline"] = self.metrics.extra
        return out

    def write_predictions(self, path: str | Path) -> Path:
        return atomic_write(path, lambda p: self.predictions.to_csv(p, index=False))

    def write(self, out: str | Path, title: str = "") -> list[Path]:
        """eval.json, eval.md, confusion.png and predictions.csv in `out`, each written atomically."""
        out = Path(out)
        written = [atomic_write_json(out / "eval.json", self.to_dict()), atomic_write_text(out / "eval.md", self.to_markdown())]
        if self.metrics is not None:
            written.append(plot_confusion(self.metrics, out / "confusion.png", title=title))
        if self.regression is not None and self.target_arrays is not None:
            written.append(plot_scatter(*self.target_arrays, [t.name for t in self.regression.targets], out / "scatter.png", title))
        return written + [self.write_predictions(out / "predictions.csv")]

    def to_markdown(self) -> str:
        md = self.metrics.to_markdown(f"Evaluation of {self.model}") if self.metrics is not None else f"# Evaluation of {self.model}\n"
        if self.regression is not None:
            md += ("\n## Continuous targets (on [-1, 1]; bootstrap 95% intervals)\n\n" + self.regression.to_markdown() + "\n")
        md += f"\nData: `{self.data}`; flip TTA: {self.tta}; skipped bad images: {len(self.skipped)}"
        if self.dropped_labels:
            md += f"; dropped (labels the model lacks): {self.dropped_labels}"
        return md + "\n"


def prediction_table(files: Sequence[str], y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str],
                     probs: np.ndarray | None = None) -> pd.DataFrame:
    """Per-image results, so that two models scored on the same images can be compared image by image."""
    import pandas as pd

    df = pd.DataFrame({"file": list(files), "label": [labels[i] for i in y_true], "pred": [labels[i] for i in y_pred]})
    if probs is not None:
        df = pd.concat([df, pd.DataFrame(np.round(probs, 6), columns=list(labels))], axis=1)
    return df
