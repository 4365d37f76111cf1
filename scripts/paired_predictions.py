"""Compare two models scored on the same images: accuracy difference with a bootstrap interval and exact McNemar test.

    emotune evaluate --model default --data ../shared/data/fer2013/val --out runs/val_preds/default
    emotune evaluate --model basic8 --data ../shared/data/fer2013/val --out runs/val_preds/basic8
    python scripts/paired_predictions.py runs/val_preds/default/predictions.csv runs/val_preds/basic8/predictions.csv

The tables are `emotune evaluate --out` predictions.csv files; rows are matched by file. Decide on `val/`, never on `test/`.
"""
from __future__ import annotations

import argparse

import pandas as pd

from emotune.evaluate import compare_predictions


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", help="predictions.csv of the reference model")
    ap.add_argument("second", help="predictions.csv of the model compared with it")
    args = ap.parse_args(argv)
    tables = []
    for path in (args.first, args.second):
        try:
            tables.append(pd.read_csv(path))
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            ap.error(f"{path}: cannot read the prediction table ({e})")
    try:
        print(compare_predictions(*tables).sentence("first", "second"))
    except (ValueError, KeyError) as e:
        ap.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
