"""What a cross-validation produces: per-fold results, mean ± std, the pooled confusion matrix, and their JSON,
Markdown and plots (cv.json, cv.md, confusion.png, curves.png)."""
from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import kinds
from ...data.splits import sklearn_notes
from ...io import atomic_write_json, atomic_write_text
from ...tables import confusion_table, render_table

if TYPE_CHECKING:
    from ...evaluate import Metrics

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
                "ccc": "CCC", "pearson": "Pearson r", "rmse": "RMSE", "mae": "MAE", "sagr": "SAGR"}


def metric_keys(folds: Sequence["FoldResult"]) -> list[str]:
    """The scores every finished fold has: the class metrics, then the targets' (mean and per target: valence_ccc...)."""
    ok = [f for f in folds if f.ok]
    if not ok:
        return list(METRICS)
    keys = [k for k in ok[0].metrics if k not in ("n", "loss") and all(k in f.metrics for f in ok)]
    return [m for m in METRICS if m in keys] + [k for k in keys if k not in METRICS]


def metric_name(key: str) -> str:
    if key in METRIC_NAMES:
        return METRIC_NAMES[key]
    target, _, m = key.rpartition("_")
    return f"{target} {METRIC_NAMES.get(m, m)}" if target else key


@dataclass
class FoldResult:
    """One fold: trained on the others, scored on this one (status 'ok'), or the error that stopped it ('failed')."""

    fold: int
    status: str
    n_train: int
    n_test: int
    test_subjects: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    run_dir: str = ""
    error: str = ""
    traceback: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FoldResult":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n-1; 0 for a single value) of per-fold scores."""
    vals = [float(v) for v in values]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def aggregate(folds: Sequence[FoldResult]) -> tuple[dict[str, float], dict[str, float]]:
    """Unweighted mean ± std over the folds that finished, per metric."""
    ok = [f for f in folds if f.ok]
    mean, std = {}, {}
    for m in metric_keys(folds):
        mean[m], std[m] = mean_std([f.metrics[m] for f in ok])
    return mean, std


def pool_confusion(folds: Sequence[FoldResult], labels: Sequence[str]) -> list[list[int]]:
    """Sum of the folds' confusion matrices, mapped by label name onto `labels`."""
    k = len(labels)
    pos = {c: i for i, c in enumerate(labels)}
    total = np.zeros((k, k), dtype=int)
    for f in folds:
        if not f.ok:
            continue
        cm = np.asarray(f.confusion, dtype=int)
        for i, a in enumerate(f.labels):
            for j, b in enumerate(f.labels):
                total[pos[a], pos[b]] += cm[i, j]
    return total.tolist()


def metrics_from_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> Metrics:
    """Exact metrics of all pooled predictions (a confusion matrix holds every (true, predicted) pair)."""
    cm = np.asarray(confusion, dtype=int)
    y_true = np.repeat(np.repeat(np.arange(len(labels)), len(labels)), cm.ravel())
    y_pred = np.repeat(np.tile(np.arange(len(labels)), len(labels)), cm.ravel())
    from ...evaluate import compute_metrics

    with sklearn_notes():
        return compute_metrics(y_true, y_pred, labels)


@dataclass
class CVResult:
    """A whole cross-validation: settings, per-fold results, mean ± std, pooled confusion and the final model."""

    out: str
    k: int
    scheme: str
    group_by: str
    stratify: bool
    seed: int
    labels: list[str]
    n: int
    subjects: int
    backbone: str
    data: str
    folds: list[FoldResult]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    pooled: dict[str, float] = field(default_factory=dict)
    pooled_confusion: list[list[int]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    complete: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[FoldResult]:
        return [f for f in self.folds if not f.ok]

    def update(self) -> "CVResult":
        """Recompute mean ± std and the pooled scores from the folds so far."""
        self.mean, self.std = aggregate(self.folds)
        self.pooled_confusion = pool_confusion(self.folds, self.labels) if self.labels else []
        if self.labels and any(f.ok for f in self.folds):
            self.pooled = metrics_from_confusion(self.pooled_confusion, self.labels).summary()
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = kinds.CV
        d["folds_ok"] = sum(f.ok for f in self.folds)
        d["folds_failed"] = len(self.failed)
        return d

    def to_markdown(self) -> str:
        ok = sum(f.ok for f in self.folds)
        group = {"subject": "subject-grouped", "group": "group-kept (duplicates, themes, videos)"}.get(self.group_by, "not grouped")
        lines = [f"# Cross-validation: {self.backbone} on `{self.data}`", "",
                 f"{self.k} folds ({self.scheme}, {group}{', stratified' if self.stratify else ''}, seed {self.seed}); "
                 f"{self.n} images, {self.subjects} subjects; {ok}/{len(self.folds)} folds finished"
                 + ("" if self.complete else " (incomplete)") + ".",
                 f"Model selection: best epoch on a {self.config.get('val_fraction', 0):.0%} hold-out of each fold's training "
                 "folds (subject-grouped when subjects are known); the test fold is used only for the scores below.", ""]
        keys = metric_keys(self.folds)
        lines.append(render_table(["metric", "mean ± std over folds", "pooled"],
                                  [[metric_name(m), _pm(self.mean.get(m), self.std.get(m)),
                                    f"{self.pooled[m]:.4f}" if m in self.pooled else "-"] for m in keys]))
        shown = [m for m in keys if m in METRICS or "_" not in m]  # per-target scores: in the table above
        rows = [[f.fold, f.status, f.n_train, f.n_test, f.test_subjects,
                 *(f"{f.metrics[m]:.4f}" if f.ok and m in f.metrics else "-" for m in shown),
                 f.best_epoch or "-", f"{f.seconds:.1f}", f.error] for f in self.folds]
        lines += ["", "## Folds", "", render_table(["fold", "status", "train", "test", "test subjects",
                                                   *(metric_name(m) for m in shown), "best epoch", "seconds", "error"], rows)]
        if self.labels:
            lines += ["", "## Pooled confusion matrix over all folds (rows: true, columns: predicted)", "",
                      confusion_table(self.labels, self.pooled_confusion)]
        lines += ["", "Plots: `confusion.png` (pooled, row-normalised), `curves.png` (every fold's learning curves, best epochs "
                  "marked); each fold's own run folder has its `log.csv` and `curves.png`."]
        if self.final is not None:
            fin = self.final
            text = f"`{fin['run_dir']}`, best epoch {fin.get('best_epoch')}" if fin.get("status") == "ok" else f"failed: {fin.get('error')}"
            lines += ["", f"Final model on all data: {text}"]
        return "\n".join(lines) + "\n"


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None or mean != mean:  # nan: no fold finished
        return "-"
    return f"{mean:.4f} ± {std:.4f}"


def write_reports(result: CVResult, plot: bool = True) -> None:
    """cv.json and cv.md (atomically) and, at the end, the pooled confusion PNG."""
    out = Path(result.out)
    atomic_write_json(out / "cv.json", result.to_dict())
    atomic_write_text(out / "cv.md", result.to_markdown())
    if plot and any(f.ok for f in result.folds) and not result.labels:
        plot_fold_curves(result, out / "curves.png")
    elif plot and any(f.ok for f in result.folds):
        m = metrics_from_confusion(result.pooled_confusion, result.labels)
        from ...evaluate import plot_confusion

        plot_confusion(m, out / "confusion.png", title=f"pooled over {sum(f.ok for f in result.folds)} folds: "
                       f"acc {m.accuracy:.3f}  bal-acc {m.balanced_accuracy:.3f}  macro-F1 {m.macro_f1:.3f}")
        plot_fold_curves(result, out / "curves.png")


def plot_fold_curves(result: CVResult, path: Path) -> Path | None:
    """Learning curves of every finished fold on one figure (train and hold-out loss, hold-out accuracy), best epochs
    marked: spread between folds and late peaks show at a glance whether the budget fits the data."""
    import pandas as pd

    from ...io import atomic_write
    from ...plotting import new_figure

    logs = {f.fold: (Path(f.run_dir) / "log.csv", f.best_epoch) for f in result.folds if f.ok}
    logs = {k: v for k, v in logs.items() if v[0].is_file()}
    if not logs:
        return None
    fig = new_figure(figsize=(11, 3.8), dpi=110)
    a, b = fig.subplots(1, 2)
    for k, (log, best) in logs.items():
        d = pd.read_csv(log)
        score = "val_accuracy" if "val_accuracy" in d else "val_ccc"
        line, = a.plot(d["epoch"], d["val_loss"], "-", lw=1.2, label=f"fold {k}")
        a.plot(d["epoch"], d["train_loss"], ":", lw=1, color=line.get_color())
        b.plot(d["epoch"], d[score], "-", lw=1.2, color=line.get_color())
        if best in set(d["epoch"]):
            b.plot([best], d.loc[d["epoch"] == best, score], "o", color=line.get_color())
    a.set_xlabel("epoch"); a.set_ylabel("loss (dotted: train, solid: hold-out)"); a.grid(alpha=0.3)
    b.set_xlabel("epoch"); b.set_ylabel("hold-out accuracy or CCC (dot: best epoch)"); b.set_ylim(-0.2 if score == "val_ccc" else 0, 1)
    b.grid(alpha=0.3)
    a.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    return path
