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
from ..taxonomy import canonical_labels
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
    """Keep samples whose label the model has; labels in `drop` are removed, any other stranger is an error.
    Samples without a label ("": valence/arousal-only rows) pass; the task decides what they are good for."""
    allowed, dropped = set(labels), canonical_labels(drop)
    out, strangers = [], {}
    for s in samples:
        if not s.label:
            out.append(s)
            continue
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
    img = read_image(sample.path, channels)
    if sample.box is not None:  # a face box from the annotations (AffectNet, AFEW-VA), clipped to the image
        x0, y0, x1, y1 = sample.box
        box = (max(x0, 0), max(y0, 0), min(x1, img.width), min(y1, img.height))
        if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
            img = img.crop(box)
    return img


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


IGNORE_INDEX = -100  # the class index of an image without a class (cross-entropy's ignore_index)


def target_vector(sample: Sample, labels: Sequence[str], targets: Sequence[str]) -> torch.Tensor:
    """[class index (IGNORE_INDEX when none), *targets on [-1, 1] (NaN when not annotated)] as float32."""
    index = labels.index(sample.label) if sample.label in labels else IGNORE_INDEX
    values = sample.targets or {}
    return torch.tensor([float(index), *(float(values.get(t, float("nan"))) for t in targets)], dtype=torch.float32)


class EmotionDataset(Dataset):
    """Yields `(image_tensor, target)`; target is a class index, or a probability vector when `soft`, or, for a model
    with continuous targets (`targets` names them), a float vector [class index, *targets] (see `target_vector`)."""

    def __init__(self, samples: Sequence[Sample], labels: Sequence[str], transform: Callable, channels: str = "rgb",
                 soft: bool = False, cache: list[np.ndarray] | None = None, targets: Sequence[str] = ()):
        self.samples = list(samples)
        self.labels = tuple(labels)
        self.index = {c: i for i, c in enumerate(self.labels)}
        self.transform = transform
        self.channels = channels
        self.soft = soft
        self.cache = cache
        self.target_names = tuple(targets)
        self.targets = [self.index.get(s.label, IGNORE_INDEX) if self.target_names else self.index[s.label] for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, i: int) -> Image.Image:
        if self.cache is not None:
            return Image.fromarray(self.cache[i])
        return load_pil(self.samples[i], self.channels)

    def __getitem__(self, i: int):
        x = self.transform(self.image(i))
        if self.target_names:
            return x, target_vector(self.samples[i], self.labels, self.target_names)
        if self.soft:
            return x, soft_vector(self.samples[i], self.labels)
        return x, self.targets[i]
