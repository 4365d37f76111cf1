"""A probability ensemble of emotune models stored as one checkpoint.

Models from different trajectories (e.g. a staged recipe and a long single-stage one) make different mistakes, so
the mean of their class probabilities is often more accurate than either; unlike a weight average (average.py)
it costs one forward pass per member. The ensemble outputs log mean probabilities, so the softmax that every
consumer (evaluate, predict, ONNX export) applies to a model's output gives the ensemble's probabilities unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError

HEAD_TYPE = "ensemble"


def is_ensemble(card) -> bool:
    """Whether a model card describes an ensemble (its head spec says so)."""
    return (card.head or {}).get("type") == HEAD_TYPE


class EnsembleNet(nn.Module):
    """Weighted mean of the members' softmax probabilities, returned as log-probabilities."""

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float], specs: Sequence[dict[str, Any]]):
        super().__init__()
        if len(members) < 2 or len(members) != len(weights) or len(specs) != len(members):
            raise CheckpointError(f"an ensemble needs two or more members with one weight each; got {len(members)} "
                                  f"members and {len(weights)} weights")
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
            raise CheckpointError(f"ensemble weights must be numbers, got {list(weights)}")
        total = float(sum(weights))
        if not all(math.isfinite(w) and w >= 0 for w in weights) or total <= 0:
            raise CheckpointError(f"ensemble weights must be finite, non-negative and not all zero; got {list(weights)}")
        self.members = nn.ModuleList(members)
        self.weights = [float(w) / total for w in weights]
        self.specs = [dict(s) for s in specs]
        # zero-weight members stay in the file (the card lists them) but add log(0) = -inf: keep them out of the sum
        self._log_w = [math.log(w) if w > 0 else None for w in self.weights]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        terms = [torch.log_softmax(m(x), dim=1) + lw for m, lw in zip(self.members, self._log_w) if lw is not None]
        return torch.logsumexp(torch.stack(terms, dim=0), dim=0)

    def head_spec(self) -> dict[str, Any]:
        return {"type": HEAD_TYPE, "members": self.specs, "weights": self.weights}

