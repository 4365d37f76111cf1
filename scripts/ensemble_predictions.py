"""Score a probability ensemble of models from their prediction tables, against the first model alone.

    emotune evaluate --model runs/default_model_96_s3 --data ../shared/data/fer2013/val --out runs/val_preds/s3
    emotune evaluate --model runs/default_model_112 --data ../shared/data/fer2013/val --out runs/val_preds/112
    python scripts/ensemble_predictions.py runs/val_preds/s3/predictions.csv runs/val_preds/112/predictions.csv

Every model must have been scored on the same images (same data path). Use it on `val/` to decide whether an
ensemble is worth its cost; like any model choice, never decide on `test/`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from emotune.evaluate import average_predictions, class_columns, compare_predictions, compute_metrics
from emotune.io import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tables", nargs="+", help="predictions.csv files written by emotune evaluate --out")
    ap.add_argument("--weights", help="comma list of weights, one per table (default: uniform)")
    ap.add_argument("--out", help="write the ensemble's predictions.csv and summary.json to this folder")
    args = ap.parse_args(argv)
    if len(args.tables) < 2:
        ap.error("give two or more prediction tables")
    tables = []
    for path in args.tables:
        try:
            tables.append(pd.read_csv(path))
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            ap.error(f"{path}: cannot read the prediction table ({e})")
    try:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
        ens = average_predictions(tables, weights)
    except (ValueError, KeyError) as e:
        ap.error(str(e))
    labels = class_columns(ens)
    m = compute_metrics([labels.index(v) for v in ens["label"]], [labels.index(v) for v in ens["pred"]], labels)
    vs_first = compare_predictions(tables[0], ens)
    summary = {"tables": args.tables, "weights": weights, **m.summary(), "vs_first": vs_first.sentence("first", "ensemble")}
    for path, t in zip(args.tables, tables):
        print(f"{(t['pred'] == t['label']).mean():.4f}  {path}")
    print(f"{m.accuracy:.4f}  ensemble (balanced accuracy {m.balanced_accuracy:.4f}, macro-F1 {m.macro_f1:.4f})")
    print(summary["vs_first"])
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "predictions.csv", ens.to_csv(index=False))
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
