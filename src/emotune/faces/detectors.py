"""Face detectors behind one interface: an RGB uint8 array in, a list of `Face` (box, score, 5 landmarks) out.

Why YuNet is the default: it is the fastest and most accurate detector that runs offline from a plain
`pip install` (OpenCV's `FaceDetectorYN` with its 230 kB MIT-licensed ONNX file bundled in emotune), and it gives
the five landmarks that alignment needs. Measured numbers are in docs/faces.md (`python benchmarks/detectors.py`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ConfigError


@dataclass
class Face:
    """One detected face in pixel coordinates of the image it was found in."""

    box: tuple[float, float, float, float]  # x, y, w, h
    score: float
    landmarks: np.ndarray | None = None  # 5x2: right eye, left eye (image left to right), nose, mouth corners

    @property
    def area(self) -> float:
        return max(self.box[2], 0.0) * max(self.box[3], 0.0)


@dataclass
class DetectorConfig:
    """A registered detector: how to build it, and what it needs."""

    name: str
    build: Callable[..., "Detector"]
    description: str
    landmarks: bool
    needs_file: bool = False
    license: str = ""
    extra: str = ""  # pip extra that installs its dependency, if not a core one


class Detector:
    """Base class: subclasses implement `_detect` on an RGB uint8 HxWx3 array."""

    name = "base"

    def __init__(self, score_threshold: float = 0.6, max_side: int = 640, min_face: int = 12):
        self.score_threshold = score_threshold
        self.max_side = max_side  # images are shrunk so the longest side is at most this before detection (speed)
        self.min_face = min_face

    def detect(self, rgb: np.ndarray, max_side: int | None = None) -> list[Face]:
        """Faces sorted left to right, boxes clipped to the image, tiny faces dropped.

        `max_side` overrides the detector's own shrink setting for this call (videos use a smaller one)."""
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        side = self.max_side if max_side is None else max_side
        scale = min(1.0, side / max(h, w)) if side else 1.0
        small = rgb if scale == 1.0 else _resize(rgb, scale)
        faces = []
        for f in self._detect(small):
            x, y, bw, bh = (v / scale for v in f.box)
            x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))
            if x1 - x0 < self.min_face or y1 - y0 < self.min_face or f.score < self.score_threshold:
                continue
            lm = None if f.landmarks is None else f.landmarks / scale
            faces.append(Face((x0, y0, x1 - x0, y1 - y0), float(f.score), lm))
        return sorted(faces, key=lambda f: f.box[0])

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        raise NotImplementedError


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def bundled_yunet() -> Path:
    return Path(str(resources.files("emotune") / "assets" / "face_detection_yunet.onnx"))


class YuNetDetector(Detector):
    """OpenCV YuNet; `model` defaults to the bundled ONNX file."""

    name = "yunet"

    def __init__(self, model: str | Path | None = None, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 max_side: int = 640, min_face: int = 12):
        import cv2

        super().__init__(score_threshold, max_side, min_face)
        path = Path(model) if model else bundled_yunet()
        if not path.is_file():
            raise ConfigError(f"{path}: YuNet model file not found")
        try:
            # the detector's own threshold is lower so `detect` applies one rule for every backend
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), min(score_threshold, 0.5), nms_threshold, 5000)
        except cv2.error as exc:
            raise ConfigError(f"{path}: OpenCV cannot load it as a YuNet model ({exc})") from None
        self._size: tuple[int, int] | None = None

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        import cv2

        h, w = rgb.shape[:2]
        if self._size != (w, h):
            self._net.setInputSize((w, h))
            self._size = (w, h)
        _, rows = self._net.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if rows is None:
            return []
        return [Face(tuple(map(float, r[:4])), float(r[14]), r[4:14].reshape(5, 2).astype(np.float32)) for r in rows]


class HaarDetector(Detector):
    """OpenCV's frontal Haar cascade (ships inside opencv-python 4.x): no landmarks, frontal faces only."""

    name = "haar"

    def __init__(self, model: str | Path | None = None, score_threshold: float = 0.0, max_side: int = 640,
                 min_face: int = 24, min_neighbors: int = 5):
        import cv2

        super().__init__(score_threshold, max_side, min_face)
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise ConfigError("this OpenCV build has no Haar cascades (cv2.CascadeClassifier / cv2.data); the haar detector "
                              "needs opencv-python-headless 4.x, which emotune pins, or opencv-contrib-python")
        path = str(model or Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ConfigError(f"{path}: not a Haar cascade OpenCV can load")
        self.min_neighbors = min_neighbors

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        import cv2

        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = self._cascade.detectMultiScale3(grey, 1.1, self.min_neighbors, minSize=(self.min_face, self.min_face),
                                                            outputRejectLevels=True)
        # level weights are unbounded; squash them to 0..1 so thresholds and tables read like the other detectors'
        return [Face(tuple(map(float, b)), float(1 / (1 + np.exp(-float(s) / 2))), None) for b, s in zip(boxes, np.ravel(weights))]


class MediaPipeDetector(Detector):
    """MediaPipe Tasks BlazeFace (`pip install mediapipe`, model file from the MediaPipe model zoo)."""

    name = "mediapipe"

    def __init__(self, model: str | Path | None = None, score_threshold: float = 0.5, max_side: int = 0, min_face: int = 12):
        super().__init__(score_threshold, max_side, min_face)
        if not model:
            raise ConfigError("the mediapipe detector needs --detector-model PATH to a face_detection_*.tflite file")
        if not Path(model).is_file():
            raise ConfigError(f"{model}: MediaPipe model file not found")
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError:
            raise ConfigError("the mediapipe detector needs `pip install mediapipe`") from None
        self._mp = mp
        opts = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(model)),
                                          min_detection_confidence=min(score_threshold, 0.5))
        self._det = vision.FaceDetector.create_from_options(opts)

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        res = self._det.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        faces = []
        for d in res.detections:
            b = d.bounding_box
            kp = d.keypoints
            lm = None
            if kp and len(kp) >= 4:  # right eye, left eye, nose tip, mouth centre: split the mouth into two corners
                eye_r, eye_l, nose, mouth = ([k.x * w, k.y * h] for k in kp[:4])
                half = (eye_l[0] - eye_r[0]) * 0.35
                lm = np.array([eye_r, eye_l, nose, [mouth[0] - half, mouth[1]], [mouth[0] + half, mouth[1]]], np.float32)
            faces.append(Face((float(b.origin_x), float(b.origin_y), float(b.width), float(b.height)),
                              float(d.categories[0].score), lm))
        return faces


class WholeImage(Detector):
    """No detection: the whole image is one 'face' (scene mode, or pre-cropped faces)."""

    name = "none"

    def __init__(self, **_: object):
        super().__init__(0.0, 0, 0)

    def detect(self, rgb: np.ndarray, max_side: int | None = None) -> list[Face]:
        h, w = rgb.shape[:2]
        return [Face((0.0, 0.0, float(w), float(h)), 1.0, None)]


_DETECTORS: dict[str, DetectorConfig] = {}


def register_detector(cfg: DetectorConfig) -> None:
    _DETECTORS[cfg.name] = cfg


for _cfg in (
    DetectorConfig("yunet", YuNetDetector, "OpenCV YuNet, bundled ONNX (default): fast, 5 landmarks", True, license="MIT"),
    DetectorConfig("haar", HaarDetector, "OpenCV frontal Haar cascade: no landmarks, frontal only", False, license="BSD-3-Clause"),
    DetectorConfig("mediapipe", MediaPipeDetector, "MediaPipe Tasks BlazeFace: needs mediapipe and a .tflite file", True,
                   needs_file=True, license="Apache-2.0"),
    DetectorConfig("none", WholeImage, "no detection: the whole image is the face (pre-cropped faces, scene mode)", False),
):
    register_detector(_cfg)

DEFAULT_DETECTOR = "yunet"


def list_detectors() -> list[str]:
    return list(_DETECTORS)


def get_detector_config(name: str) -> DetectorConfig:
    if name not in _DETECTORS:
        raise ConfigError(f"unknown detector {name!r}: choose one of {', '.join(_DETECTORS)}")
    return _DETECTORS[name]


def create_detector(name: str = DEFAULT_DETECTOR, model: str | Path | None = None, **kwargs) -> Detector:
    """Build a registered detector; `model` is a model file for those that take one."""
    cfg = get_detector_config(name)
    if name == "none":
        return cfg.build()
    return cfg.build(model=model, **kwargs)
