"""Metrics and reports: accuracy, balanced accuracy, macro-F1, per-class report, confusion matrix.

One code path scores validation during training and `emotune evaluate` afterwards, so the numbers agree.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from torch import nn
from torch.utils.data import DataLoader

from .io import atomic_write
from .progress import progress as progress_bar

if TYPE_CHECKING:
    import pandas as pd


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
        lines = [f"# {title}", "", "| metric | value |", "|---|---|",
                 f"| images | {self.n} |", f"| accuracy | {self.accuracy:.4f} |",
                 f"| balanced accuracy | {self.balanced_accuracy:.4f} |", f"| macro-F1 | {self.macro_f1:.4f} |"]
        if self.loss is not None:
            lines.append(f"| loss | {self.loss:.4f} |")
        for k, v in self.extra.items():
            lines.append(f"| {k} | {v} |")
        lines += ["", "## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {c.label} | {c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} | {c.support} |" for c in self.per_class]
        lines += ["", "## Confusion matrix (rows: true, columns: predicted)", "",
                  "| true \\ pred | " + " | ".join(self.labels) + " |", "|---" * (len(self.labels) + 1) + "|"]
        lines += [f"| {self.labels[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(self.confusion)]
        return "\n".join(lines) + "\n"


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


@torch.no_grad()
def predict_probs(model: nn.Module, loader: DataLoader, device: torch.device, tta: bool = False,
                  progress: bool = False, desc: str = "evaluating") -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax probabilities, integer targets and mean cross-entropy over a loader (flip TTA optional)."""
    model.eval()
    probs, targets, loss_sum, n = [], [], 0.0, 0
    for x, y in progress_bar(loader, progress, desc=desc):
        x = x.to(device, non_blocking=True)
        logits = model(x)
        if tta:
            logits = (logits + model(torch.flip(x, dims=[3]))) / 2
        logits = logits.float().cpu()
        y_idx = y.argmax(1) if y.ndim == 2 else y
        loss_sum += float(nn.functional.cross_entropy(logits, y if y.ndim == 2 else y_idx, reduction="sum"))
        n += len(x)
        probs.append(torch.softmax(logits, 1).numpy())
        targets.append(y_idx.numpy())
    return np.concatenate(probs), np.concatenate(targets), loss_sum / max(n, 1)


def plot_confusion(metrics: Metrics, path: str | Path, normalize: bool = True, title: str = "") -> Path:
    """Confusion-matrix PNG (row-normalised: each row shows recall per true class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics.confusion, dtype=float)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    k = len(metrics.labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * k, 0.8 + 0.75 * k), dpi=120)
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
    path = Path(path)
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return path


@dataclass
class EvalReport:
    model: str
    data: str
    metrics: Metrics
    skipped: list[dict] = field(default_factory=list)
    dropped_labels: dict[str, int] = field(default_factory=dict)
    tta: bool = False
    predictions: pd.DataFrame | None = field(default=None, repr=False)  # one row per scored image: file, label, pred[, probs]

    def to_dict(self) -> dict:
        return {"model": self.model, "data": self.data, "tta": self.tta, **self.metrics.summary(),
                "per_class": [asdict(c) for c in self.metrics.per_class], "labels": self.metrics.labels,
                "confusion": self.metrics.confusion, "skipped": self.skipped, "dropped_labels": self.dropped_labels,
                **({"pipeline": self.metrics.extra} if self.metrics.extra else {})}

    def write_predictions(self, path: str | Path) -> Path:
        return atomic_write(path, lambda p: self.predictions.to_csv(p, index=False))

    def write(self, out: str | Path, title: str = "") -> list[Path]:
        """eval.json, eval.md, confusion.png and predictions.csv in `out`, each written atomically."""
        from .io import atomic_write_json, atomic_write_text

        out = Path(out)
        return [atomic_write_json(out / "eval.json", self.to_dict()), atomic_write_text(out / "eval.md", self.to_markdown()),
                plot_confusion(self.metrics, out / "confusion.png", title=title), self.write_predictions(out / "predictions.csv")]

    def to_markdown(self) -> str:
        md = self.metrics.to_markdown(f"Evaluation of {self.model}")
        md += f"\nData: `{self.data}`; flip TTA: {self.tta}; skipped bad images: {len(self.skipped)}"
        if self.dropped_labels:
            md += f"; dropped (labels the model lacks): {self.dropped_labels}"
        return md + "\n"


def labelled_samples(model_labels: Sequence[str], data: str | Path, data_format: str = "auto", split: str | None = None,
                     ferplus_mode: str = "majority", drop_labels: Sequence[str] = (), drop_unknown_labels: bool = False,
                     max_samples: int = 0) -> tuple[list, dict[str, int]]:
    """The samples a model can be scored on, and the counts of those dropped for labels it lacks (only when asked:
    a label the model lacks is otherwise an error naming it)."""
    from collections import Counter

    from .data.dataset import filter_labels
    from .data.sources import load_samples
    from .data.splits import stratified_subset

    samples = load_samples(data, data_format, split=split, ferplus_mode=ferplus_mode, drop_labels=drop_labels)
    unknown = Counter(s.label for s in samples if s.label not in model_labels)
    drop = set(drop_labels) | (set(unknown) if drop_unknown_labels else set())
    dropped = {k: v for k, v in unknown.items() if k in drop}
    samples = filter_labels(samples, model_labels, sorted(drop), where=str(data))
    return stratified_subset(samples, max_samples, 0), dropped


def evaluate_photos(model_path: str | Path | None, data: str | Path, data_format: str = "auto", split: str | None = None,
                    drop_labels: Sequence[str] = (), drop_unknown_labels: bool = False, detector: str = "yunet",
                    detector_model: str | None = None, tta: bool = False, device: str = "auto", progress: bool = True,
                    max_samples: int = 0, margin: float = 1.0) -> EvalReport:
    """Score the whole pipeline (detect, align, classify: what `emotune predict` does) on labelled photos.

    The largest face of each photo is the prediction. Photos where no face is found count as wrong in the end-to-end
    accuracy (`extra`); the other metrics cover the photos with a face."""
    import numpy as np

    from .errors import BadInputError
    from .inference.recognizer import Recognizer
    from .progress import progress as bar

    rec = Recognizer(model_path, detector, detector_model, device=device, tta=tta, margin=margin)
    labels = rec.labels
    samples, dropped = labelled_samples(labels, data, data_format, split, "majority", drop_labels, drop_unknown_labels, max_samples)
    y_true, y_pred, files, skipped, no_face = [], [], [], [], []
    for smp in bar(samples, progress, desc="photos", unit="img"):
        try:
            faces = rec.predict(smp.path if smp.pixels is None else smp.pixels)
        except BadInputError as exc:
            skipped.append({"where": exc.where, "problem": exc.problem})
            continue
        if not faces:
            no_face.append({"where": smp.where, "problem": "no face found"})
            continue
        best = max(faces, key=lambda f: f.box[2] * f.box[3])
        y_true.append(labels.index(smp.label))
        y_pred.append(labels.index(best.label))
        files.append(smp.where)
    if not y_true:
        raise BadInputError(data, f"no face found in any of {len(samples)} photos")
    m = compute_metrics(np.array(y_true), np.array(y_pred), labels)
    scored = len(y_true) + len(no_face)
    m.extra = {"photos": scored, "no_face": len(no_face),
               "end_to_end_accuracy": round(float((np.array(y_true) == np.array(y_pred)).sum() / scored), 4),
               "detector": detector, "margin": margin}
    name = str(model_path) if model_path else "bundled default model"
    preds = prediction_table(files, y_true, y_pred, labels)
    return EvalReport(name, str(data), m, skipped + no_face, dropped, tta, preds)


def prediction_table(files: Sequence[str], y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str],
                     probs: np.ndarray | None = None) -> pd.DataFrame:
    """Per-image results, so that two models scored on the same images can be compared image by image."""
    import pandas as pd

    df = pd.DataFrame({"file": list(files), "label": [labels[i] for i in y_true], "pred": [labels[i] for i in y_pred]})
    if probs is not None:
        df = pd.concat([df, pd.DataFrame(np.round(probs, 6), columns=list(labels))], axis=1)
    return df


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
    d = rb.astype(np.int8) - ra.astype(np.int8)
    rng = np.random.default_rng(seed)
    diffs = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(n_boot)])
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return PairedComparison(len(a), float(ra.mean()), float(rb.mean()), float(rb.mean() - ra.mean()),
                            (float(lo), float(hi)), only_a, only_b, float(p))


def evaluate_dataset(model_path: str | Path, data: str | Path, data_format: str = "auto", split: str | None = None,
                     ferplus_mode: str = "majority", drop_labels: Sequence[str] = (), drop_unknown_labels: bool = False,
                     batch_size: int = 128, tta: bool = False, on_bad: str = "skip", workers: int = 0,
                     device: str = "auto", progress: bool = True, max_samples: int = 0) -> EvalReport:
    """Score a saved model on a labelled dataset, mapping label names; labels the model lacks are refused
    unless dropped explicitly (`drop_labels`, or all of them with `drop_unknown_labels`)."""
    from .data import EmotionDataset, eval_transform, prepare_samples
    from .models import load_checkpoint
    from .train.engine import pick_device

    dev = pick_device(device)
    model, card = load_checkpoint(model_path)
    model.to(dev)
    samples, dropped = labelled_samples(card.labels, data, data_format, split, ferplus_mode, drop_labels, drop_unknown_labels,
                                        max_samples)
    prep, _ = prepare_samples(samples, card.channels, on_bad, cache=False, show=progress)
    ds = EmotionDataset(prep.samples, card.labels, eval_transform(card.input_size, card.mean, card.std), card.channels)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    probs, targets, loss = predict_probs(model, loader, dev, tta=tta, progress=progress)
    m = compute_metrics(targets, probs.argmax(1), card.labels, loss=loss)
    preds = prediction_table([s.where for s in prep.samples], targets, probs.argmax(1), card.labels, probs)
    return EvalReport(str(model_path), str(data), m, [asdict(s) for s in prep.skipped], dropped, tta, preds)
