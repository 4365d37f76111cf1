"""Face crops that look like the training data: similarity alignment from 5 landmarks, or a square box crop.

The canonical landmark positions are those of FER2013's own faces (median YuNet landmarks over 780 training
images, mirrored to be symmetric), so an aligned crop from any photo has the framing the model learnt from.
"""
from __future__ import annotations

import numpy as np

from .detectors import Face

# right eye, left eye (image left to right), nose tip, mouth corners; unit square, FER2013 framing
FER_TEMPLATE = np.array([[0.31, 0.378], [0.69, 0.378], [0.50, 0.594], [0.35, 0.756], [0.65, 0.756]], np.float32)
# a FER2013 crop is about 1.04x the height of YuNet's box around the same face
BOX_SCALE = 1.04


def alignment_matrix(landmarks: np.ndarray, size: int, margin: float = 1.0) -> np.ndarray:
    """2x3 similarity transform taking the landmarks onto the template in a `size` square (margin > 1 zooms out)."""
    import cv2

    dst = (0.5 + (FER_TEMPLATE - 0.5) / margin) * size
    m, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), dst, method=cv2.LMEDS)
    if m is None or not np.all(np.isfinite(m)):
        raise ValueError("degenerate landmarks")
    return m


def box_matrix(box: tuple[float, float, float, float], size: int, margin: float = 1.0) -> np.ndarray:
    """2x3 transform taking a square around the box centre (side = BOX_SCALE * longest side * margin) to `size`."""
    x, y, w, h = box
    side = max(w, h) * BOX_SCALE * margin
    s = size / max(side, 1e-6)
    cx, cy = x + w / 2, y + h / 2
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float32)


def crop_face(rgb: np.ndarray, face: Face, size: int, margin: float = 1.0, align: bool = True) -> np.ndarray:
    """An RGB uint8 `size` x `size` crop; aligned when the face has landmarks and `align` is set.

    Large faces are warped at an integer multiple of `size` and then area-averaged down, so a 400-pixel face does
    not alias into a 64-pixel crop.
    """
    import cv2

    m = None
    if align and face.landmarks is not None:
        try:
            m = alignment_matrix(face.landmarks, size, margin)
        except ValueError:
            m = None
    if m is None:
        m = box_matrix(face.box, size, margin)
    zoom = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # output pixels per input pixel
    k = int(min(4, max(1, np.floor(1 / max(zoom, 1e-6)))))
    if k > 1:
        # output pixel q averages big pixels k*q .. k*q+k-1, whose centre is k*q + (k-1)/2: shift so the mean lands on q
        m = m * np.float32(k)
        m[:, 2] += (k - 1) / 2
    big = cv2.warpAffine(rgb, m, (size * k, size * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return big if k == 1 else cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
