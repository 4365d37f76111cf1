"""Multi-level fusion vs the plain head on SCENES, with frozen ImageNet features (issue 15: the paper's claim, tested
where it was made, at a cost the 2-core CPU can pay).

For every image of Twitter I and OASIS, one forward pass of a frozen ImageNet backbone gives the pooled feature maps of
the fusion levels (emotune.models.fusion: `forward_intermediates`, average-pooled, layer-normalised) and the final
pre-logits features. "plain" = the final features alone (the linear head); "fusion" = all levels concatenated (the
`fusion_concat` head). The same folds, the same classifier and the same budget for both:
- Twitter I, agree3/agree4/agree5: 5-fold StratifiedGroupKFold (duplicate and near-duplicate groups kept in one fold),
  logistic regression on standardised features (C chosen by an inner grouped 3-fold CV on the training folds only);
- OASIS valence and arousal (1-7, held on [-1, 1]): 10-fold StratifiedGroupKFold on valence quartiles, grouped by theme
  stem, ridge regression (alpha chosen by inner grouped CV); CCC, Pearson r, RMSE per fold.
Paired comparison: per-fold differences (mean, paired t-test) and, for Twitter I, the exact McNemar test on the pooled
out-of-fold predictions. A frozen-feature probe answers "do low-level features add information?", not "does the fused
head fine-tune better" (fine-tuned CV: `emotune cv ... --head fusion_concat`, docs/scene.md).

    python benchmarks/scene_probe.py [--backbone mobilenetv2 --weights ../shared/weights/imagenet/mobilenet_v2-b0353104.pth]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, write_report  # noqa: E402

TIERS = ("agree3", "agree4", "agree5")


def features(samples, backbone: str, weights: str, size: int, levels, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(plain, fusion) feature matrices: final pre-logits features, and [layer-normed pooled levels..., final]."""
    import torch

    from emotune.data.dataset import load_pil
    from emotune.data.transforms import Preprocess
    from emotune.models import create_model, get_model_config
    from emotune.progress import progress

    cfg = get_model_config(backbone)
    net = create_model(backbone, 2, pretrained=weights, img_size=size,
                       head={"type": "fusion_concat", "levels": list(levels)}).eval()
    pre = Preprocess(size, tuple(cfg.mean), tuple(cfg.std), "rgb", 3, 0, "center_crop")
    plain, fused = [], []
    with torch.inference_mode():
        for i in progress(range(0, len(samples), batch), desc=f"{backbone} features"):
            x = torch.stack([pre(load_pil(s, "rgb")) for s in samples[i:i + batch]])
            final, inter = net.backbone.forward_intermediates(x, indices=net.levels, intermediates_only=False)
            pooled = [t.mean(dim=(2, 3)) for t in inter] + [net.backbone.forward_head(final, pre_logits=True)]
            normed = [torch.nn.functional.layer_norm(p, p.shape[1:]) for p in pooled]
            plain.append(normed[-1].numpy())
            fused.append(torch.cat(normed, dim=1).numpy())
    return np.concatenate(plain), np.concatenate(fused)


def _groups(samples) -> np.ndarray:
    return np.array([s.split_group or str(s.path) for s in samples])


def classify_cv(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds, seed: int) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold predictions and per-fold accuracy of a standardised logistic regression (C by inner grouped CV)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.empty_like(y)
    acc = []
    for tr, te in folds:
        model = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
                             {"logisticregression__C": [0.001, 0.01, 0.1, 1.0]}, cv=GroupKFold(3))
        model.fit(X[tr], y[tr], groups=groups[tr])
        pred[te] = model.predict(X[te])
        acc.append(float(np.mean(pred[te] == y[te])))
    return pred, acc


def regress_cv(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, folds) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Out-of-fold predictions and per-fold CCC / r / RMSE per target of a ridge regression (alpha by inner CV)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from emotune.evaluate.regression import STATISTICS

    ccc = STATISTICS["ccc"]

    pred = np.zeros_like(Y)
    per_fold = []
    for tr, te in folds:
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(0, 5, 11)))
        model.fit(X[tr], Y[tr])
        pred[te] = model.predict(X[te])
        per_fold.append({f"{k}_{n}": v for j, n in enumerate(("valence", "arousal"))
                         for k, v in (("ccc", float(ccc(Y[te, j], pred[te, j]))),
                                      ("r", float(np.corrcoef(Y[te, j], pred[te, j])[0, 1])),
                                      ("rmse", float(np.sqrt(np.mean((Y[te, j] - pred[te, j]) ** 2)))))})
    return pred, per_fold


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    from scipy.stats import ttest_rel

    d = np.asarray(b) - np.asarray(a)
    return {"mean_diff": float(d.mean()), "std_diff": float(d.std(ddof=1)), "p_ttest": float(ttest_rel(b, a).pvalue),
            "folds_better": int((d > 0).sum()), "folds_worse": int((d < 0).sum())}


def mcnemar(y: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> dict[str, float]:
    from scipy.stats import binomtest

    only_a, only_b = int(np.sum((pa == y) & (pb != y))), int(np.sum((pa != y) & (pb == y)))
    p = binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"right_only_plain": only_a, "right_only_fusion": only_b, "p_exact": float(p)}


def ms(v: list[float]) -> str:
    return f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="mobilenetv2")
    ap.add_argument("--weights", default=str(SHARED / "weights/imagenet/mobilenet_v2-b0353104.pth"))
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--levels", default="-3,-2", help="fusion levels (indices into feature_info), as --fusion-levels")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--name", default="scene_probe")
    args = ap.parse_args()
    from sklearn.model_selection import StratifiedGroupKFold

    from emotune.data.sources import load_samples
    from emotune.tables import render_table

    levels = [int(v) for v in args.levels.split(",")]
    result: dict = {"backbone": args.backbone, "weights": args.weights, "img_size": args.img_size, "levels": levels,
                    "seed": args.seed, "twitter_i": {}, "oasis": {}}
    md = [f"# Fusion vs plain head on scenes, frozen {args.backbone} ImageNet features ({args.img_size} px, centre crop)", "",
          "Same folds, same classifier, same budget for both; plain = final pre-logits features, fusion = "
          f"layer-normalised pooled levels {levels} + final (the `fusion_concat` head's input). Command and machine below.", ""]
    # ---- Twitter I: all agree3 images once; each tier is a subset
    tw = load_samples(SHARED / "data/twitter_i", tier="agree3")
    P, F = features(tw, args.backbone, args.weights, args.img_size, levels)
    by_file = {str(s.path): i for i, s in enumerate(tw)}
    rows = []
    for tier in TIERS:
        sub = load_samples(SHARED / "data/twitter_i", tier=tier)
        idx = np.array([by_file[str(s.path)] for s in sub])
        y = np.array([s.label == "positive" for s in sub], dtype=int)
        g = _groups(sub)
        folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=args.seed).split(idx, y, g))
        pa, acc_a = classify_cv(P[idx], y, g, folds, args.seed)
        pb, acc_b = classify_cv(F[idx], y, g, folds, args.seed)
        r = {"n": int(len(y)), "positive": int(y.sum()), "plain": acc_a, "fusion": acc_b,
             "paired": paired(acc_a, acc_b), "mcnemar": mcnemar(y, pa, pb)}
        result["twitter_i"][tier] = r
        rows.append([tier, r["n"], ms(acc_a), ms(acc_b), f"{r['paired']['mean_diff'] * 100:+.1f}",
                     f"{r['paired']['p_ttest']:.3f}", f"{r['mcnemar']['p_exact']:.3f}"])
        print(f"twitter_i {tier}: plain {ms(acc_a)} fusion {ms(acc_b)}", file=sys.stderr)
    md += ["## Twitter I, 5-fold accuracy (duplicate groups kept in one fold)", "",
           render_table(["tier", "images", "plain", "fusion", "fusion - plain (points)", "paired t p", "McNemar p"], rows), ""]
    # ---- OASIS valence/arousal
    oa = load_samples(SHARED / "data/oasis")
    P, F = features(oa, args.backbone, args.weights, args.img_size, levels)
    Y = np.array([[s.targets["valence"], s.targets["arousal"]] for s in oa], dtype=float)
    g = _groups(oa)
    bins = np.digitize(Y[:, 0], np.quantile(Y[:, 0], [0.25, 0.5, 0.75]))
    folds = list(StratifiedGroupKFold(10, shuffle=True, random_state=args.seed).split(Y, bins, g))
    _, fa = regress_cv(P, Y, g, folds)
    _, fb = regress_cv(F, Y, g, folds)
    rows = []
    for m in ("ccc_valence", "ccc_arousal", "r_valence", "r_arousal", "rmse_valence", "rmse_arousal"):
        a, b = [f[m] for f in fa], [f[m] for f in fb]
        p = paired(a, b)
        result["oasis"][m] = {"plain": a, "fusion": b, "paired": p}
        rows.append([m, ms(a), ms(b), f"{p['mean_diff']:+.4f}", f"{p['p_ttest']:.3f}"])
    print("oasis:", rows, file=sys.stderr)
    md += ["## OASIS, 10-fold grouped by theme stem (valence, arousal on [-1, 1])", "",
           render_table(["metric", "plain", "fusion", "fusion - plain", "paired t p"], rows), "",
           "mean ± std over folds; p: paired t-test over folds (Twitter I also exact McNemar on pooled out-of-fold predictions)."]
    print(write_report(args.name, result, "\n".join(md)))


if __name__ == "__main__":
    main()
