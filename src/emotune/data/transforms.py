"""torchvision transforms v2 pipelines whose defaults suit face crops; sizes and mean/std come from the model."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    return v2.Compose([
        v2.ToImage(),
        v2.Resize((size, size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ])


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
