"""Multi-level feature fusion: classify from pooled low-, mid- and high-level features together.

Image-emotion work on ResNet found that lower layers (texture, colour, local shape) add to the last layer's
semantics. `FusionNet` wraps any timm backbone with `forward_intermediates`: the feature maps of the chosen
`levels` (indices into the backbone's `feature_info`) are average-pooled, each is layer-normalised, and the final
pre-logits features join them. `concat` concatenates everything before one linear classifier; `weighted` projects
each level to `dim` features and sums them with learned softmax weights (readable as each level's share).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError

HEAD_TYPES = ("linear", "fusion_concat", "fusion_weighted")


class ConcatFusion(nn.Module):
    def __init__(self, chans: Sequence[int], num_classes: int, drop: float = 0.0):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in chans)
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(sum(chans), num_classes)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.drop(torch.cat([n(f) for n, f in zip(self.norms, feats)], dim=1)))


class WeightedFusion(nn.Module):
    def __init__(self, chans: Sequence[int], num_classes: int, dim: int = 256, drop: float = 0.0):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in chans)
        self.proj = nn.ModuleList(nn.Linear(c, dim) for c in chans)
        self.level_logits = nn.Parameter(torch.zeros(len(chans)))  # equal shares at the start
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(dim, num_classes)

    def level_weights(self) -> torch.Tensor:
        return torch.softmax(self.level_logits, dim=0)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        w = self.level_weights()
        z = sum(w[i] * p(n(f)) for i, (n, p, f) in enumerate(zip(self.norms, self.proj, feats)))
        return self.fc(self.drop(self.act(z)))


class FusionNet(nn.Module):
    """A timm backbone (classifier removed) plus a fusion head; looks like a timm model to the training code."""

    def __init__(self, backbone: nn.Module, num_classes: int, mode: str = "concat", levels: Sequence[int] = (-3, -2),
                 dim: int = 256, drop: float = 0.0):
        super().__init__()
        if not hasattr(backbone, "forward_intermediates") or not hasattr(backbone, "feature_info"):
            raise ConfigError(f"{type(backbone).__name__}: no forward_intermediates in timm; use the linear head")
        n = len(backbone.feature_info)
        idx = sorted({i if i >= 0 else n + i for i in levels})
        if not idx or idx[0] < 0 or idx[-1] >= n:
            raise ConfigError(f"fusion levels {list(levels)} out of range: this backbone has {n} feature levels (0..{n - 1})")
        backbone.reset_classifier(0)
        self.backbone = backbone
        self.levels = idx
        self.mode = mode
        final = int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)
        chans = [int(backbone.feature_info[i]["num_chs"]) for i in idx] + [final]
        if mode == "concat":
            self.head = ConcatFusion(chans, num_classes, drop)
        elif mode == "weighted":
            self.head = WeightedFusion(chans, num_classes, dim, drop)
        else:
            raise ConfigError(f"fusion mode {mode!r}: choose concat or weighted")
        bcfg = dict(getattr(backbone, "pretrained_cfg", None) or {})
        fc = bcfg.get("first_conv")
        fc = fc if isinstance(fc, str) else (fc[0] if fc else None)
        self.pretrained_cfg = {**bcfg, "classifier": "head", "first_conv": f"backbone.{fc}" if fc else None,
                               "num_classes": num_classes}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        final, inter = self.backbone.forward_intermediates(x, indices=self.levels, intermediates_only=False)
        pooled = [t.mean(dim=(2, 3)) for t in inter] + [self.backbone.forward_head(final, pre_logits=True)]
        return self.head(pooled)

    def get_classifier(self) -> nn.Module:
        return self.head

    def group_matcher(self, coarse: bool = False) -> dict:
        """The backbone's layer groups under `backbone.`; the fusion head falls into the last group."""
        def prefix(v):
            if isinstance(v, str):
                return r"^backbone\." + v.lstrip("^")
            if isinstance(v, tuple):
                return (prefix(v[0]),) + v[1:]
            if isinstance(v, list):
                return [prefix(p) for p in v]
            raise ConfigError("this backbone's layer groups cannot be prefixed; use --strategy full with a fusion head")
        return {k: prefix(v) for k, v in self.backbone.group_matcher(coarse).items()}

    def head_spec(self) -> dict:
        spec = {"type": f"fusion_{self.mode}", "levels": self.levels}
        if self.mode == "weighted":
            spec["dim"] = self.head.fc.in_features
        return spec
