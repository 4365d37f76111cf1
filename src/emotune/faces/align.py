"""Face crops that look like the training data: similarity alignment from 5 landmarks, or a square box crop.

How a face is framed is part of the model: a model card's `framing` (a `Framing`) says where the five landmarks
sit in the crop and how much a box crop widens the detector's box, so a model trained on other crops is fed its
own framing. The default, `FER2013_FRAMING`, holds the positions of FER2013's own faces (median YuNet landmarks
over 780 training images, mirrored to be symmetric), so an aligned crop from any photo looks like FER2013.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .detectors import Face

# right eye, left eye (image left to right), nose tip, mouth corners; unit square, FER2013 framing
FER_POINTS = ((0.31, 0.378), (0.69, 0.378), (0.50, 0.594), (0.35, 0.756), (0.65, 0.756))
FER_TEMPLATE = np.array(FER_POINTS, np.float32)
# a FER2013 crop is about 1.04x the height of YuNet's box around the same face
BOX_SCALE = 1.04
# named landmark templates a card may give without its points
TEMPLATES: dict[str, tuple[tuple[float, float], ...]] = {"fer2013": FER_POINTS}


@dataclass(frozen=True)
class Framing:
    """Where a face sits in a model's input crop: `points` (5 landmarks, unit square) for aligned crops,
    `box_scale` (crop side / longest side of the detector's box) for box crops, a `margin` (> 1 zooms out; the
    Recognizer's margin multiplies it) and whether to `align` at all when landmarks are known."""

    template: str = "fer2013"
    points: tuple[tuple[float, float], ...] = FER_POINTS
    box_scale: float = BOX_SCALE
    margin: float = 1.0
    align: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Framing":
        """A framing from a card's JSON object; `points` may be left out for a named template. ValueError if bad."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ValueError(f"'framing' must be an object, got {d!r}")
        unknown = sorted(set(d) - {"template", "points", "box_scale", "margin", "align"})
        if unknown:
            raise ValueError(f"'framing' has unknown keys {unknown}")
        template = d.get("template", "fer2013")
        if not isinstance(template, str) or not template:
            raise ValueError(f"framing 'template' must be a name, got {template!r}")
        points = d.get("points", TEMPLATES.get(template))
        if points is None:
            raise ValueError(f"framing template {template!r} is not one of {sorted(TEMPLATES)}: give its 'points'")
        ok = isinstance(points, (list, tuple)) and len(points) == 5 and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_num(v) and 0 <= v <= 1 for v in p) for p in points)
        if not ok:
            raise ValueError(f"framing 'points' must be 5 [x, y] pairs in the unit square, got {points!r}")
        box_scale, margin, align = d.get("box_scale", BOX_SCALE), d.get("margin", 1.0), d.get("align", True)
        for key, v in (("box_scale", box_scale), ("margin", margin)):
            if not (_is_num(v) and 0.1 <= v <= 10):
                raise ValueError(f"framing {key!r} must be a number in 0.1..10, got {v!r}")
        if not isinstance(align, bool):
            raise ValueError(f"framing 'align' must be true or false, got {align!r}")
        return cls(template, tuple((float(x), float(y)) for x, y in points), float(box_scale), float(margin), align)

    def to_dict(self) -> dict[str, Any]:
        return {"template": self.template, "points": [list(p) for p in self.points], "box_scale": self.box_scale,
                "margin": self.margin, "align": self.align}

    @property
    def template_array(self) -> np.ndarray:
        return np.array(self.points, np.float32)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


FER2013_FRAMING = Framing()


def alignment_matrix(landmarks: np.ndarray, size: int, margin: float = 1.0, template: np.ndarray = FER_TEMPLATE) -> np.ndarray:
    """2x3 similarity transform taking the landmarks onto the template in a `size` square (margin > 1 zooms out)."""
    import cv2

    dst = (0.5 + (np.asarray(template, np.float32) - 0.5) / margin) * size
    m, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), dst, method=cv2.LMEDS)
    if m is None or not np.all(np.isfinite(m)):
        raise ValueError("degenerate landmarks")
    return m


def box_matrix(box: tuple[float, float, float, float], size: int, margin: float = 1.0, box_scale: float = BOX_SCALE) -> np.ndarray:
    """2x3 transform taking a square around the box centre (side = box_scale * longest side * margin) to `size`."""
    x, y, w, h = box
    side = max(w, h) * box_scale * margin
    s = size / max(side, 1e-6)
    cx, cy = x + w / 2, y + h / 2
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float32)


def crop_face(rgb: np.ndarray, face: Face, size: int, margin: float = 1.0, align: bool = True,
              framing: Framing | dict[str, Any] | None = None) -> np.ndarray:
    """An RGB uint8 `size` x `size` crop in the model's `framing` (default FER2013's); aligned when the face has
    landmarks and both `align` and the framing allow it. `margin` multiplies the framing's own margin.

    Large faces are warped at an integer multiple of `size` and then area-averaged down, so a 400-pixel face does
    not alias into a 64-pixel crop.
    """
    import cv2

    fr = framing if isinstance(framing, Framing) else Framing.from_dict(framing)
    margin = margin * fr.margin
    m = None
    if align and fr.align and face.landmarks is not None:
        try:
            m = alignment_matrix(face.landmarks, size, margin, fr.template_array)
        except ValueError:
            m = None
    if m is None:
        m = box_matrix(face.box, size, margin, fr.box_scale)
    zoom = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # output pixels per input pixel
    k = int(min(4, max(1, np.floor(1 / max(zoom, 1e-6)))))
    if k > 1:
        # output pixel q averages big pixels k*q .. k*q+k-1, whose centre is k*q + (k-1)/2: shift so the mean lands on q
        m = m * np.float32(k)
        m[:, 2] += (k - 1) / 2
    big = cv2.warpAffine(rgb, m, (size * k, size * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return big if k == 1 else cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
