"""Benchmark 7: cross-dataset evaluation, a train-set x test-set table over FER2013, FER+ and CK+.

    python benchmarks/cross_dataset.py        # about 3 min on 2 CPU cores once the three models exist

Models (rows):
  FER2013  runs/default_model: configs/default_model.yaml (the bundled default model's run)
  FER+     runs/ferplus_from_fer2013: configs/ferplus_from_fer2013.yaml (the FER2013 model fine-tuned on FER+ majority labels)
  CK+      runs/ck_cv_imagenet/final: `emotune cv --config configs/ckplus_cv.yaml ... --final` (all of CK+)
Test sets (columns): FER2013 test/ (PrivateTest), FER+ FER2013Test/ (majority of ten votes; unknown and not-a-face
dropped) and all of CK+. CK+ has no test split, so the CK+ model's own cell is its subject-grouped 10-fold
cross-validation (pooled over folds, from runs/ck_cv_imagenet/cv.json), never the final model on its training images.

Each model is scored on the test images whose label it has (`emotune evaluate --drop-unknown-labels`): CK+ contempt is
dropped for the FER2013 model, neutral for the CK+ model. Predictions range over all of the model's labels, so a FER2013
model that calls a CK+ face neutral is wrong, as it would be for a user. Every cell's `emotune evaluate` report is kept
in <model>/cross/<test set>/eval.json and is not recomputed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import SHARED, write_report

from emotune.evaluate import evaluate_dataset
from emotune.io import atomic_write_json

TESTS = {"FER2013": SHARED / "data" / "fer2013" / "test", "FER+": SHARED / "data" / "ferplus" / "FER2013Test",
         "CK+": SHARED / "data" / "ckplus48"}
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def score(model: Path, test: str, data: Path) -> dict:
    """`emotune evaluate` of one cell, cached beside the model and redone when the weights change."""
    from emotune.io import sha256_file
    from emotune.models import read_card

    card, card_path = read_card(model)
    sha = card.sha256 or sha256_file(card_path.parent / card.weights_file)
    cached = model / "cross" / test.replace("+", "plus") / "eval.json"
    if cached.is_file():
        rep = json.loads(cached.read_text())
        if rep.get("weights_sha256") == sha:
            return rep
    rep = {**evaluate_dataset(model, data, drop_unknown_labels=True, progress=False).to_dict(), "weights_sha256": sha}
    atomic_write_json(cached, rep)
    return rep


def finished(model: Path) -> str | None:
    """Why a model cannot be scored yet (None when its run finished)."""
    if not (model / "best.json").is_file():
        return f"no model in {model}"
    if not (model / "summary.json").is_file():
        return f"{model} is still training (no summary.json)"
    return None


def cv_cell(cv_json: Path) -> dict | None:
    """The pooled subject-grouped CV score: the honest in-dataset figure for a set without a test split."""
    if not cv_json.is_file():
        return None
    cv = json.loads(cv_json.read_text())
    if not cv.get("folds_ok"):
        return None
    done = "" if cv.get("complete") and cv["folds_ok"] == cv["k"] else f", PARTIAL: {cv['folds_ok']} of {cv['k']} folds"
    return {**{m: cv["pooled"][m] for m in METRICS}, "n": sum(f["n_test"] for f in cv["folds"] if f["status"] == "ok"),
            "source": f"{cv['k']}-fold CV by subject, pooled over folds{done} ({cv_json})", "dropped_labels": {}}


FERPLUS_NAMES = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad", "anger": "angry",
                 "disgust": "disgust", "fear": "fear", "contempt": "contempt", "unknown": "unknown", "NF": "not a face"}


def label_agreement(match_csv: Path) -> dict:
    """How FER+'s plurality vote relabels each FER2013 class (same images, from the FER+ match table)."""
    import pandas as pd

    d = pd.read_csv(match_csv)
    cols = [c for c in d.columns if c.startswith("votes_")]
    plural = [FERPLUS_NAMES[cols[i][6:]] for i in d[cols].to_numpy().argmax(1)]
    table = pd.crosstab(d["fer2013_label"], pd.Series(plural, name="ferplus", index=d.index), normalize="index")
    return {"agreement": float((d["fer2013_label"].to_numpy() == pd.Series(plural).to_numpy()).mean()), "n": len(d),
            "rows": {k: {c: round(float(v), 3) for c, v in row.items()} for k, row in table.iterrows()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer2013", default="runs/default_model")
    ap.add_argument("--ferplus", default="runs/ferplus_from_fer2013")
    ap.add_argument("--ckplus", default="runs/ck_cv_imagenet/final")
    ap.add_argument("--ckplus-cv", default="runs/ck_cv_imagenet/cv.json")
    args = ap.parse_args()
    models = {"FER2013": Path(args.fer2013), "FER+": Path(args.ferplus), "CK+": Path(args.ckplus)}
    cells: dict[str, dict[str, dict]] = {}
    for train_set, model in models.items():
        why = finished(model)
        if why:
            print(f"skip {train_set}: {why}")
            continue
        cells[train_set] = {}
        for test, data in TESTS.items():
            if train_set == "CK+" and test == "CK+":
                cell = cv_cell(Path(args.ckplus_cv))
                if cell is None:
                    print(f"skip {train_set} -> {test}: no finished fold in {args.ckplus_cv}")
                    continue
                cells[train_set][test] = cell
            else:
                r = score(model, test, data)
                cells[train_set][test] = {**{m: r[m] for m in METRICS}, "n": r["n"], "dropped_labels": r["dropped_labels"],
                                          "per_class_f1": {c["label"]: c["f1"] for c in r["per_class"] if c["support"]}}
            print(f"{train_set} -> {test}: {cells[train_set][test]['accuracy']:.4f}", flush=True)

    def table(metric: str) -> list[str]:
        lines = [f"| trained on \\ tested on | " + " | ".join(TESTS) + " |", "|---" * (len(TESTS) + 1) + "|"]
        for train_set, row in cells.items():
            vals = [f"{row[t][metric]:.3f}" + (" (cv)" if "source" in row[t] else "") if t in row else "-" for t in TESTS]
            lines.append(f"| {train_set} (`{models[train_set]}`) | " + " | ".join(vals) + " |")
        return lines

    md = ["# Cross-dataset evaluation", "", "Accuracy:", "", *table("accuracy"), "", "Balanced accuracy:", "",
          *table("balanced_accuracy"), "", "Macro-F1:", "", *table("macro_f1"), "",
          "Images scored per cell (dropped: test labels the model lacks):", ""]
    md += [f"- {tr} -> {te}: n={c['n']}" + (f", dropped {c['dropped_labels']}" if c["dropped_labels"] else "")
           + (f"; {c['source']}" if "source" in c else "") for tr, row in cells.items() for te, c in row.items()]
    match = SHARED / "data" / "ferplus" / "ferplus_to_fer2013_match.csv"
    agree = label_agreement(match) if match.is_file() else None
    if agree:
        cols = ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt", "unknown", "not a face"]
        md += ["", f"FER2013 label vs FER+ plurality vote on the same {agree['n']} images (share of each FER2013 class; "
               f"they agree on {agree['agreement']:.1%}):", "", "| FER2013 \\ FER+ | " + " | ".join(cols) + " |",
               "|---" * (len(cols) + 1) + "|"]
        md += [f"| {k} | " + " | ".join(f"{row.get(c, 0):.2f}" for c in cols) + " |" for k, row in agree["rows"].items()]
    print(write_report("cross_dataset", {"models": {k: str(v) for k, v in models.items()}, "tests": {k: str(v) for k, v in TESTS.items()},
                                         "cells": cells, "fer2013_vs_ferplus_labels": agree}, "\n".join(md)))


if __name__ == "__main__":
    main()
