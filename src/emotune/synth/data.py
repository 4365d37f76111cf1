"""Training faces for a generator: every image decoded once, resized to img_size, held as one uint8 tensor."""
from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import Skipped, filter_labels, prepare_samples
from ..data.sources import Sample, load_samples
from ..errors import ConfigError
from ..taxonomy import resolve_labels
from .config import SynthConfig

TRAIN_IMAGES = "train_images.csv"  # the generator's training faces (path, label, subject): what leak checks read


@dataclass
class Faces:
    images: torch.Tensor  # N x C x S x S uint8
    targets: torch.Tensor  # N class indices
    labels: tuple[str, ...]
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(self.targets.tolist())
        return {name: c.get(i, 0) for i, name in enumerate(self.labels)}


def to_uint8(images: Sequence[np.ndarray], size: int, channels: int) -> torch.Tensor:
    """Decoded images (H x W or H x W x C uint8) -> N x C x size x size uint8, resized with antialiasing as
    training transforms resize."""
    from torchvision.transforms.v2 import functional as F

    out = []
    for a in images:
        t = torch.from_numpy(np.array(a, dtype=np.uint8))  # a copy: decoded arrays may be read-only
        t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
        if t.shape[0] != channels:
            t = t[:1] if channels == 1 else t.expand(3, *t.shape[1:])
        if tuple(t.shape[1:]) != (size, size):
            t = F.resize(t, [size, size], antialias=True)
        out.append(t)
    return torch.stack(out).contiguous()


def load_faces(cfg: SynthConfig) -> Faces:
    """The faces to learn from, with clear errors for classes that a generator cannot learn from so few images."""
    samples = load_samples(cfg.data, cfg.data_format, split=cfg.train_split, drop_labels=cfg.drop_labels)
    if any(not s.label for s in samples):
        raise ConfigError(f"{cfg.data}: some images have no class; a class-conditional generator needs one per image")
    present = [s.label for s in samples if s.label not in cfg.drop_labels]
    labels = resolve_labels(cfg.labels, present) if present or cfg.labels != "auto" else ()
    samples = filter_labels(samples, labels, cfg.drop_labels, where=cfg.data)
    if not samples:
        raise ConfigError(f"{cfg.data}: no images to learn from")
    prep, cached = prepare_samples(samples, cfg.channels, "skip", cache=True, show=cfg.progress, desc="reading faces")
    counts = Counter(s.label for s in prep.samples)
    few = {c: counts.get(c, 0) for c in labels if counts.get(c, 0) < cfg.min_per_class}
    if few:
        listed = ", ".join(f"{c!r} has {n}" for c, n in few.items())
        raise ConfigError(f"{cfg.data}: too few images to train a generator: {listed} (need at least {cfg.min_per_class} per "
                          f"class, --min-per-class); add images or leave the class out (--drop-labels {','.join(few)})")
    index = {c: i for i, c in enumerate(labels)}
    images = to_uint8(cached, cfg.img_size, 1 if cfg.channels == "grayscale" else 3)
    targets = torch.tensor([index[s.label] for s in prep.samples], dtype=torch.long)
    return Faces(images, targets, tuple(labels), prep.samples, prep.skipped)


def train_images_csv(samples: Sequence[Sample]) -> str:
    """path (absolute), label, subject of every training face: leak checks compare these with test folds."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "subject"])
    for s in samples:
        w.writerow([str(Path(s.path).resolve()) if s.path is not None else s.where, s.label, s.subject or ""])
    return buf.getvalue()


def read_train_images(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
