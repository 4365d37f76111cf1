"""The confusion-matrix figure. Drawn on a bare `matplotlib.figure.Figure` (Agg canvas): no pyplot, no backend switch,
nothing changed for the process that imports emotune."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import atomic_write
from ..plotting import new_figure
from .metrics import Metrics


def plot_confusion(metrics: Metrics, path: str | Path, normalize: bool = True, title: str = "") -> Path:
    """Confusion-matrix PNG (row-normalised: each row shows recall per true class)."""
    cm = np.asarray(metrics.confusion, dtype=float)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    k = len(metrics.labels)
    fig = new_figure(figsize=(1.0 + 0.8 * k, 0.8 + 0.75 * k), dpi=120)
    ax = fig.subplots()
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i in range(k):
        for j in range(k):
            txt = f"{shown[i, j]:.2f}\n({int(cm[i, j])})" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="white" if shown[i, j] > 0.5 * shown.max() else "black")
    ax.set_xticks(range(k), metrics.labels, rotation=45, ha="right")
    ax.set_yticks(range(k), metrics.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"acc {metrics.accuracy:.3f}  bal-acc {metrics.balanced_accuracy:.3f}  macro-F1 {metrics.macro_f1:.3f}", fontsize=9)
    fig.tight_layout()
    return atomic_write(Path(path), lambda p: fig.savefig(p, format="png"))
