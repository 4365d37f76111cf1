"""The inference loop over a labelled dataset: the samples a model can be scored on, batched probabilities, and
`evaluate_dataset` (what `emotune evaluate` runs). Images become model input through the model card's one
`Preprocess` and flip TTA averages probabilities (`flip_tta`), exactly as `Recognizer.classify` does."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.transforms import flip_tta
from ..errors import ConfigError
from ..models.card import require_image_model
from ..progress import progress as progress_bar
from .metrics import compute_metrics
from .report import EvalReport, prediction_table


def labelled_samples(model_labels: Sequence[str], data: str | Path, data_format: str = "auto", split: str | None = None,
                     ferplus_mode: str = "majority", drop_labels: Sequence[str] = (), drop_unknown_labels: bool = False,
                     max_samples: int = 0, targets: Sequence[dict] = (), target_scale=None, tier: str | None = None
                     ) -> tuple[list, dict[str, int]]:
    """The samples a model can be scored on, and the counts of those dropped for labels it lacks (only when asked:
    a label the model lacks is otherwise an error naming it). `targets` (a card's) read the continuous targets, with
    the card's scale for a manifest unless `target_scale` is given. A model is refused data that has nothing it
    predicts: a regression model a classification set, a classifier a set without classes."""
    from collections import Counter

    from ..data.dataset import filter_labels
    from ..data.sources import detect_format, load_samples
    from ..data.splits import stratified_subset
    from ..errors import ConfigError

    extra = {}
    if targets:
        fmt = detect_format(data) if data_format == "auto" else data_format
        scale = target_scale or (targets[0].get("scale") if fmt == "manifest" else None)
        extra = {"targets": [f"{t['name']}={t.get('column') or t['name']}" for t in targets] if fmt == "manifest"
                 else [t["name"] for t in targets], "target_scale": scale}
    samples = load_samples(data, data_format, split=split, ferplus_mode=ferplus_mode, drop_labels=drop_labels, tier=tier, **extra)
    has_targets = any(s.targets for s in samples)
    if targets and not model_labels and not has_targets:
        raise ConfigError(f"{data}: a regression model (targets {[t['name'] for t in targets]}) cannot be scored on a "
                          "classification dataset without those targets")
    if model_labels and not targets and any(not s.label for s in samples):
        raise ConfigError(f"{data}: a classification model cannot be scored on images without a class (a valence/arousal "
                          "dataset); score a model with continuous targets on it")
    if targets and model_labels and not has_targets and not any(s.label for s in samples):
        raise ConfigError(f"{data}: the data has neither the model's classes nor its targets")
    unknown = Counter(s.label for s in samples if s.label not in model_labels)
    drop = set(drop_labels) | (set(unknown) if drop_unknown_labels else set())
    dropped = {k: v for k, v in unknown.items() if k in drop}
    samples = filter_labels(samples, model_labels, sorted(drop), where=str(data))
    return stratified_subset(samples, max_samples, 0), dropped


@torch.no_grad()
def predict_probs(model: nn.Module, loader: DataLoader, device: torch.device, tta: bool = False,
                  progress: bool = False, desc: str = "evaluating") -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax probabilities, integer targets and mean cross-entropy over a loader. With `tta`, the probabilities
    are the mean of the image's and its mirror's (`flip_tta`), and the loss is that mean's cross-entropy."""
    model.eval()
    probs, targets, loss_sum, n = [], [], 0.0, 0
    for x, y in progress_bar(loader, progress, desc=desc):
        x = x.to(device, non_blocking=True)
        y_idx = y.argmax(1) if y.ndim == 2 else y
        if tta:
            p = flip_tta(lambda t: torch.softmax(model(t).float(), 1), x).cpu()
            logp = torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))
            loss_sum += float(-(y * logp).sum() if y.ndim == 2 else nn.functional.nll_loss(logp, y_idx, reduction="sum"))
        else:
            logits = model(x).float().cpu()
            loss_sum += float(nn.functional.cross_entropy(logits, y if y.ndim == 2 else y_idx, reduction="sum"))
            p = torch.softmax(logits, 1)
        n += len(x)
        probs.append(p.numpy())
        targets.append(y_idx.numpy())
    return np.concatenate(probs), np.concatenate(targets), loss_sum / max(n, 1)


@torch.no_grad()
def predict_outputs(model: nn.Module, loader: DataLoader, device: torch.device, num_classes: int, tta: bool = False,
                    progress: bool = False, desc: str = "evaluating") -> tuple[np.ndarray, np.ndarray]:
    """For a model with continuous targets: predictions N x (K + T) ([class probabilities, targets clipped to
    [-1, 1]], models/heads.py `predictions`) and the dataset's N x (1 + T) target vectors [class index or -100,
    targets or NaN]. With `tta`, the mean of the image's and its mirror's predictions (`flip_tta`)."""
    from ..models.heads import predictions

    model.eval()
    preds, ys = [], []
    for x, y in progress_bar(loader, progress, desc=desc):
        x = x.to(device, non_blocking=True)
        fn = lambda t: predictions(model(t), num_classes)  # noqa: E731
        preds.append((flip_tta(fn, x) if tta else fn(x)).cpu().numpy())
        ys.append(y.numpy())
    return np.concatenate(preds), np.concatenate(ys)


class _OnnxModule(nn.Module):
    """An onnxruntime model behind the nn.Module interface the evaluation loop uses: its probabilities come back as
    log-probabilities, which softmax and cross-entropy treat exactly as logits."""

    def __init__(self, backend):
        super().__init__()
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.from_numpy(self.backend(x.detach().cpu().numpy()))
        return torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))


def onnx_as_module(path: str | Path) -> tuple[nn.Module, Any]:
    """(module, card) for an exported classifier .onnx with its card beside it (sha256 checked by load_backend)."""
    from ..inference.recognizer import load_backend

    card, backend = load_backend(path, "cpu", "onnx")
    require_image_model(card, path, "evaluate")
    if card.targets:
        raise ConfigError(f"{path}: evaluate an .onnx model with continuous targets through its checkpoint instead")
    return _OnnxModule(backend), card


def evaluate_dataset(model_path: str | Path, data: str | Path, data_format: str = "auto", split: str | None = None,
                     ferplus_mode: str = "majority", drop_labels: Sequence[str] = (), drop_unknown_labels: bool = False,
                     batch_size: int = 128, tta: bool = False, on_bad: str = "skip", workers: int = 0,
                     device: str = "auto", progress: bool = True, max_samples: int = 0, target_scale=None,
                     tier: str | None = None) -> EvalReport:
    """Score a saved model on a labelled dataset, mapping label names; labels the model lacks are refused
    unless dropped explicitly (`drop_labels`, or all of them with `drop_unknown_labels`)."""
    from ..data import EmotionDataset, Preprocess, prepare_samples
    from ..device import pick_device
    from ..models import load_checkpoint
    from ..models.card import read_card

    dev = pick_device(device)
    if Path(model_path).suffix == ".onnx":  # an exported (e.g. int8) model, scored on the same crops as its checkpoint
        model, card = onnx_as_module(model_path)
        dev = torch.device("cpu")
    else:
        require_image_model(read_card(model_path)[0], model_path, "evaluate")
        model, card = load_checkpoint(model_path)
    model.to(dev)
    samples, dropped = labelled_samples(card.labels, data, data_format, split, ferplus_mode, drop_labels, drop_unknown_labels,
                                        max_samples, card.targets, target_scale, tier)
    prep, _ = prepare_samples(samples, card.channels, on_bad, cache=False, show=progress)
    if card.targets:
        return _evaluate_targets(model, card, prep, dev, batch_size, workers, tta, progress, model_path, data, dropped)
    ds = EmotionDataset(prep.samples, card.labels, Preprocess.from_card(card), card.channels)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    probs, targets, loss = predict_probs(model, loader, dev, tta=tta, progress=progress)
    m = compute_metrics(targets, probs.argmax(1), card.labels, loss=loss)
    preds = prediction_table([s.where for s in prep.samples], targets, probs.argmax(1), card.labels, probs)
    return EvalReport(str(model_path), str(data), m, [asdict(s) for s in prep.skipped], dropped, tta, preds)


def _evaluate_targets(model, card, prep, dev, batch_size, workers, tta, progress, model_path, data, dropped) -> EvalReport:
    """`evaluate_dataset` for a model with continuous targets: class scores on the images with a class, target scores
    (with bootstrap intervals) on those with values, a predictions table with both."""
    import pandas as pd

    from ..data import EmotionDataset, Preprocess
    from ..train.tasks import select_task

    names = card.target_names
    ds = EmotionDataset(prep.samples, card.labels, Preprocess.from_card(card), card.channels, targets=names)
    preds, y = predict_outputs(model, DataLoader(ds, batch_size=batch_size, num_workers=workers), dev, len(card.labels), tta, progress)
    v = select_task(card.labels, names).score(preds, y, ci=True)
    k = len(card.labels)
    df = pd.DataFrame({"file": [s.where for s in prep.samples],
                       "label": [card.labels[int(i)] if i >= 0 else "" for i in y[:, 0]] if k else "",
                       "pred": [card.labels[i] for i in preds[:, :k].argmax(1)] if k else ""})
    for j, c in enumerate(card.labels):
        df[c] = np.round(preds[:, j], 6)
    for j, t in enumerate(names):
        df[f"true_{t}"] = np.round(y[:, 1 + j], 6)
        df[t] = np.round(preds[:, k + j], 6)
    return EvalReport(str(model_path), str(data), v.classes, [asdict(s) for s in prep.skipped], dropped, tta, df, v.regression,
                      (preds[:, k:], y[:, 1:]))
