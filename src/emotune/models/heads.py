"""The head registry, and how a head's outputs are read.

A head maps backbone features to `len(labels) + len(targets)` outputs: first one logit per class, then one value
per continuous target (valence, arousal... on [-1, 1]). So one head type serves every task: classes only (the
classic classifier), targets only (a regression head) or both (multi-task on one backbone); the model card's
`labels` and `targets` say how the columns are read. Head types (`--head`):

- `linear`: the backbone's own classifier layer, resized to the outputs (timm's `num_classes`).
- `fusion_concat`, `fusion_weighted`: multi-level feature fusion (models/fusion.py).

`predictions` turns raw outputs into what users get (softmax over the classes, targets clipped to [-1, 1]);
`NamedOutputs` exports them as separate named ONNX outputs (`probs`, `targets`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .fusion import FusionNet


@dataclass(frozen=True)
class HeadType:
    """A registered head: `wrap(backbone, num_outputs, spec, drop_rate)` puts it on a timm backbone built with
    `num_outputs` classes; None keeps the backbone's own linear classifier."""

    name: str
    wrap: Callable[[nn.Module, int, dict[str, Any], float], nn.Module] | None
    doc: str


HEADS: dict[str, HeadType] = {}


def register_head(head: HeadType) -> HeadType:
    HEADS[head.name] = head
    return head


def _fusion(mode: str):
    def wrap(base: nn.Module, n: int, spec: dict[str, Any], drop: float) -> nn.Module:
        return FusionNet(base, n, mode, spec.get("levels", (-3, -2)), int(spec.get("dim", 256)), drop)
    return wrap


register_head(HeadType("linear", None, "the backbone's own linear classifier"))
register_head(HeadType("fusion_concat", _fusion("concat"), "pooled low/mid/high-level features, concatenated"))
register_head(HeadType("fusion_weighted", _fusion("weighted"), "pooled levels projected and summed with learnt weights"))


def get_head(name: str) -> HeadType:
    if name not in HEADS:
        raise ConfigError(f"head type {name!r} is not one of {list(HEADS)}")
    return HEADS[name]


def split_outputs(out: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(class logits N x K, targets N x T) of a head's raw N x (K + T) outputs."""
    return out[:, :num_classes], out[:, num_classes:]


def predictions(out: torch.Tensor, num_classes: int, num_targets: int | None = None) -> torch.Tensor:
    """Raw outputs -> [class probabilities (softmax), targets clipped to [-1, 1]], N x (K + T) float32."""
    logits, targets = split_outputs(out.float(), num_classes)
    t = int(targets.shape[1]) if num_targets is None else num_targets
    parts = ([torch.softmax(logits, dim=1)] if num_classes else []) + ([targets.clamp(-1.0, 1.0)] if t else [])
    return torch.cat(parts, dim=1)


class NamedOutputs(nn.Module):
    """For ONNX: a model with targets exports `probs` (when it has classes) and `targets` as separate outputs."""

    def __init__(self, model: nn.Module, num_classes: int, num_targets: int):
        super().__init__()
        self.model, self.k, self.t = model, num_classes, num_targets

    def output_names(self) -> list[str]:
        return (["probs"] if self.k else []) + (["targets"] if self.t else [])

    def forward(self, x: torch.Tensor):
        out = predictions(self.model(x), self.k, self.t)
        return tuple(o for o, n in ((out[:, :self.k], self.k), (out[:, self.k:], self.t)) if n)
