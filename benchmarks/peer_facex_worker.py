"""The peer tool `facex` (PyPI facex 1.1.0: a TFLite expression classifier on 200x200 input behind OpenCV's Haar
cascade), answering JSON commands for benchmarks/posed_accuracy.py, in the peer venv (benchmarks/setup_peer_env.sh).
Does not import emotune. One JSON command per stdin line, one '@@ {json}' answer per stdout line (as peer_fer_worker.py):

  crops   {"op": "crops", "paths": [...]}: each image is one face already cropped: grey, then facex's own
          `input_resize` (skimage resize to 200x200x3, 0..1) and its TFLite model (`EmotionClassifier.detect_emotion`).
  photos  {"op": "photos", "paths": [...]}: `EmotionClassifier.predict(BGR image)`, i.e. facex end to end (its Haar
          cascade at scale 1.1, 4 neighbours, the grey box cut, the classifier); per image the number of faces, every
          box, and the largest box's (w*h) probabilities.
Probabilities come back unrounded, in `labels` order (facex's category names: anger ... surprised).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_protocol import serve  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")


class FacexPeer:
    def __init__(self, threads: int):
        import importlib.metadata as md
        import pathlib

        import cv2
        import tensorflow as tf

        if threads:
            cv2.setNumThreads(threads)
        import facex
        from facex.core import EmotionClassifier

        model = os.path.join(pathlib.Path(facex.__file__).parent, "assets", "model_optimized.tflite")
        self.cv2 = cv2
        self.clf = EmotionClassifier(model)  # facex's own worker: interpreter, categories, Haar cascade from the wheel
        if threads:  # rebuild the interpreter with the thread count (facex's create_interpreter takes none)
            self.clf.model = tf.lite.Interpreter(model_path=model, num_threads=threads)
            self.clf.model.allocate_tensors()
            self.clf.input_details, self.clf.output_details = self.clf.model.get_input_details(), self.clf.model.get_output_details()
        self.info = {"facex": md.version("facex"), "tensorflow": tf.__version__, "opencv": cv2.__version__,
                     "python": sys.version.split()[0], "threads": threads, "labels": list(self.clf.category),
                     "classifier_input": [int(v) for v in self.clf.input_details[0]["shape"][1:]],
                     "detector": "OpenCV Haar (facex's bundled haarcascade_frontalface_default.xml, 1.1, 4)"}

    def _probs(self, gray_face) -> list[float]:
        out = self.clf.detect_emotion(gray_face)  # {category: probability}
        return [float(out[c]) for c in self.clf.category]

    def crops(self, paths: list[str]) -> dict:
        out = []
        for p in paths:
            img = self.cv2.imread(p)
            if img is None:
                raise ValueError(f"{p}: OpenCV cannot read it")
            out.append(self._probs(self.cv2.cvtColor(img, self.cv2.COLOR_BGR2GRAY)))
        return {"labels": list(self.clf.category), "probs": out}

    def photos(self, paths: list[str]) -> dict:
        from facex.utils import crop_center

        results = []
        for p in paths:
            img = self.cv2.imread(p)
            if img is None:
                raise ValueError(f"{p}: OpenCV cannot read it")
            faces, gray = self.clf.detect_faces(img)
            boxes = [[int(v) for v in f] for f in faces]
            rec = {"faces": len(boxes), "boxes": boxes, "box": None, "probs": None}
            if boxes:
                x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
                rec["box"] = [x, y, w, h]
                rec["probs"] = self._probs(crop_center(gray, x, y, w, h))
            results.append(rec)
        return {"labels": list(self.clf.category), "results": results, "mismatches": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--serve", action="store_true", help="answer JSON commands from stdin (the only mode)")
    args = ap.parse_args()
    peer = FacexPeer(args.threads)
    ops = {"info": lambda: peer.info, "crops": peer.crops, "photos": peer.photos}
    serve(ops, peer.info)


if __name__ == "__main__":
    main()
