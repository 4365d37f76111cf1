"""`emotune evaluate`: score a model on a labelled dataset, or (--detect) the whole predict pipeline on photos."""
from __future__ import annotations

import argparse
import json
import sys


def add_evaluate_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("--model", help="run folder, model card .json or .safetensors (default: the bundled model)")
    e.add_argument("--data", required=True, help="class-folder root, manifest CSV, fer2013.csv or FER+ split folder")
    e.add_argument("--data-format", default="auto", choices=["auto", "folder", "manifest", "fer2013csv", "ferplus", "affectnet", "afewva",
                                                            "affwild2", "ratings", "twitter_i", "oasis"], help="dataset format (default: auto)")
    e.add_argument("--target-scale", help="scale LO,HI of the data's target columns (default: the model card's for a manifest, "
                                          "else the format's)")
    e.add_argument("--tier", help="twitter_i: agreement tier agree3 (default), agree4 or agree5")
    e.add_argument("--split", help="manifest split value or FER2013 Usage (train/val/test)")
    e.add_argument("--ferplus-mode", default="majority", choices=["majority", "probability", "multi_target"], help="FER+ label mode")
    e.add_argument("--drop-labels", help="comma list of data labels to leave out (e.g. contempt for a basic7 model)")
    e.add_argument("--drop-unknown-labels", action="store_true", help="leave out every image whose label the model lacks")
    e.add_argument("--format", default="md", choices=["md", "json"], help="report printed on stdout (default: md)")
    e.add_argument("--out", help="folder for eval.json, eval.md, confusion.png and predictions.csv (one row per image)")
    e.add_argument("--detect", action="store_true", help="score the whole predict pipeline on photos: detect, align, "
                   "classify the largest face (photos without a face count as wrong end to end)")
    e.add_argument("--detector", default="yunet", help="--detect: face detector (default: yunet)")
    e.add_argument("--detector-model", help="--detect: model file for detectors that take one")
    e.add_argument("--margin", type=float, default=1.0, help="--detect: crop margin (default: 1.0)")
    e.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    e.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    e.add_argument("--max-samples", type=int, default=0, help="evaluate a stratified subset of this many images (0 = all)")
    e.add_argument("--on-bad", default="skip", choices=["skip", "fail"], help="skip bad images (reported) or fail")
    e.add_argument("--workers", type=int, default=0, help="data-loader workers (default: 0)")
    e.add_argument("--device", default="auto", help="cpu, cuda or auto")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_evaluate(args: argparse.Namespace) -> int:
    from .. import evaluate
    from ..io import check_writable_dir, remove_stale_temps

    if args.out:  # before the work: a whole evaluation must not be lost to an unwritable folder
        remove_stale_temps(check_writable_dir(args.out, "--out"))
    drop = [s for s in (args.drop_labels or "").split(",") if s]
    if args.detect:
        report = evaluate.evaluate_photos(args.model, args.data, args.data_format, args.split, drop, args.drop_unknown_labels,
                                          args.detector, args.detector_model, args.tta, args.device, not args.no_progress,
                                          args.max_samples, args.margin)
    else:
        from ..models.bundled import resolve_model

        report = evaluate.evaluate_dataset(resolve_model(args.model), args.data, args.data_format, args.split,
                                           args.ferplus_mode, drop, args.drop_unknown_labels, args.batch_size, args.tta,
                                           args.on_bad, args.workers, args.device, not args.no_progress, args.max_samples,
                                           args.target_scale, args.tier)
    print(json.dumps(report.to_dict(), indent=2) if args.format == "json" else report.to_markdown())
    if args.out:
        print("wrote " + ", ".join(map(str, report.write(args.out))), file=sys.stderr)
    for s in report.skipped:
        print(f"skipped {s['where']}: {s['problem']}", file=sys.stderr)
    return 0
