"""Greedy IoU tracking: enough to follow faces through a video and give each a stable id."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` with every box in `b` (x, y, w, h rows)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a, b = np.asarray(a, float), np.asarray(b, float)
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class IoUTracker:
    """Match each frame's boxes to live tracks by IoU (highest first); unmatched boxes start new tracks.

    A track survives `max_age` processed frames without a match, so a face missed once keeps its id.
    """

    iou_threshold: float = 0.3
    max_age: int = 5
    _boxes: dict[int, np.ndarray] = field(default_factory=dict)
    _age: dict[int, int] = field(default_factory=dict)
    _next: int = 0

    def update(self, boxes: list[tuple[float, float, float, float]]) -> list[int]:
        ids = list(self._boxes)
        ious = iou_matrix(np.array([self._boxes[i] for i in ids]).reshape(-1, 4), np.array(boxes).reshape(-1, 4))
        out: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for flat in np.argsort(-ious, axis=None):
            t, d = np.unravel_index(flat, ious.shape)
            if ious[t, d] < self.iou_threshold:
                break
            if ids[t] in used or out[d] is not None:
                continue
            out[d] = ids[t]
            used.add(ids[t])
        for tid in ids:
            self._age[tid] = 0 if tid in used else self._age[tid] + 1
            if self._age[tid] > self.max_age:
                del self._boxes[tid], self._age[tid]
        for d, box in enumerate(boxes):
            if out[d] is None:
                out[d] = self._next
                self._age[self._next] = 0
                self._next += 1
            self._boxes[out[d]] = np.asarray(box, float)
        return [int(i) for i in out]
