"""The inference loop over a labelled dataset: the samples a model can be scored on, batched probabilities, and
`evaluate_dataset` (what `emotune evaluate` runs). Images become model input through the model card's one
`Preprocess` and flip TTA averages probabilities (`flip_tta`), exactly as `Recognizer.classify` does."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.transforms import flip_tta
from ..progress import progress as progress_bar
from .metrics import compute_metrics
from .report import EvalReport, prediction_table


def labelled_samples(model_labels: Sequence[str], data: str | Path, data_format: str = "auto", split: str | None = None,
                     ferplus_mode: str = "majority", drop_labels: Sequence[str] = (), drop_unknown_labels: bool = False,
                     max_samples: int = 0) -> tuple[list, dict[str, int]]:
    """The samples a model can be scored on, and the counts of those dropped for labels it lacks (only when asked:
    a label the model lacks is otherwise an error naming it)."""
    from collections import Counter

    from ..data.dataset import filter_labels
    from ..data.sources import load_samples
    from ..data.splits import stratified_subset

    samples = load_samples(data, data_format, split=split, ferplus_mode=ferplus_mode, drop_labels=drop_labels)
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


def evaluate_dataset(model_path: str | Path, data: str | Path, data_format: str = "auto", split: str | None = None,
                     ferplus_mode: str = "majority", drop_labels: Sequence[str] = (), drop_unknown_labels: bool = False,
                     batch_size: int = 128, tta: bool = False, on_bad: str = "skip", workers: int = 0,
                     device: str = "auto", progress: bool = True, max_samples: int = 0) -> EvalReport:
    """Score a saved model on a labelled dataset, mapping label names; labels the model lacks are refused
    unless dropped explicitly (`drop_labels`, or all of them with `drop_unknown_labels`)."""
    from ..data import EmotionDataset, Preprocess, prepare_samples
    from ..device import pick_device
    from ..models import load_checkpoint

    dev = pick_device(device)
    model, card = load_checkpoint(model_path)
    model.to(dev)
    samples, dropped = labelled_samples(card.labels, data, data_format, split, ferplus_mode, drop_labels, drop_unknown_labels,
                                        max_samples)
    prep, _ = prepare_samples(samples, card.channels, on_bad, cache=False, show=progress)
    ds = EmotionDataset(prep.samples, card.labels, Preprocess.from_card(card), card.channels)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    probs, targets, loss = predict_probs(model, loader, dev, tta=tta, progress=progress)
    m = compute_metrics(targets, probs.argmax(1), card.labels, loss=loss)
    preds = prediction_table([s.where for s in prep.samples], targets, probs.argmax(1), card.labels, probs)
    return EvalReport(str(model_path), str(data), m, [asdict(s) for s in prep.skipped], dropped, tta, preds)
