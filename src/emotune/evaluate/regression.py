"""Scores of continuous predictions (valence, arousal on [-1, 1]): CCC, Pearson r, RMSE, MAE and sign agreement
(SAGR, the share of rows whose prediction has the sign of the truth), each with a bootstrap 95% interval
(scipy.stats.bootstrap, paired over rows, percentile method). Rows whose truth is NaN (not annotated) are left out."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

REG_METRICS = ("ccc", "pearson", "rmse", "mae", "sagr")
REG_NAMES = {"ccc": "CCC", "pearson": "Pearson r", "rmse": "RMSE", "mae": "MAE", "sagr": "SAGR"}
HIGHER_IS_BETTER = {"ccc": True, "pearson": True, "rmse": False, "mae": False, "sagr": True}


def _ccc(p, t, axis=-1):
    mp, mt = p.mean(axis), t.mean(axis)
    vp, vt = p.var(axis), t.var(axis)
    cov = ((p - np.expand_dims(mp, axis)) * (t - np.expand_dims(mt, axis))).mean(axis)
    return 2 * cov / (vp + vt + (mp - mt) ** 2 + 1e-12)


def _pearson(p, t, axis=-1):
    pc, tc = p - p.mean(axis, keepdims=True), t - t.mean(axis, keepdims=True)
    return (pc * tc).sum(axis) / np.sqrt((pc ** 2).sum(axis) * (tc ** 2).sum(axis) + 1e-12)


def _rmse(p, t, axis=-1):
    return np.sqrt(((p - t) ** 2).mean(axis))


def _mae(p, t, axis=-1):
    return np.abs(p - t).mean(axis)


def _sagr(p, t, axis=-1):
    return (np.sign(p) == np.sign(t)).mean(axis)


STATISTICS = {"ccc": _ccc, "pearson": _pearson, "rmse": _rmse, "mae": _mae, "sagr": _sagr}


def bootstrap_ci(stat, pred: np.ndarray, true: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Paired percentile bootstrap 95% interval of `stat(pred, true)`; (nan, nan) below 3 rows."""
    from scipy.stats import bootstrap

    if len(pred) < 3:
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        res = bootstrap((pred, true), stat, paired=True, vectorized=True, n_resamples=n_resamples, method="percentile",
                        random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass
class TargetScores:
    """One target's scores and their bootstrap 95% intervals."""

    name: str
    n: int
    values: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class RegressionMetrics:
    targets: list[TargetScores]
    loss: float = float("nan")

    def mean(self, metric: str) -> float:
        vals = [t.values[metric] for t in self.targets if t.n]
        return float(np.mean(vals)) if vals else float("nan")

    def summary(self) -> dict[str, float]:
        """Flat scores: each metric's mean over targets (`ccc`...) and per target (`valence_ccc`...)."""
        out = {m: round(self.mean(m), 4) for m in REG_METRICS}
        for t in self.targets:
            out.update({f"{t.name}_{m}": round(t.values[m], 4) for m in REG_METRICS})
        if not np.isnan(self.loss):
            out["loss"] = round(self.loss, 4)
        return out

    def per_target(self) -> dict[str, dict]:
        """{target: {metric: value, metric_ci: [lo, hi], n}}: what model cards and eval.json keep."""
        return {t.name: {"n": t.n, **{m: round(v, 4) for m, v in t.values.items()},
                         **{f"{m}_ci": [round(a, 4), round(b, 4)] for m, (a, b) in t.ci.items()}} for t in self.targets}

    def to_markdown(self) -> str:
        from ..tables import render_table

        rows = [[t.name, t.n, *[f"{t.values[m]:.3f}" + (f" [{t.ci[m][0]:.3f}, {t.ci[m][1]:.3f}]" if m in t.ci else "")
                                for m in REG_METRICS]] for t in self.targets]
        return render_table(["target", "n", *[REG_NAMES[m] + " [95% CI]" for m in REG_METRICS]], rows, "md")


def compute_regression(pred: np.ndarray, true: np.ndarray, names: Sequence[str], loss: float = float("nan"),
                       ci: bool = True, n_resamples: int = 1000) -> RegressionMetrics:
    """Scores of `pred` against `true` (N x T arrays on one scale), per target; NaN truths are left out."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    out = []
    for j, name in enumerate(names):
        ok = ~np.isnan(true[:, j])
        p, t = pred[ok, j], true[ok, j]
        if not len(p):
            out.append(TargetScores(name, 0, {m: float("nan") for m in REG_METRICS}))
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            values = {m: float(f(p, t)) for m, f in STATISTICS.items()}
        intervals = {m: bootstrap_ci(f, p, t, n_resamples) for m, f in STATISTICS.items()} if ci else {}
        out.append(TargetScores(name, int(len(p)), values, intervals))
    return RegressionMetrics(out, loss)


def plot_scatter(pred: np.ndarray, true: np.ndarray, names: Sequence[str], path, title: str = ""):
    """Predicted against true, one panel per target, with the identity line; written atomically."""
    from ..io import atomic_write
    from ..plotting import new_figure

    fig = new_figure(figsize=(4.2 * max(len(names), 1), 4.2), dpi=100)
    axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
    for j, (ax, name) in enumerate(zip(axes, names)):
        ok = ~np.isnan(true[:, j])
        ax.scatter(true[ok, j], pred[ok, j], s=8, alpha=0.5)
        ax.plot([-1, 1], [-1, 1], "k--", lw=1)
        ax.set_xlim(-1.05, 1.05); ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel(f"true {name}"); ax.set_ylabel(f"predicted {name}"); ax.grid(alpha=0.3)
        ax.set_title(f"{name} (n={int(ok.sum())})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_write(path, lambda p: fig.savefig(p, format="png"))
