"""Regression losses for continuous targets (valence, arousal), masked: a NaN target contributes no loss.

`ccc` is 1 - the concordance correlation coefficient (Lin 1989), the loss of the Aff-Wild/ABAW work: it rewards
agreement in correlation, mean and spread at once, so predictions cannot shrink to the mean as they do under MSE.
It is a batch statistic (per target column, over the batch's valid rows); `mse` is per sample; `ccc+mse` mixes
them (`alpha` * ccc + (1 - alpha) * mse), which keeps a per-sample gradient when batches are small.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .errors import ConfigError

EPS = 1e-8


def concordance(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Lin's CCC of two 1-D tensors: 2 cov / (var_p + var_t + (mean_p - mean_t)^2) (population moments)."""
    mp, mt = pred.mean(), true.mean()
    vp, vt = pred.var(unbiased=False), true.var(unbiased=False)
    cov = ((pred - mp) * (true - mt)).mean()
    return 2 * cov / (vp + vt + (mp - mt) ** 2 + EPS)


class CCCLoss(nn.Module):
    """Mean over target columns of 1 - CCC, each over the rows whose target is not NaN; a column with fewer than
    two valid rows is left out (no CCC exists); no column left -> a zero that keeps the graph."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = []
        for j in range(target.shape[1]):
            ok = ~torch.isnan(target[:, j])
            if int(ok.sum()) >= 2:
                terms.append(1 - concordance(pred[ok, j].float(), target[ok, j].float()))
        return torch.stack(terms).mean() if terms else pred.sum() * 0.0


class MaskedMSELoss(nn.Module):
    """Mean squared error over the (row, target) cells whose target is not NaN."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ok = ~torch.isnan(target)
        if not bool(ok.any()):
            return pred.sum() * 0.0
        return ((pred.float()[ok] - target.float()[ok]) ** 2).mean()


class MixLoss(nn.Module):
    """alpha * (1 - CCC) + (1 - alpha) * MSE."""

    def __init__(self, alpha: float = 0.5):
        super().__init__()
        self.alpha = float(alpha)
        self.ccc, self.mse = CCCLoss(), MaskedMSELoss()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.ccc(pred, target) + (1 - self.alpha) * self.mse(pred, target)


LOSSES: dict[str, Callable[[], nn.Module]] = {"ccc": CCCLoss, "mse": MaskedMSELoss, "ccc+mse": MixLoss}


def create_loss(name: str) -> nn.Module:
    """A regression loss by registry name (`ccc`, `mse`, `ccc+mse`)."""
    if name not in LOSSES:
        raise ConfigError(f"regression loss {name!r}: choose one of {', '.join(LOSSES)}")
    return LOSSES[name]()
