"""torchvision transforms v2 pipelines: face-friendly defaults, a scene preset; sizes and mean/std come from the model."""
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
    # aimed at the gap between lab crops and users' photos; 0 = off, so older recipes stay as they were
    translate: float = 0.0  # crop jitter around the aligned face: max shift as a fraction of the side
    perspective: float = 0.0  # head pose: RandomPerspective distortion scale (applied to half the images)
    blur: float = 0.0  # probability of a Gaussian blur (sigma 0.1-1.5 px: focus, motion, small faces)
    jpeg: float = 0.0  # probability of JPEG re-compression at quality 30-90 (web photos)


@dataclass(frozen=True)
class Preprocess:
    """The one way an image becomes the model's input, for evaluation and inference alike (built from the model card).

    An image (PIL, or a numpy array as `Recognizer` crops are) is converted to the card's channels as PIL does (ITU-R
    601 luma for grey), resampled to `source_size` (the face size of the training data, e.g. FER2013's 48 px) and then
    to `input_size`, both with torchvision's bilinear+antialias resize on uint8 as training's transforms do, scaled to
    [0, 1] and normalised. `Recognizer.crop` hands over its crop at `source_size`, so no photo path resamples twice."""

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: str = "rgb"
    in_chans: int = 3
    source_size: int = 0
    # how a non-square image reaches input_size: "squash" (both sides resized; faces are square crops anyway),
    # "center_crop" (shorter side to input_size, then the centre square) or "letterbox" (longer side, zero-padded)
    resize_mode: str = "squash"

    @classmethod
    def from_card(cls, card) -> "Preprocess":
        return cls(card.input_size, tuple(card.mean), tuple(card.std), card.channels, card.in_chans, card.source_size or 0,
                   getattr(card, "resize_mode", "squash") or "squash")

    def pixels(self, image) -> torch.Tensor:
        """One image as a uint8 C x H x W tensor in the card's channels. RGB uint8 arrays (Recognizer crops) take a
        numpy path that is bit-identical to PIL's conversion (grey: PIL's integer ITU-R 601 luma); anything else goes
        through PIL as a dataset image does."""
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
            if self.channels in ("grayscale", "gray", "L"):
                x = image.astype(np.uint32)
                luma = (x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000) >> 16
                return torch.from_numpy(luma.astype(np.uint8))[None]
            return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        from PIL import Image
        from torchvision.transforms.v2 import functional as F

        from .images import image_from_array, normalize_mode

        pil = normalize_mode(image, self.channels) if isinstance(image, Image.Image) else image_from_array(image, self.channels)
        return F.pil_to_tensor(pil)

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N x) C x H x W -> (N x) C x S x S, through source_size first when the card has one, so a face of any
        size reaches the model as the training faces did (each step is skipped when the size already matches)."""
        from torchvision.transforms.v2 import functional as F

        if self.resize_mode != "squash":
            return self._fit(x)
        for side in (self.source_size, self.input_size):
            if side and tuple(x.shape[-2:]) != (side, side):
                x = F.resize(x, [side, side], antialias=True)
        return x

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        """center_crop / letterbox at input_size, keeping the aspect ratio (scene photos)."""
        from torchvision.transforms.v2 import functional as F

        s = self.input_size
        h, w = x.shape[-2:]
        if (h, w) == (s, s):
            return x
        if self.resize_mode == "center_crop":
            scale = s / min(h, w)
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
            return F.center_crop(F.resize(x, [nh, nw], antialias=True), [s, s])
        if self.resize_mode == "letterbox":
            scale = s / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            x = F.resize(x, [nh, nw], antialias=True)
            top, left = (s - nh) // 2, (s - nw) // 2
            return F.pad(x, [left, top, s - nw - left, s - nh - top], fill=0)
        raise ValueError(f"resize_mode {self.resize_mode!r}: choose squash, center_crop or letterbox")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N x) C x S x S -> float32 in [0, 1], normalised; grey repeated if the model takes 3 channels."""
        from torchvision.transforms.v2 import functional as F

        if x.shape[-3] != self.in_chans:
            x = x.expand(*x.shape[:-3], self.in_chans, *x.shape[-2:]) if x.shape[-3] == 1 else x[..., :1, :, :]
        return F.normalize(F.to_dtype(x, torch.float32, scale=True), list(self.mean), list(self.std))

    def __call__(self, image) -> torch.Tensor:
        """One image (PIL, numpy array or uint8 tensor) -> float32 C x S x S tensor: the dataset transform."""
        x = image if isinstance(image, torch.Tensor) else self.pixels(image)
        return self.normalize(self.resample(x))

    def batch(self, images: Sequence) -> np.ndarray:
        """Images of any sizes -> normalised float32 N x C x S x S array, C-contiguous (what a backend takes).
        Same-sized images are resampled together; the result is the same as calling this one by one."""
        if not len(images):
            return np.zeros((0, self.in_chans, self.input_size, self.input_size), np.float32)
        px = [self.pixels(im) for im in images]
        if len({tuple(p.shape) for p in px}) == 1:
            x = self.resample(torch.stack(px))
        else:
            x = torch.stack([self.resample(p) for p in px])
        return np.ascontiguousarray(self.normalize(x).numpy())


def mirror(x):
    """The horizontal mirror of an N x C x H x W batch (torch tensor or numpy array)."""
    if isinstance(x, torch.Tensor):
        return torch.flip(x, dims=[-1])
    return np.ascontiguousarray(x[..., ::-1])


def flip_tta(probs_fn: Callable, x):
    """Test-time augmentation: the mean class PROBABILITIES of a batch and its mirror image (`probs_fn` maps a batch
    to probabilities). Evaluation and inference both call this, so their TTA numbers agree."""
    return (probs_fn(x) + probs_fn(mirror(x))) / 2


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float], source_size: int = 0,
                   resize_mode: str = "squash") -> Preprocess:
    """The evaluation transform for a PIL image already in the model's channels (channels follow len(mean))."""
    grey = len(mean) == 1
    return Preprocess(size, tuple(mean), tuple(std), "grayscale" if grey else "rgb", 1 if grey else 3, source_size, resize_mode)


def scene_train_transform(size: int, mean: Sequence[float], std: Sequence[float], hflip: float = 0.5) -> v2.Compose:
    """Training augmentation for whole photos (not faces): a random resized crop over a wide range of areas and
    aspect ratios (ImageNet-style, scale 0.35-1), a horizontal flip and light colour jitter; no rotation, no erasing
    (they would cut away the scene's subject, which carries the emotion)."""
    ops: list = [v2.ToImage(), v2.RandomResizedCrop((size, size), scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3), antialias=True)]
    if hflip > 0:
        ops.append(v2.RandomHorizontalFlip(hflip))
    ops += [v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


def train_transform(size: int, mean: Sequence[float], std: Sequence[float], aug: AugmentConfig = AugmentConfig()) -> v2.Compose:
    ops: list = [v2.ToImage(), v2.RandomResizedCrop((size, size), scale=aug.crop_scale, ratio=(0.9, 1.1), antialias=True)]
    if aug.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(aug.hflip))
    if aug.rotation > 0:
        ops.append(v2.RandomApply([v2.RandomRotation(aug.rotation)], p=0.5))
    if aug.translate > 0:
        ops.append(v2.RandomAffine(degrees=0.0, translate=(aug.translate, aug.translate)))
    if aug.perspective > 0:
        ops.append(v2.RandomPerspective(distortion_scale=aug.perspective, p=0.5))
    if aug.brightness or aug.contrast or aug.saturation:
        ops.append(v2.ColorJitter(brightness=aug.brightness, contrast=aug.contrast, saturation=aug.saturation))
    if aug.blur > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=aug.blur))
    if aug.jpeg > 0:  # on uint8, before scaling
        ops.append(v2.RandomApply([v2.JPEG((30, 90))], p=aug.jpeg))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if aug.erasing > 0:
        ops.append(v2.RandomErasing(p=aug.erasing, scale=(0.02, 0.15)))
    return v2.Compose(ops)
