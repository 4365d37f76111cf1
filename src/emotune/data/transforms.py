"""torchvision transforms v2 pipelines whose defaults suit face crops; sizes and mean/std come from the model."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import v2


@dataclass(frozen=True)
class AugmentConfig:
    """Face-friendly augmentation: mild crops, flips, small rotations, light colour jitter, random erasing."""

    crop_scale: tuple[float, float] = (0.8, 1.0)
    hflip: float = 0.5
    rotation: float = 10.0
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.2
    erasing: float = 0.25


@dataclass(frozen=True)
class Preprocess:
    """The one way an image becomes the model's input, for evaluation and inference alike (built from the model card).

    An image (PIL, or a numpy array as `Recognizer` crops are) is converted to the card's channels as PIL does (ITU-R
    601 luma for grey), resampled to `source_size` (the face size of the training data, e.g. FER2013's 48 px) and then
    to `input_size`, both with torchvision's bilinear+antialias resize on uint8 as training's transforms do, scaled to
    [0, 1] and normalised. An image already `input_size` square is a finished crop and only normalised (so a crop that
    `Recognizer.crop` resampled is not resampled twice)."""

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: str = "rgb"
    in_chans: int = 3
    source_size: int = 0

    @classmethod
    def from_card(cls, card) -> "Preprocess":
        return cls(card.input_size, tuple(card.mean), tuple(card.std), card.channels, card.in_chans, card.source_size or 0)

    def _pil(self, image):
        from PIL import Image

        from .images import image_from_array, normalize_mode

        if isinstance(image, Image.Image):
            return normalize_mode(image, self.channels)
        return image_from_array(image, self.channels)

    def __call__(self, image) -> torch.Tensor:
        """One image -> float32 C x S x S tensor (a dataset transform)."""
        from torchvision.transforms.v2 import functional as F

        x = F.pil_to_tensor(self._pil(image)) if not isinstance(image, torch.Tensor) else image
        size = self.input_size
        if tuple(x.shape[-2:]) != (size, size):
            if self.source_size and tuple(x.shape[-2:]) != (self.source_size, self.source_size):
                x = F.resize(x, [self.source_size, self.source_size], antialias=True)
            x = F.resize(x, [size, size], antialias=True)
        if x.shape[0] != self.in_chans:
            x = x.expand(self.in_chans, -1, -1) if x.shape[0] == 1 else x[:1]
        x = F.to_dtype(x, torch.float32, scale=True)
        return F.normalize(x, list(self.mean), list(self.std))

    def batch(self, images: Sequence) -> np.ndarray:
        """Images of any sizes -> normalised float32 N x C x S x S array, C-contiguous (what a backend takes)."""
        if not len(images):
            return np.zeros((0, self.in_chans, self.input_size, self.input_size), np.float32)
        return np.ascontiguousarray(torch.stack([self(im) for im in images]).numpy())


def mirror(x):
    """The horizontal mirror of an N x C x H x W batch (torch tensor or numpy array)."""
    if isinstance(x, torch.Tensor):
        return torch.flip(x, dims=[-1])
    return np.ascontiguousarray(x[..., ::-1])


def flip_tta(probs_fn: Callable, x):
    """Test-time augmentation: the mean class PROBABILITIES of a batch and its mirror image (`probs_fn` maps a batch
    to probabilities). Evaluation and inference both call this, so their TTA numbers agree."""
    return (probs_fn(x) + probs_fn(mirror(x))) / 2


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float], source_size: int = 0) -> Preprocess:
    """The evaluation transform for a PIL image already in the model's channels (channels follow len(mean))."""
    grey = len(mean) == 1
    return Preprocess(size, tuple(mean), tuple(std), "grayscale" if grey else "rgb", 1 if grey else 3, source_size)


def train_transform(size: int, mean: Sequence[float], std: Sequence[float], aug: AugmentConfig = AugmentConfig()) -> v2.Compose:
    ops: list = [v2.ToImage(), v2.RandomResizedCrop((size, size), scale=aug.crop_scale, ratio=(0.9, 1.1), antialias=True)]
    if aug.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(aug.hflip))
    if aug.rotation > 0:
        ops.append(v2.RandomApply([v2.RandomRotation(aug.rotation)], p=0.5))
    if aug.brightness or aug.contrast or aug.saturation:
        ops.append(v2.ColorJitter(brightness=aug.brightness, contrast=aug.contrast, saturation=aug.saturation))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if aug.erasing > 0:
        ops.append(v2.RandomErasing(p=aug.erasing, scale=(0.02, 0.15)))
    return v2.Compose(ops)
