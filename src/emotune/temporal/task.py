"""The `sequence` task: per-frame outputs of windows (B x W x outputs) scored like the `multitask` task on the
frames that exist (padding masked), plus the per-video CCC of the video emotion literature.

Registered in `emotune.train.tasks.TASKS` as "sequence". Its loss is the multi-task loss of train/tasks.py
(cross-entropy on frames with a class, the registered regression loss, CCC by default, on frames with targets)
over every real frame of the batch's windows: CCC is a batch statistic, taken over all of the batch's frames as
in Kollias et al. (2019). Scores: the TargetTask's per-frame CCC, Pearson r, RMSE, MAE, SAGR and class metrics on all
frames pooled, and `video_ccc` (per target, the CCC of each video's frames, averaged over videos).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..evaluate.regression import _ccc
from ..train.tasks import TASKS, TargetTask


class MaskedSequenceLoss(nn.Module):
    """The frame loss over the real frames of B x W windows (mask True = a frame, False = padding)."""

    def __init__(self, frame_loss: nn.Module):
        super().__init__()
        self.frame_loss = frame_loss

    def forward(self, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.frame_loss(out[mask], y[mask])


class SequenceTask(TargetTask):
    name = "sequence"

    def criterion(self, cfg, class_targets: list[int]) -> nn.Module:
        return MaskedSequenceLoss(super().criterion(cfg, class_targets))

    def video_scores(self, preds: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> dict[str, float]:
        """`video_<target>_ccc` (mean over videos with at least two annotated frames) and their mean `video_ccc`."""
        out: dict[str, float] = {}
        for j, t in enumerate(self.targets):
            vals = []
            for p, y in zip(preds, ys):
                ok = ~np.isnan(y[:, 1 + j])
                if ok.sum() >= 2:
                    vals.append(float(_ccc(p[ok, self.k + j].astype(np.float64), y[ok, 1 + j])))
            out[f"video_{t}_ccc"] = round(float(np.mean(vals)), 4) if vals else float("nan")
        if self.targets:
            vals = [out[f"video_{t}_ccc"] for t in self.targets if out[f"video_{t}_ccc"] == out[f"video_{t}_ccc"]]
            out["video_ccc"] = round(float(np.mean(vals)), 4) if vals else float("nan")
        return out


TASKS["sequence"] = SequenceTask


def sequence_task(labels: Sequence[str], targets: Sequence[str], loss: str = "ccc") -> SequenceTask:
    task = SequenceTask(labels, targets)
    task.loss_name = loss
    return task
