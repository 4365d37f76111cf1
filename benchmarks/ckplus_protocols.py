"""Benchmarks 5 and 6 (CK+ side): transfer protocols compared on the same CK+ subject-grouped 10 folds.

    python benchmarks/ckplus_protocols.py --run          # runs (or resumes) every cross-validation, then reports
    python benchmarks/ckplus_protocols.py                # reports the runs that exist

Protocols (same backbone, input and CK+ budget: MobileNetV2, 64 px grey, 15 epochs over the CK+ training folds):
  a       ImageNet -> CK+                          configs/ckplus_cv.yaml
  b       ImageNet -> FER2013 -> CK+ (cascade)      the same, starting from the FER2013 model (runs/default_model)
  c       ImageNet -> FER2013 + CK+ in one stage    configs/ckplus_cv_merged.yaml
  fusion  (a) with the multi-level fusion head      --head fusion_concat
  b96     (b) at 96 px from the 96 px stage-2 FER2013 model (runs/default_model_96), --img-size 96

Ng et al. (2015) found (b) best on SFEW and (c) worse. Every protocol after (a) reuses (a)'s folds.csv, so the folds are
identical and per-fold differences are paired; the report gives each protocol's mean ± std over folds, the pooled
accuracy, and against (a) the mean paired difference with a Wilcoxon signed-rank p-value. Each fold's best checkpoint is
also re-scored on its test fold with horizontal-flip TTA (selection unchanged; cached in fold_<k>/test_tta.json).

Run folders are scratch: a protocol whose run folder is gone keeps its row from the previous results/ckplus_protocols.json
(marked as such), and without (a)'s folds.csv the others make the same folds from (a)'s own arguments (same seed, same
data, same splitter), so a new protocol can be added later and still be paired fold by fold with the earlier ones.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from common import write_report

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


FOLD_ARGS = ["--folds", "10", "--group-by", "subject", "--stratify"]
RESULTS = Path(__file__).resolve().parent / "results" / "ckplus_protocols.json"


def protocols(runs: Path, fer_model: str, fer_model_96: str = "runs/default_model_96") -> dict[str, dict]:
    folds = runs / "ck_cv_imagenet" / "folds.csv"
    same = ["--folds-file", str(folds)] if folds.is_file() else FOLD_ARGS
    return {
        "a": {"title": "(a) ImageNet -> CK+", "out": runs / "ck_cv_imagenet",
              "argv": ["--config", "configs/ckplus_cv.yaml", *FOLD_ARGS]},
        "b": {"title": "(b) ImageNet -> FER2013 -> CK+", "out": runs / "ck_cv_fer2013",
              "argv": ["--config", "configs/ckplus_cv.yaml", *same, "--pretrained", fer_model]},
        "c": {"title": "(c) ImageNet -> FER2013 + CK+ merged, one stage", "out": runs / "ck_cv_merged",
              "argv": ["--config", "configs/ckplus_cv_merged.yaml", *same]},
        "fusion": {"title": "(a) with the fusion head (fusion_concat)", "out": runs / "ck_cv_fusion",
                   "argv": ["--config", "configs/ckplus_cv.yaml", *same, "--head", "fusion_concat"]},
        "b96": {"title": "(b) at 96 px: ImageNet -> FER2013 (96 px default model) -> CK+", "out": runs / "ck_cv_fer2013_96",
                "argv": ["--config", "configs/ckplus_cv.yaml", *same, "--pretrained", fer_model_96, "--img-size", "96"]},
    }


def command(p: dict) -> list[str]:
    return ["emotune", "cv", *p["argv"], "--out", str(p["out"])]


def load(p: dict) -> dict | None:
    path = Path(p["out"]) / "cv.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run(p: dict) -> None:
    """Run or resume one cross-validation through the CLI (what a user would type)."""
    done = load(p)
    if done and done.get("complete") and not done.get("folds_failed"):
        return
    argv = command(p) + (["--resume"] if (Path(p["out"]) / "folds.csv").is_file() else [])
    exe = str(Path(sys.executable).with_name("emotune"))
    print("running:", " ".join(argv), flush=True)
    subprocess.run([exe, *argv[1:]], check=False)


def fold_scores(cv: dict, metric: str = "accuracy") -> dict[int, float]:
    return {f["fold"]: f["metrics"][metric] for f in cv["folds"] if f["status"] == "ok"}


def row_scores(r: dict) -> dict[int, float]:
    """A report row's per-fold accuracy (JSON turns the fold numbers into strings)."""
    return {int(k): v for k, v in (r.get("per_fold_accuracy") or {}).items()}


def paired(sa: dict[int, float], sb: dict[int, float]) -> dict:
    """b - a on the folds both finished: mean ± std of the differences and a Wilcoxon signed-rank p-value."""
    common = sorted(set(sa) & set(sb))
    diffs = [sb[k] - sa[k] for k in common]
    out = {"folds": len(common), "mean_diff": statistics.fmean(diffs) if diffs else None,
           "std_diff": statistics.stdev(diffs) if len(diffs) > 1 else None, "wins": sum(d > 0 for d in diffs),
           "ties": sum(d == 0 for d in diffs), "losses": sum(d < 0 for d in diffs), "p_wilcoxon": None}
    if len(common) >= 5 and any(diffs):
        from scipy.stats import wilcoxon

        out["p_wilcoxon"] = float(wilcoxon(diffs, zero_method="zsplit").pvalue)
    return out


def tta_cv(cv: dict) -> dict:
    """The same folds re-scored with horizontal-flip TTA: each fold's best checkpoint (chosen without TTA) on its
    test fold, kept in fold_<k>/test_tta.json. Model selection is untouched; only the test-time prediction changes."""
    from emotune.evaluate import compute_metrics, evaluate_dataset
    from emotune.io import atomic_write_json

    folds, confusion = [], None
    for f in cv["folds"]:
        if f["status"] != "ok":
            continue
        fdir = Path(f["run_dir"])
        cached = fdir / "test_tta.json"
        if cached.is_file():
            rep = json.loads(cached.read_text())
        else:
            rep = evaluate_dataset(fdir, fdir / "split.csv", "manifest", split="test", tta=True, progress=False).to_dict()
            atomic_write_json(cached, rep)
        folds.append({"fold": f["fold"], "status": "ok", "metrics": {m: rep[m] for m in METRICS}})
        c = rep["confusion"]
        confusion = c if confusion is None else [[a + b for a, b in zip(r1, r2)] for r1, r2 in zip(confusion, c)]
    out = {"folds": folds}
    if folds:
        out["mean"] = {m: statistics.fmean(f["metrics"][m] for f in folds) for m in METRICS}
        out["std"] = {m: statistics.stdev(f["metrics"][m] for f in folds) if len(folds) > 1 else 0.0 for m in METRICS}
        y_true = [i for i, r in enumerate(confusion) for j, n in enumerate(r) for _ in range(n)]
        y_pred = [j for i, r in enumerate(confusion) for j, n in enumerate(r) for _ in range(n)]
        out["pooled_accuracy"] = compute_metrics(y_true, y_pred, cv["labels"]).accuracy
    return out


def row(key: str, p: dict, cv: dict | None) -> dict:
    r = {"key": key, "title": p["title"], "command": " ".join(command(p)), "run": str(p["out"])}
    if cv is None:
        return {**r, "status": "not run"}
    tta = tta_cv(cv)
    return {**r, "status": "complete" if cv.get("complete") else "partial", "folds_ok": cv.get("folds_ok"), "k": cv["k"],
            "labels": cv["labels"], "mean": cv["mean"], "std": cv["std"], "pooled_accuracy": cv["pooled"].get("accuracy"),
            "per_fold_accuracy": fold_scores(cv),
            "tta": {k: v for k, v in tta.items() if k != "folds"} | {"per_fold_accuracy": fold_scores(tta)}}


def earlier_rows(path: Path) -> dict[str, dict]:
    """The rows of the previous report, by protocol key (none when there is no readable report)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        env = data.get("environment", {})
        return {r["key"]: {**r, "from_report": r.get("from_report") or env.get("date", "earlier")[:10]}
                for r in data["rows"] if r.get("mean")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def with_earlier_rows(rows: list[dict], earlier: dict[str, dict]) -> list[dict]:
    """A protocol that has not run here keeps its earlier row (same key, same protocol); render() marks it as such."""
    out = []
    for r in rows:
        old = earlier.get(r["key"])
        out.append(old if r["status"] == "not run" and old else r)
    return out


def render(rows: list[dict], comparisons: dict[str, dict]) -> str:
    def pm(r: dict, m: str) -> str:
        return f"{r['mean'][m]:.4f} ± {r['std'][m]:.4f}" if r.get("mean") else "-"

    md = ["# CK+ transfer protocols (subject-grouped 10-fold cross-validation, identical folds)", "",
          "| protocol | folds | accuracy | balanced acc. | macro-F1 | pooled acc. | accuracy, flip TTA | status |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        folds = f"{r.get('folds_ok', 0)}/{r.get('k', '-')}"
        pooled = f"{r['pooled_accuracy']:.4f}" if r.get("pooled_accuracy") is not None else "-"
        tta = pm(r["tta"], "accuracy") if r.get("tta", {}).get("mean") else "-"
        status = r["status"] + (f" (run of {r['from_report']}; its folder is not here)" if r.get("from_report") else "")
        md.append(f"| {r['title']} | {folds} | {pm(r, 'accuracy')} | {pm(r, 'balanced_accuracy')} | {pm(r, 'macro_f1')} | "
                  f"{pooled} | {tta} | {status} |")
    if comparisons:
        md += ["", "Paired against (a), fold by fold (accuracy):", "",
               "| protocol | folds | mean difference | wins / ties / losses | Wilcoxon p |", "|---|---|---|---|---|"]
        for key, c in comparisons.items():
            if c["mean_diff"] is None:
                continue
            sd = f" ± {c['std_diff']:.4f}" if c["std_diff"] is not None else ""
            p = f"{c['p_wilcoxon']:.3f}" if c["p_wilcoxon"] is not None else "-"
            md.append(f"| {key} | {c['folds']} | {c['mean_diff']:+.4f}{sd} | {c['wins']} / {c['ties']} / {c['losses']} | {p} |")
    md += ["", "Commands (run from the repository root; `python benchmarks/ckplus_protocols.py --run` runs them all):", ""]
    md += [f"- {r['title']}: `{r['command']}`" for r in rows]
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true", help="run or resume the cross-validations that are not complete")
    ap.add_argument("--runs", default="runs", help="folder of the cv runs")
    ap.add_argument("--fer-model", default="runs/default_model", help="the FER2013 model that (b) starts from")
    ap.add_argument("--fer-model-96", default="runs/default_model_96",
                    help="the 96 px FER2013 model b96 starts from: stage 2 of the default model, bundled when b96 was measured")
    ap.add_argument("--only", default="a,b,c,fusion,b96", help="comma list of protocols")
    args = ap.parse_args()
    ps = {k: v for k, v in protocols(Path(args.runs), args.fer_model, args.fer_model_96).items() if k in args.only.split(",")}
    if args.run:
        for p in ps.values():
            run(p)
    rows = with_earlier_rows([row(k, p, load(p)) for k, p in ps.items()], earlier_rows(RESULTS))
    by_key = {r["key"]: r for r in rows}
    base = row_scores(by_key.get("a", {}))
    comparisons = {k: paired(base, row_scores(r)) for k, r in by_key.items() if k != "a" and base and row_scores(r)}
    result = {"rows": rows, "paired_vs_a": comparisons}
    print(write_report("ckplus_protocols", result, render(rows, comparisons)))


if __name__ == "__main__":
    main()
