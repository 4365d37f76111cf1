"""The sequence model: a frame encoder (emotune/ImageNet backbone) and a temporal head, saved as one emotune
checkpoint (safetensors + bound card; the card's `temporal` field holds the head config, window and encoder spec).

The checkpoint is self-contained: it carries the encoder's weights (`encoder.*`) as well as the head's (`temporal.*`),
so `predict --temporal-model`, `evaluate` and the ONNX export of backbone + RNN need nothing else. Frame inputs
follow the card's own preprocessing fields, which are the encoder's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from .embed import FrameEncoder, build_encoder
from .heads import TemporalNet, head_from_dict


class SequenceModel(nn.Module):
    """frames B x W x C x S x S -> B x W x (classes + targets); `temporal` alone maps embeddings B x W x D."""

    def __init__(self, encoder: FrameEncoder, temporal: TemporalNet):
        super().__init__()
        self.encoder, self.temporal = encoder, temporal

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        b, w = frames.shape[:2]
        return self.encoder(frames.flatten(0, 1)).reshape(b, w, -1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.embed(frames))


def build_sequence_model(card) -> SequenceModel:
    t = card.temporal
    try:
        encoder = build_encoder(t["encoder"])
        head = TemporalNet(head_from_dict(t["head"]), int(t["embed_dim"]), card.num_outputs)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"model card 'temporal' field is incomplete ({type(exc).__name__}: {exc})") from None
    return SequenceModel(encoder, head)


def load_sequence_model(path: str | Path) -> tuple[SequenceModel, Any]:
    """A trained sequence model and its card (a run folder, its card or weights); CheckpointError for a per-image model."""
    from ..models import load_checkpoint, read_card

    card, card_path = read_card(path)
    if not card.temporal:
        raise CheckpointError(f"{card_path}: not a sequence model (no 'temporal' field); train one with emotune seq train")
    model, card = load_checkpoint(path)
    return model.eval(), card


def window_plan(n: int, window: int, delay: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """For each of n frames, the start of the window that predicts it and its position there: the window ending
    `delay` frames after it (or at the last frame), `window` long, clipped at the start. With a causal head, a frame
    near the start reads the same frames as a stream would."""
    k = np.arange(n)
    end = np.minimum(k + delay, n - 1)
    start = np.clip(end - window + 1, 0, max(n - window, 0))
    return start, k - start


@torch.no_grad()
def predict_embeddings(net: TemporalNet, emb: np.ndarray, window: int, delay: int = 0, chunk: int = 256) -> np.ndarray:
    """Raw per-frame outputs (n x O) of a sequence of embeddings (n x D), each frame predicted as `window_plan` says."""
    n = len(emb)
    if n == 0:
        return np.zeros((0, net.num_outputs), np.float32)
    start, pos = window_plan(n, window, delay)
    w = min(window, n)
    starts = np.unique(start)
    x = torch.from_numpy(np.ascontiguousarray(emb, np.float32))
    outs: dict[int, np.ndarray] = {}
    net.eval()
    for i in range(0, len(starts), chunk):
        s = starts[i:i + chunk]
        batch = torch.stack([x[j:j + w] for j in s])
        for j, o in zip(s, net(batch).float().numpy()):
            outs[int(j)] = o
    return np.stack([outs[int(s)][p] for s, p in zip(start, pos)])
