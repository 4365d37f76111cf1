"""`emotune faces crop`: a photo dataset -> face crops framed as `emotune predict` frames faces (emotune.faces.crop)."""
from __future__ import annotations

import argparse
import sys


def add_faces_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="faces_command", required=True)
    c = sub.add_parser("crop", help="detect, align and crop a photo dataset into a training set of face crops",
                       description="Detect every photo's faces, take the largest, align and crop it exactly as `emotune "
                                   "predict` does with --model's framing and size; write the crops in the input's layout "
                                   "(class folders, manifest.csv, or labels.csv + votes.csv) plus crop_report.csv/json. "
                                   "A rerun skips the crops already written.")
    c.add_argument("--data", required=True, help="photos: class-folder root, manifest CSV, or a labels.csv folder (Taiwanese)")
    c.add_argument("--out", required=True, help="folder for the crops and the report (outside --data)")
    c.add_argument("--data-format", default="auto", choices=["auto", "folder", "manifest", "taiwanese"], help="input layout (default: auto)")
    c.add_argument("--model", default=None, help="model whose card gives the framing and size (default: the bundled model)")
    c.add_argument("--size", type=int, default=0, help="crop side in px (default: the card's source_size, else input_size)")
    c.add_argument("--detector", default="yunet", help="face detector (default: yunet, as predict)")
    c.add_argument("--detector-model", help="model file for detectors that take one")
    c.add_argument("--min-score", type=float, default=0.6, help="detector score threshold (default: 0.6, as predict)")
    c.add_argument("--det-max-side", type=int, default=640, help="photos are shrunk to this longest side for detection (default: 640)")
    c.add_argument("--margin", type=float, default=1.0, help="crop margin on top of the card's framing (default: 1.0, as predict)")
    c.add_argument("--no-align", dest="align", action="store_false", help="box crops instead of landmark alignment")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_faces(args: argparse.Namespace) -> int:
    from ..faces.crop import crop_dataset, settings_from_card

    s = settings_from_card(args.model, args.size, args.detector, args.detector_model, args.margin, args.align, args.min_score,
                           args.det_max_side)
    res = crop_dataset(args.data, args.out, s, args.data_format, show=not args.no_progress)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(res.counts.items()))
    print(f"wrote {sum(1 for r in res.rows if r['crop'])} crops ({s.size} px, {s.detector}) to {res.out}: {counts}; "
          f"see {res.out / 'crop_report.csv'}" + (f"; index {res.manifest}" if res.manifest else ""))
    for r in res.rows:
        if r["status"] in ("no_face", "unreadable"):
            print(f"{r['status']}: {r['source']}" + (f": {r['problem']}" if r["problem"] else ""), file=sys.stderr)
    return 0 if any(r["crop"] for r in res.rows) else 1
