"""Fit the head's last linear layer in closed form on frozen features (`--head-init fit`).

Why: on a few hundred photos (OASIS, Twitter I) a linear probe trained by SGD with crop augmentation lands well
below a regularised linear model fitted on the same frozen features, and costs an SGD run per fold. Here one pass of
the frozen network over the training images (evaluation preprocessing, plus their mirror images) gives the inputs of
the head's last `nn.Linear`; scikit-learn fits it, with the regularisation chosen by an inner cross-validation
grouped like the outer one, and the weights are written back. With `epochs: 0` that is the whole run (a linear
probe); with epochs > 0 SGD continues from it (the LP-FT recipe: probe first, then fine-tune).

- classes: multinomial logistic regression on the rows with a class (its decision values are the logits);
- targets: ridge regression per target on the rows with a value. For a CCC loss the predictions are then stretched
  to the spread of the training targets (measured on inner out-of-fold predictions), because ridge shrinks towards
  the mean and CCC, unlike Pearson's r, pays for a shrunken spread.
Standardisation is folded into the weights, so the saved model is an ordinary checkpoint.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.dataset import IGNORE_INDEX
from ..errors import ConfigError

C_GRID = (0.001, 0.01, 0.1, 1.0)
ALPHAS = tuple(np.logspace(0, 5, 11))


@dataclass
class HeadFit:
    """What the fit chose, for the run's log and card."""

    n_rows: int
    n_features: int
    C: float | None = None
    alphas: dict[str, float] | None = None
    stretch: dict[str, float] | None = None

    def describe(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def final_linear(model: nn.Module) -> nn.Linear:
    """The last nn.Linear of the model's head (timm's classifier, or a fusion head's output layer)."""
    head = model.get_classifier()
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"--head-init fit: the head of {type(model).__name__} has no linear layer to fit")
    return linears[-1]


@torch.inference_mode()
def head_inputs(model: nn.Module, dataset, device: torch.device, batch_size: int = 64, flip: bool = True,
                show: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, y, row index) of the inputs of the head's last linear layer over `dataset` (as it is preprocessed),
    and over its mirror images when `flip`."""
    from torch.utils.data import DataLoader

    from ..progress import progress

    layer = final_linear(model)
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    xs, ys, idx = [], [], []
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
        start = 0
        for x, y in progress(loader, show, desc="features for the head fit", unit="batch"):
            x = x.to(device)
            n = x.shape[0]
            for view in ((x, torch.flip(x, dims=[3])) if flip else (x,)):
                model(view)
                xs.append(seen.pop().numpy())
                ys.append(np.asarray(y))
                idx.append(np.arange(start, start + n))
            start += n
    finally:
        hook.remove()
        model.train(was_training)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(idx)


def _inner_cv(groups: np.ndarray, n_splits: int = 3):
    from sklearn.model_selection import GroupKFold

    k = min(n_splits, len(np.unique(groups)))
    if k < 2:
        raise ConfigError("--head-init fit needs at least two groups (subjects, themes or images) in the training set")
    return GroupKFold(k)


def fit_classes(X: np.ndarray, y: np.ndarray, k: int, groups: np.ndarray, weight: np.ndarray | None,
                balanced: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """(W [k, d], b [k], C) of a standardised multinomial logistic regression, folded to raw features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X)
    Z = scaler.transform(X)
    if len(np.unique(y)) < k:
        raise ConfigError(f"--head-init fit: only {len(np.unique(y))} of {k} classes have training images")
    search = GridSearchCV(LogisticRegression(max_iter=3000, class_weight="balanced" if balanced else None),
                          {"C": list(C_GRID)}, cv=_inner_cv(groups))
    search.fit(Z, y, groups=groups, **({"sample_weight": weight} if weight is not None else {}))
    lr = search.best_estimator_
    coef, icpt = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # binary: one decision value for class 1 -> logits (-z/2, z/2), the same softmax
        coef, icpt = np.vstack([-coef / 2, coef / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
    W = np.zeros((k, X.shape[1]))
    b = np.zeros(k)
    W[lr.classes_.astype(int)] = coef
    b[lr.classes_.astype(int)] = icpt
    return _unscale(W, b, scaler) + (float(search.best_params_["C"]),)


def fit_target(X: np.ndarray, t: np.ndarray, groups: np.ndarray, weight: np.ndarray | None,
               stretch: bool) -> tuple[np.ndarray, float, float, float]:
    """(w [d], b, alpha, stretch factor) of a standardised ridge regression for one target, folded to raw features."""
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.model_selection import cross_val_predict
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X)
    Z = scaler.transform(X)
    fit_kw = {"sample_weight": weight} if weight is not None else {}
    cv = _inner_cv(groups, 5)
    ridge = RidgeCV(alphas=ALPHAS, cv=list(cv.split(Z, t, groups))).fit(Z, t, **fit_kw)  # refitted on all rows
    alpha = float(ridge.alpha_)
    w, b = ridge.coef_.copy(), float(ridge.intercept_)
    s = 1.0
    if stretch:
        oof = cross_val_predict(Ridge(alpha=alpha), Z, t, groups=groups, cv=cv, params=fit_kw or None)
        if oof.std() > 1e-9:
            s = float(t.std() / oof.std())
            w, b = w * s, s * (b - float(oof.mean())) + float(t.mean())
    W, B = _unscale(w[None, :], np.array([b]), scaler)
    return W[0], float(B[0]), alpha, s


def _unscale(W: np.ndarray, b: np.ndarray, scaler) -> tuple[np.ndarray, np.ndarray]:
    """W z + b with z = (x - mean) / scale  ->  W' x + b'."""
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    W2 = W / scale
    return W2, b - W2 @ scaler.mean_


def fit_head(model: nn.Module, train_ds, k: int, targets: tuple[str, ...], device: torch.device, *, loss: str = "ccc",
             balanced: bool = False, weights: np.ndarray | None = None, show: bool = False) -> HeadFit:
    """Fit the head's last linear layer of `model` on `train_ds` (read with `eval_tf`-style preprocessing by the
    caller) and write it in place. `weights`: per-image draw weights (source shares), or None."""
    X, Y, rows = head_inputs(model, train_ds, device, show=show)
    samples = train_ds.samples
    groups = np.array([samples[i].split_group or str(samples[i].path or i) for i in rows])
    w_rows = None if weights is None else np.asarray(weights, dtype=float)[rows]
    layer = final_linear(model)
    W = layer.weight.detach().cpu().double().numpy().copy()
    b = layer.bias.detach().cpu().double().numpy().copy()
    if W.shape[0] != k + len(targets):
        raise ConfigError(f"--head-init fit: the head has {W.shape[0]} outputs, the data {k} classes + {len(targets)} targets")
    info = HeadFit(n_rows=len(X), n_features=int(X.shape[1]))
    if k:
        cls = Y[:, 0].astype(int) if targets else (Y.argmax(1) if Y.ndim == 2 else Y.astype(int))
        ok = cls != IGNORE_INDEX
        Wc, bc, info.C = fit_classes(X[ok], cls[ok], k, groups[ok], None if w_rows is None else w_rows[ok], balanced)
        W[:k], b[:k] = Wc, bc
    if targets:
        info.alphas, info.stretch = {}, {}
        for j, name in enumerate(targets):
            t = Y[:, 1 + j].astype(float)
            ok = np.isfinite(t)
            if ok.sum() < 10:
                raise ConfigError(f"--head-init fit: target {name} has {int(ok.sum())} training values (at least 10 needed)")
            w, bj, alpha, s = fit_target(X[ok], t[ok], groups[ok], None if w_rows is None else w_rows[ok], "ccc" in loss)
            W[k + j], b[k + j] = w, bj
            info.alphas[name], info.stretch[name] = alpha, round(s, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W).to(layer.weight))
        layer.bias.copy_(torch.from_numpy(b).to(layer.bias))
    return info


def eval_view(dataset, transform):
    """The training dataset read with the evaluation transform (no augmentation): what the fit sees."""
    view = copy.copy(dataset)
    view.transform = transform
    return view
