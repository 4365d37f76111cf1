"""Cartoon faces whose mouth shape sets the label, and flat "scenes" whose brightness sets valence: tiny, license-free
datasets for demos and tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

MOUTHS = {"happy": 1.0, "sad": -1.0, "neutral": 0.0, "surprise": None}


def draw_face(label: str, size: int = 48, rng: np.random.Generator | None = None) -> Image.Image:
    """A grey face with eyes and a mouth: curved up (happy), down (sad), flat (neutral) or open (surprise)."""
    rng = rng or np.random.default_rng()
    bg = int(rng.integers(0, 80))
    img = Image.new("L", (size, size), bg)
    d = ImageDraw.Draw(img)
    j = lambda s: float(rng.uniform(-s, s)) * size  # noqa: E731
    cx, cy, r = size / 2 + j(0.04), size / 2 + j(0.04), size * (0.40 + j(0.03) / size)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=int(rng.integers(150, 230)))
    for ex in (-0.16, 0.16):
        x, y = cx + ex * size, cy - 0.1 * size
        d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=20)
    mw, my = 0.18 * size, cy + 0.15 * size
    curve = MOUTHS[label]
    if curve is None:
        d.ellipse([cx - 4, my - 5, cx + 4, my + 5], fill=20)
    elif curve == 0:
        d.line([cx - mw, my, cx + mw, my], fill=20, width=2)
    else:
        box = [cx - mw, my - mw * 0.6, cx + mw, my + mw * 0.6]
        d.arc(box, 20, 160, fill=20, width=2) if curve > 0 else d.arc([box[0], box[1] + mw * 0.6, box[2], box[3] + mw * 0.6], 200, 340, fill=20, width=2)
    arr = np.asarray(img).astype(np.int16) + rng.normal(0, 6, (size, size)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_synthetic_dataset(root: str | Path, per_class: int = 20, labels=("happy", "sad", "neutral", "surprise"),
                           size: int = 48, seed: int = 0, subjects: int = 0) -> Path:
    """Write `root/<label>/*.png`; with `subjects`, names carry a CK+-style `S001_` subject prefix."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            prefix = f"S{(i % subjects) + 1:03d}_" if subjects else ""
            draw_face(label, size, rng).save(root / label / f"{prefix}{label}_{i:04d}.png")
    return root


def make_synthetic_scenes(root: str | Path, n: int = 48, seed: int = 0, scale: tuple[float, float] = (1, 7)) -> Path:
    """Photos whose brightness is valence and whose stripe (left: positive, right: negative) is the sentiment class;
    returns a manifest (path, label, valence_mean, arousal_mean = -valence / 2, group of two) on the rating `scale`."""
    import csv

    from .targets import from_unit

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        val = rng.uniform(-1, 1)
        label = "positive" if i % 2 else "negative"
        img = np.full((40, 56, 3), int(127 + 110 * val), np.uint8)
        img[:, :12 if label == "positive" else 0] = 0
        if label == "negative":
            img[:, -12:] = 255
        img = np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"img{i:03d}.png")
        rows.append({"path": f"img{i:03d}.png", "label": label, "valence_mean": round(from_unit(val, scale), 4),
                     "arousal_mean": round(from_unit(-val * 0.5, scale), 4), "group": f"g{i // 2}"})
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"
