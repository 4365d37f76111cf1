"""The task of a training run, as a registered part: what the head's outputs mean, the loss, the validation
scores and the monitored value. The engine asks the task and never branches on it.

- `classify`: classes only (cross-entropy with label smoothing, class weights, soft targets): the classic path.
- `regress`: continuous targets only (valence, arousal... on [-1, 1]) with a registered loss (emotune.losses:
  ccc, mse, ccc+mse); scores CCC, Pearson r, RMSE, MAE, SAGR.
- `multitask`: classes and targets from one backbone; loss = class_weight * CE + target_weight * target loss.
  An image without a class (index -100) or without a target value (NaN) contributes no loss to that part, so
  sets annotated for one task only (Twitter I sentiment, OASIS valence/arousal) train one model together.

`select_task(labels, targets)` picks it: classes and no targets -> classify, and so on.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.dataset import IGNORE_INDEX
from ..errors import ConfigError
from ..evaluate import Metrics, compute_metrics
from ..evaluate.regression import REG_METRICS, RegressionMetrics, compute_regression
from ..losses import create_loss

CLASS_LOG = ["val_accuracy", "val_balanced_accuracy", "val_macro_f1"]
COMMON_LOG = ["lr_start", "lr_end", "trainable_params", "seconds", "images_per_second"]


@dataclass
class Validation:
    """One validation pass scored by a task."""

    loss: float
    classes: Metrics | None = None
    regression: RegressionMetrics | None = None
    preds: np.ndarray | None = None  # N x (K + T) probabilities and targets (target tasks)
    y: np.ndarray | None = None  # N x (1 + T), or class indices (classify)
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, float]:
        """The log.csv columns of this validation (`val_*`)."""
        out: dict[str, float] = {"val_loss": round(self.loss, 5)}
        if self.classes is not None:
            out.update({"val_accuracy": round(self.classes.accuracy, 5), "val_balanced_accuracy": round(self.classes.balanced_accuracy, 5),
                        "val_macro_f1": round(self.classes.macro_f1, 5)})
        if self.regression is not None:
            out.update({f"val_{k}": v for k, v in self.regression.summary().items() if k != "loss"})
        return out

    def card_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.classes is not None:
            out["val"] = self.classes.summary()
            out["val_per_class"] = {c.label: round(c.f1, 4) for c in self.classes.per_class}
        if self.regression is not None:
            out.setdefault("val", {}).update({m: round(self.regression.mean(m), 4) for m in REG_METRICS})
            out["val_per_target"] = self.regression.per_target()
        return out


class Task:
    name = "task"

    def __init__(self, labels: Sequence[str], targets: Sequence[str]):
        self.labels, self.targets = tuple(labels), tuple(targets)
        self.k = len(self.labels)

    # --- training
    def criterion(self, cfg, class_targets: list[int]) -> nn.Module:
        raise NotImplementedError

    def train_hits(self, out: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
        """(correct, counted) class predictions of a batch, for the train accuracy column."""
        if not self.k:
            return 0, 0
        idx = (y.argmax(1) if y.ndim == 2 and not self.targets else y[:, 0].long() if self.targets else y)
        ok = idx != IGNORE_INDEX
        return int((out[:, :self.k].detach().argmax(1)[ok] == idx[ok]).sum()), int(ok.sum())

    def check_config(self, cfg) -> None:
        if self.targets and (cfg.mixup > 0 or cfg.cutmix > 0):
            raise ConfigError("mixup/cutmix mix class targets only; turn them off for a model with continuous targets")

    # --- validation
    def validate(self, model: nn.Module, loader, device: torch.device, tta: bool) -> Validation:
        raise NotImplementedError

    def monitor(self, v: Validation, name: str) -> float:
        """The value the best epoch maximises: -loss, a class metric, or the mean CCC over targets (`ccc`)."""
        if name == "loss":
            return -v.loss
        if name in ("accuracy", "balanced_accuracy", "macro_f1"):
            if v.classes is None:
                return v.regression.mean("ccc")  # a regression run under the default monitor: its headline score
            return float(getattr(v.classes, name))
        if name == "ccc":
            if v.regression is None:
                raise ConfigError("monitor ccc: this model has no continuous targets")
            return v.regression.mean("ccc")
        raise ConfigError(f"monitor {name!r}: not a score of the {self.name} task")

    def log_fields(self) -> list[str]:
        reg = [f"val_{m}" for m in REG_METRICS] + [f"val_{t}_{m}" for t in self.targets for m in REG_METRICS] if self.targets else []
        cls = CLASS_LOG if self.k else []
        return ["epoch", "train_loss", "train_accuracy", "val_loss", *cls, *reg, *COMMON_LOG]

    def curves(self) -> list[tuple[str, str]]:
        """(log column, legend) pairs of the right-hand panel of curves.png."""
        out = [("train_accuracy", "train accuracy"), ("val_accuracy", "val accuracy"), ("val_macro_f1", "val macro-F1")] if self.k else []
        return out + [(f"val_{t}_ccc", f"val {t} CCC") for t in self.targets]

    def describe(self, row: dict[str, Any]) -> str:
        fitted = row["train_loss"] is None  # epochs 0: the head fitted in closed form, no SGD
        parts = ["head fitted" if fitted else f"train loss {row['train_loss']:.4f}"]
        if self.k:
            parts.append(("" if fitted else f"acc {row['train_accuracy']:.4f}  ") + f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} "
                         f"macro-F1 {row['val_macro_f1']:.4f}")
        else:
            parts.append(f"val loss {row['val_loss']:.4f}")
        parts += [f"{t} CCC {row.get(f'val_{t}_ccc', float('nan')):.4f}" for t in self.targets]
        return "  ".join(parts)

    def per_source(self, v: Validation, names: np.ndarray, sources: Sequence[str]) -> dict[str, dict[str, float]]:
        """Validation scores of each merged source (what it has: classes, targets or both)."""
        out = {}
        for src in sources:
            m = names == src
            if not m.any():
                continue
            out[src] = self._subset_scores(v, m)
        return out

    def _subset_scores(self, v: Validation, m: np.ndarray) -> dict[str, float]:
        raise NotImplementedError


class ClassifyTask(Task):
    """Classes only: the engine's original path (hard or soft targets, label smoothing, class weights, MixUp)."""

    name = "classify"

    def criterion(self, cfg, class_targets: list[int]) -> nn.Module:
        from .engine import class_weights

        weight = class_weights(class_targets, self.k) if cfg.class_balance == "loss" else None
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)

    def validate(self, model, loader, device, tta) -> Validation:
        from ..data.splits import sklearn_notes
        from ..evaluate import predict_probs

        probs, targets, loss = predict_probs(model, loader, device, tta=tta)
        with sklearn_notes():
            m = compute_metrics(targets, probs.argmax(1), self.labels, loss=loss)
        return Validation(loss, m, preds=probs, y=np.asarray(targets))

    def _subset_scores(self, v, m):
        return compute_metrics(v.y[m], v.preds[m].argmax(1), self.labels).summary()


class TargetLoss(nn.Module):
    """class_weight * cross-entropy (rows with a class) + target_weight * regression loss (cells with a value)."""

    def __init__(self, k: int, reg: nn.Module, class_weight: float = 1.0, target_weight: float = 1.0,
                 weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.k, self.reg, self.cw, self.tw = k, reg, float(class_weight), float(target_weight)
        self.ce = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing, ignore_index=IGNORE_INDEX, reduction="sum")

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = out.sum() * 0.0
        if self.k:
            idx = y[:, 0].long()
            n = int((idx != IGNORE_INDEX).sum())
            if n:
                loss = loss + self.cw * self.ce(out[:, :self.k].float(), idx) / n
        if out.shape[1] > self.k:
            loss = loss + self.tw * self.reg(out[:, self.k:].float(), y[:, 1:].float())
        return loss


class TargetTask(Task):
    """Continuous targets, with or without classes (`regress` / `multitask`)."""

    def criterion(self, cfg, class_targets: list[int]) -> nn.Module:
        from .engine import class_weights

        labelled = [t for t in class_targets if t != IGNORE_INDEX]
        weight = class_weights(labelled, self.k) if self.k and cfg.class_balance == "loss" else None
        self.loss = TargetLoss(self.k, create_loss(cfg.loss), cfg.class_weight, cfg.target_weight, weight, cfg.label_smoothing)
        return self.loss

    def validate(self, model, loader, device, tta) -> Validation:
        from ..evaluate.loop import predict_outputs

        preds, y = predict_outputs(model, loader, device, self.k, tta=tta)
        return self.score(preds, y)

    def score(self, preds: np.ndarray, y: np.ndarray, ci: bool = False) -> Validation:
        """Scores of predictions [probs, targets] against [class index, targets] (validation: no intervals)."""
        from ..data.splits import sklearn_notes

        loss, classes = 0.0, None
        if self.k:
            idx = y[:, 0].astype(int)
            ok = idx != IGNORE_INDEX
            if ok.any():
                p = np.clip(preds[ok, :self.k], 1e-12, 1.0)
                loss += float(-np.log(p[np.arange(ok.sum()), idx[ok]]).mean())
                with sklearn_notes():
                    classes = compute_metrics(idx[ok], preds[ok, :self.k].argmax(1), self.labels, loss=None)
        pt = torch.from_numpy(preds[:, self.k:].astype(np.float32))
        yt = torch.from_numpy(y[:, 1:].astype(np.float32))
        reg_loss = float(create_loss(getattr(self, "loss_name", "ccc"))(pt, yt)) if len(pt) else float("nan")
        loss += reg_loss
        reg = compute_regression(preds[:, self.k:], y[:, 1:], self.targets, reg_loss, ci=ci)
        return Validation(loss, classes, reg, preds, y)

    def _subset_scores(self, v, m):
        sub = self.score(v.preds[m], v.y[m])
        out = {}
        if sub.classes is not None:
            out.update(sub.classes.summary())
        if any(t.n for t in sub.regression.targets):
            out.update({k: val for k, val in sub.regression.summary().items() if k != "loss"})
        return out


class RegressTask(TargetTask):
    name = "regress"


class MultiTask(TargetTask):
    name = "multitask"


TASKS: dict[str, type[Task]] = {"classify": ClassifyTask, "regress": RegressTask, "multitask": MultiTask}


def select_task(labels: Sequence[str], targets: Sequence[str], loss: str = "ccc") -> Task:
    """The task of a run or model: classes only, targets only, or both."""
    if not labels and not targets:
        raise ConfigError("the data has neither class labels nor continuous targets")
    name = "multitask" if labels and targets else "regress" if targets else "classify"
    task = TASKS[name](labels, targets)
    task.loss_name = loss
    return task
