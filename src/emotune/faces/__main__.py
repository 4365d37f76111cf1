"""`python -m emotune.faces IMAGE...`: run one face detector and print one JSON line per image.

It needs only numpy, Pillow and OpenCV (no torch), so it also runs in a side environment that holds a detector
whose dependencies clash with emotune's own (MediaPipe pulls in opencv-contrib-python 5; see docs/faces.md):

    PYTHONPATH=src .venv-mp/bin/python -m emotune.faces --detector mediapipe --detector-model M.tflite photo.jpg
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..data.images import read_image
from ..errors import EmotuneError
from .detectors import create_detector, list_detectors


def detections(det, path: str) -> dict:
    """One image's faces as plain JSON types (box x, y, w, h; score; five landmarks or null)."""
    rgb = np.asarray(read_image(path, "rgb"))
    return {"file": path, "height": rgb.shape[0], "width": rgb.shape[1],
            "faces": [{"box": [round(v, 2) for v in f.box], "score": round(f.score, 4),
                       "landmarks": None if f.landmarks is None else np.asarray(f.landmarks, float).round(2).tolist()}
                      for f in det.detect(rgb)]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emotune.faces", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--detector", default="yunet", choices=list_detectors())
    ap.add_argument("--detector-model", help="model file for detectors that need one (mediapipe)")
    ap.add_argument("--score-threshold", type=float, default=None)
    args = ap.parse_args(argv)
    kw = {} if args.score_threshold is None else {"score_threshold": args.score_threshold}
    try:
        det = create_detector(args.detector, model=args.detector_model, **kw)
    except EmotuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = 0
    for path in args.images:
        try:
            print(json.dumps(detections(det, path)), flush=True)
            done += 1
        except EmotuneError as e:  # a bad image is reported and the batch goes on
            print(json.dumps({"file": path, "error": str(e)}), flush=True)
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
