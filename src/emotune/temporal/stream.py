"""The `temporal` smoother of `emotune predict --temporal-model RUN`: a trained sequence model run over each
track's recent face crops while the video streams.

Per processed frame, every face crop the recognizer made is embedded by the sequence model's own encoder (one extra
backbone pass per face); each track keeps its last `window` embeddings, and a frame's outputs come from the window
ending `delay` frames after it (the same windows as `emotune seq evaluate --delay`, so streamed and offline results
agree). Memory per track is bounded by the window; the delay (0 by default: causal, as the heads are) is below it.

The outputs are laid out as the recognizer's columns: its classes (from the sequence model when it predicts the same
classes, else the per-frame probabilities pass through unchanged), its own targets, then the sequence model's other
targets (valence, arousal), which become new columns of the table.
"""
from __future__ import annotations

import sys
from collections import deque
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError
from ..models.heads import predictions
from .embed import embed_frames
from .model import load_sequence_model


class TemporalTrack:
    def __init__(self, owner: "TemporalTracks"):
        self.owner = owner
        self.emb: deque[np.ndarray] = deque(maxlen=owner.window)
        self.raw: dict[int, np.ndarray] = {}
        self.n = 0

    def push(self, t: float, obs: np.ndarray) -> None:
        d = self.owner.dim
        self.emb.append(np.asarray(obs[-d:], np.float32))
        self.raw[self.n] = np.asarray(obs[:-d], np.float64)
        self.n += 1

    def estimate(self, k: int) -> np.ndarray:
        o = self.owner
        last = self.n - 1
        pos = len(self.emb) - 1 - (last - k)
        if pos < 0:
            raise KeyError(f"observation {k} is older than the window")
        with torch.no_grad():
            out = o.model.temporal(torch.from_numpy(np.stack(self.emb))[None])[0, pos:pos + 1]
        pred = predictions(out, o.k, o.t)[0].numpy().astype(np.float64)
        return o.layout(self.raw[k], pred)

    def release(self, k: int) -> None:
        for j in [j for j in self.raw if j <= k]:
            del self.raw[j]


class TemporalTracks:
    """`make_track` of the temporal smoother, with the hooks VideoSmoother uses: `observe` (embed each face of a
    processed frame) and `bind` (the recognizer's labels and targets -> the output layout)."""

    def __init__(self, run: str, delay: int = 0):
        if not run:
            raise ConfigError("--smooth temporal needs --temporal-model RUN (a run of emotune seq train)")
        try:
            self.model, self.card = load_sequence_model(run)
        except CheckpointError as exc:
            raise ConfigError(f"--temporal-model {run}: needs a sequence model, a run of emotune seq train ({exc})") from None
        self.window = int(self.card.temporal["window"])
        if not 0 <= delay < self.window:
            raise ConfigError(f"--smooth-delay {delay}: a temporal model looks at most window - 1 = {self.window - 1} frames ahead")
        self.delay = delay
        self.dim = int(self.card.temporal["embed_dim"])
        self.k, self.t = len(self.card.labels), len(self.card.targets)
        self.labels: list[str] = []
        self.targets: list[str] = []
        self.extra: list[str] = list(self.card.target_names)
        self.class_map: list[int] | None = None

    def __call__(self) -> TemporalTrack:
        return TemporalTrack(self)

    def bind(self, labels: list[str], targets: list[str]) -> list[str]:
        """Fix the output layout for a recognizer's columns; returns the targets it adds (new table columns)."""
        self.labels, self.targets = list(labels), list(targets)
        mine = list(self.card.labels)
        if mine and set(mine) == set(labels):
            self.class_map = [mine.index(c) for c in labels]
        else:
            self.class_map = None
            if mine:
                print(f"note: --temporal-model {self.card.training.get('data', '')}: its classes {mine} are not the model's "
                      f"{labels}; the class columns stay per-frame, the temporal model adds its targets", file=sys.stderr)
        self.extra = [n for n in self.card.target_names if n not in targets]
        return self.extra

    @property
    def width(self) -> int:
        return len(self.labels) + len(self.targets) + len(self.extra)

    def layout(self, raw: np.ndarray, pred: np.ndarray) -> np.ndarray:
        k = len(self.labels)
        cls = pred[:self.k][self.class_map] if self.class_map is not None else raw[:k]
        names = self.card.target_names
        mine = dict(zip(names, pred[self.k:]))
        tg = [mine.get(n, raw[k + i]) for i, n in enumerate(self.targets)]
        return np.concatenate([cls, tg, [mine[n] for n in self.extra]]).astype(np.float64)

    def observe(self, payload: Any, probs: np.ndarray) -> np.ndarray:
        """N faces' [per-frame outputs, embedding] rows, from the frame's face crops."""
        crops = list(getattr(payload, "crops", None) or [])
        if len(crops) != len(probs):
            raise ConfigError("the temporal smoother needs the face crops of each frame (Recognizer.iter_video)")
        emb = embed_frames(self.model.encoder, crops) if crops else np.zeros((0, self.dim), np.float32)
        return np.concatenate([np.asarray(probs, np.float64).reshape(len(crops), -1), emb.astype(np.float64)], axis=1)
