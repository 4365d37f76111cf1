"""Scores over a model's label list: accuracy, balanced accuracy, macro-F1, per-class report, confusion matrix.

One code path scores validation during training and `emotune evaluate` afterwards, so the numbers agree."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ..tables import confusion_table, render_table


@dataclass
class ClassReport:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Metrics:
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    n: int
    labels: list[str]
    per_class: list[ClassReport]
    confusion: list[list[int]]  # rows = true label, columns = predicted label
    loss: float | None = None
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        out = {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy, "macro_f1": self.macro_f1, "n": self.n}
        if self.loss is not None:
            out["loss"] = self.loss
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self, title: str = "Evaluation") -> str:
        rows = [["images", self.n], ["accuracy", f"{self.accuracy:.4f}"], ["balanced accuracy", f"{self.balanced_accuracy:.4f}"],
                ["macro-F1", f"{self.macro_f1:.4f}"]]
        if self.loss is not None:
            rows.append(["loss", f"{self.loss:.4f}"])
        rows += [[k, v] for k, v in self.extra.items()]
        per_class = [[c.label, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", c.support] for c in self.per_class]
        return "\n".join([f"# {title}", "", render_table(["metric", "value"], rows), "", "## Per class", "",
                          render_table(["class", "precision", "recall", "F1", "support"], per_class), "",
                          "## Confusion matrix (rows: true, columns: predicted)", "",
                          confusion_table(self.labels, self.confusion)]) + "\n"


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str], loss: float | None = None) -> Metrics:
    """Scores over the model's label list; classes absent from `y_true` get support 0 and are left out of averages."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    idx = list(range(len(labels)))
    present = sorted(set(y_true.tolist()))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    return Metrics(
        accuracy=float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        balanced_accuracy=float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        macro_f1=float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)) if len(y_true) else 0.0,
        n=int(len(y_true)),
        labels=list(labels),
        per_class=[ClassReport(labels[i], float(p[i]), float(r[i]), float(f[i]), int(s[i])) for i in idx],
        confusion=confusion_matrix(y_true, y_pred, labels=idx).tolist(),
        loss=loss,
    )
