"""Synthetic face videos in the real annotation formats, with known temporal structure (tests and benchmarks).

Each video follows a slowly varying valence v_t (a smoothed random walk on [-1, 1]). Every frame shows a cartoon
face (emotune.data.synthetic.draw_face) whose mouth is drawn from a NOISY reading of v_t: happy when v_t + e_t > 1/3,
sad below -1/3, neutral between, e_t ~ N(0, noise). One frame says little about v_t; the last few frames together
say much more, which only a temporal model can use. Arousal is the valence of `lag` frames earlier (a target that
depends on the past).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.synthetic import draw_face


def latent(n: int, rng: np.random.Generator, smooth: int = 15) -> np.ndarray:
    steps = rng.normal(0, 1, n + smooth)
    walk = np.convolve(np.cumsum(steps) * 0.12, np.ones(smooth) / smooth, mode="valid")[:n]
    walk = walk - walk.mean() + rng.uniform(-0.4, 0.4)
    return np.clip(walk, -1, 1)


def face_label(v: float, noise: float, rng: np.random.Generator) -> str:
    r = v + rng.normal(0, noise)
    return "happy" if r > 1 / 3 else "sad" if r < -1 / 3 else "neutral"


def make_video(n: int, rng: np.random.Generator, noise: float = 0.5, lag: int = 4, size: int = 48):
    v = latent(n + lag, rng)
    val, aro = v[lag:], v[:n]
    frames = [draw_face(face_label(x, noise, rng), size, rng).convert("RGB") for x in val]
    labels = ["happy" if x > 1 / 3 else "sad" if x < -1 / 3 else "neutral" for x in val]
    return frames, val, aro, labels


def make_affwild2(root: str | Path, videos: int = 6, frames: int = 24, seed: int = 0, noise: float = 0.5, size: int = 48,
                  subjects: int = 0) -> Path:
    """`root/annotations/<video>.txt` (valence,arousal per line) + `root/cropped_aligned/<video>/00001.jpg`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        name = f"{i + 1:03d}" + (f"-s{i % subjects}" if subjects else "")
        imgs, val, aro, _ = make_video(frames, rng, noise, size=size)
        d = root / "cropped_aligned" / name
        d.mkdir(parents=True, exist_ok=True)
        for k, im in enumerate(imgs):
            im.save(d / f"{k + 1:05d}.jpg", quality=95)
        lines = ["valence,arousal"] + [f"{a:.4f},{b:.4f}" for a, b in zip(val, aro)]
        (root / "annotations" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root / "annotations"


def make_afewva(root: str | Path, videos: int = 4, frames: int = 16, seed: int = 0, noise: float = 0.5, size: int = 48) -> Path:
    """AFEW-VA: `root/<clip>/<clip>.json` (values on -10..10, landmarks) + `root/<clip>/00000.png`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(videos):
        clip = f"{i + 1:03d}"
        d = root / clip
        d.mkdir(parents=True, exist_ok=True)
        imgs, val, aro, _ = make_video(frames, rng, noise, size=size)
        ann = {}
        for k, im in enumerate(imgs):
            im.save(d / f"{k:05d}.png")
            lm = [[4.0, 4.0], [size - 4.0, 4.0], [size / 2, size - 4.0]]
            ann[f"{k:05d}"] = {"valence": round(float(val[k]) * 10, 3), "arousal": round(float(aro[k]) * 10, 3), "landmarks": lm}
        (d / f"{clip}.json").write_text(json.dumps({"video_id": clip, "frames": ann}))
    return root


def make_manifest(root: str | Path, videos: int = 6, frames: int = 16, seed: int = 0, noise: float = 0.5, size: int = 48,
                  subjects: int = 3) -> Path:
    """A sequence manifest CSV (video, frame, subject, path, label, valence, arousal) with its frames beside it."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = ["video,frame,subject,path,label,valence,arousal"]
    for i in range(videos):
        name = f"v{i:02d}"
        imgs, val, aro, labels = make_video(frames, rng, noise, size=size)
        (root / name).mkdir(parents=True, exist_ok=True)
        for k, im in enumerate(imgs):
            im.save(root / name / f"{k:05d}.png")
            rows.append(f"{name},{k},s{i % subjects},{name}/{k:05d}.png,{labels[k]},{val[k]:.4f},{aro[k]:.4f}")
    p = root / "manifest.csv"
    p.write_text("\n".join(rows) + "\n")
    return p
