"""Benchmark 6 (FER2013 side): the multi-level fusion head vs the plain last-layer head, same recipe and budget.

    python benchmarks/fusion_fer2013.py                          # configs/default_model.yaml: the plain side reuses runs/default_model
    python benchmarks/fusion_fer2013.py --head fusion_weighted
    python benchmarks/fusion_fer2013.py --config configs/default_model.yaml --epochs 4 --runs runs/fusion_short   # a cheaper pair
    python benchmarks/fusion_fer2013.py --plain-model runs/default_model   # the plain side is a finished model (its card)

Both sides train on train/, select on val/ and are scored once on test/. The fusion side differs only in `head` (and
`fusion_levels`). With `--epochs` or `--runs`, both sides are trained afresh in that folder, so the budgets stay equal.
Runs resume after an interruption; a finished run is not trained again. The CK+ side of this comparison (cross-validated)
is `benchmarks/ckplus_protocols.py` (protocol `fusion` against `a`).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from common import comparison_markdown, finished_model_row, predictions_on_test, train_and_test, write_report

from emotune.evaluate import compare_predictions
from emotune.train.config import load_yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default_model.yaml", help="the recipe (FER2013 train/val in it)")
    ap.add_argument("--head", default="fusion_concat", choices=("fusion_concat", "fusion_weighted"))
    ap.add_argument("--levels", default="-3,-2", help="fusion levels (indices into the backbone's feature_info)")
    ap.add_argument("--epochs", type=int, default=0, help="override the recipe's epochs on both sides (0 = as in the config)")
    ap.add_argument("--runs", help="folder for both runs (default: the config's `out` for the plain head, `<out>_<head>` beside it)")
    ap.add_argument("--plain-model", help="use this finished model (folder with best.json, trained with the config as it is) "
                    "for the plain side instead of training it: its val figures come from its card")
    args = ap.parse_args()
    cfg = load_yaml(args.config)
    base = Path(cfg.get("out", "runs/fusion"))
    fresh = args.runs or args.epochs
    root = Path(args.runs) if args.runs else base.with_name(base.name + f"_{args.epochs}ep")
    plain_out = root / "linear" if fresh else base
    fusion_out = root / args.head if fresh else base.with_name(f"{base.name}_{args.head}")
    budget = {"epochs": args.epochs} if args.epochs else {}
    levels = [v.strip() for v in args.levels.split(",")]
    if args.plain_model and fresh:
        ap.error("--plain-model is the config's own full-budget run: it does not go with --epochs or --runs")
    test_dir = Path(cfg["val_data"]).parent / "test"
    rows = {"linear": finished_model_row(Path(args.plain_model), test_dir) if args.plain_model
            else train_and_test(args.config, plain_out, budget),
            args.head: train_and_test(args.config, fusion_out, {**budget, "head": args.head, "fusion_levels": levels})}
    gain = rows[args.head]["test"]["accuracy"] - rows["linear"]["test"]["accuracy"]
    pair = compare_predictions(*(predictions_on_test(Path(rows[k]["run"]), test_dir) for k in ("linear", args.head)))
    verdict = (f"{args.head} (levels {levels}) minus the plain head, FER2013 test accuracy: **{gain:+.4f}** "
               f"({'at least' if gain >= 0 else 'below'} the plain head). Image by image, {pair.sentence('plain', args.head)}")
    md = comparison_markdown(rows, "head", verdict)
    write_report(f"fusion_fer2013_{args.head}", {"config": args.config, "levels": levels, "runs": rows, "test_accuracy_gain": gain,
                                                  "paired_test": asdict(pair)}, "\n".join(md))


if __name__ == "__main__":
    main()
