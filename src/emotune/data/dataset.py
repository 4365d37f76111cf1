"""A torch Dataset over samples, with up-front validation so bad files are reported once, by name."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from ..progress import progress

from ..errors import BadInputError, LabelError
from .images import image_from_array, read_image
from .sources import Sample


@dataclass
class Skipped:
    where: str
    problem: str


@dataclass
class PreparedData:
    """Samples that passed validation, with what was skipped and why."""

    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> count over the good images

    def native_side(self) -> int:
        """The side of the data's faces when every image is the same square size (FER2013, CK+ crops: 48), else 0."""
        if len(self.sizes) != 1:
            return 0
        (w, h), = self.sizes
        return w if w == h else 0


def filter_labels(samples: Sequence[Sample], labels: Sequence[str], drop: Sequence[str] = (), where: str = "data") -> list[Sample]:
    """Keep samples whose label the model has; labels in `drop` are removed, any other stranger is an error."""
    allowed, dropped = set(labels), set(drop)
    out, strangers = [], {}
    for s in samples:
        if s.label in dropped:
            continue
        if s.label not in allowed:
            strangers.setdefault(s.label, s.where)
            continue
        out.append(s)
    if strangers:
        names = ", ".join(f"{k!r} (e.g. {v})" for k, v in strangers.items())
        raise LabelError(where, f"labels {names} are not among the model's labels {list(labels)}; "
                         f"drop them (--drop-labels {','.join(strangers)}) or choose a label set that has them")
    return out


def load_pil(sample: Sample, channels: str) -> Image.Image:
    if sample.pixels is not None:
        return image_from_array(sample.pixels, channels, where=sample.where)
    return read_image(sample.path, channels)


def prepare_samples(samples: Sequence[Sample], channels: str, on_bad: str = "skip", cache: bool = False,
                    show: bool = True, desc: str = "checking images") -> tuple[PreparedData, list[np.ndarray] | None]:
    """Decode every image once: drop (or fail on) bad ones; optionally keep the decoded pixels in memory."""
    if on_bad not in ("skip", "fail"):
        raise ValueError(f"on_bad must be 'skip' or 'fail', not {on_bad!r}")
    good, skipped, cached, sizes = [], [], [] if cache else None, Counter()
    for s in progress(samples, show, desc=desc):
        try:
            img = load_pil(s, channels)
        except BadInputError as exc:
            if on_bad == "fail":
                raise
            skipped.append(Skipped(exc.where, exc.problem))
            continue
        good.append(s)
        sizes[img.size] += 1
        if cached is not None:
            cached.append(np.asarray(img))
    if not good:
        example = f"; e.g. {skipped[0].where}: {skipped[0].problem}" if skipped else ""
        raise BadInputError("data", f"no usable images out of {len(samples)} ({len(skipped)} bad){example}")
    return PreparedData(good, skipped, sizes), cached


def soft_vector(sample: Sample, labels: Sequence[str]) -> torch.Tensor:
    """A probability vector over `labels`; mass on labels the model lacks is dropped and the rest renormalised."""
    vec = torch.zeros(len(labels))
    index = {c: i for i, c in enumerate(labels)}
    for name, p in (sample.soft or {sample.label: 1.0}).items():
        if name in index:
            vec[index[name]] = float(p)
    total = vec.sum()
    return vec / total if total > 0 else torch.nn.functional.one_hot(torch.tensor(index[sample.label]), len(labels)).float()


class EmotionDataset(Dataset):
    """Yields `(image_tensor, target)`; target is a class index, or a probability vector when `soft`."""

    def __init__(self, samples: Sequence[Sample], labels: Sequence[str], transform: Callable, channels: str = "rgb",
                 soft: bool = False, cache: list[np.ndarray] | None = None):
        self.samples = list(samples)
        self.labels = tuple(labels)
        self.index = {c: i for i, c in enumerate(self.labels)}
        self.transform = transform
        self.channels = channels
        self.soft = soft
        self.cache = cache
        self.targets = [self.index[s.label] for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, i: int) -> Image.Image:
        if self.cache is not None:
            return Image.fromarray(self.cache[i])
        return load_pil(self.samples[i], self.channels)

    def __getitem__(self, i: int):
        x = self.transform(self.image(i))
        if self.soft:
            return x, soft_vector(self.samples[i], self.labels)
        return x, self.targets[i]
