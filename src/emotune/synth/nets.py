"""A class-conditional GAN small enough for a CPU: a DCGAN-like generator with class-conditional batch norm and a
projection discriminator (Miyato & Koyama 2018) with spectral normalisation on every layer, trained with the hinge
loss; DiffAugment (Zhao et al. 2020) on real and fake images alike keeps the discriminator from memorising a small set.

Sizes: the generator starts at img_size/8 and doubles three times; `width` is the channel count at full resolution,
doubled at each lower one (16 -> 128 channels at 6 x 6 for 48 px faces: about 32 M multiply-adds per face)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import CheckpointError

ARCH = "dcgan-proj"
N_UP = 3  # upsamplings: the generator starts at img_size / 8


@dataclass(frozen=True)
class GanSpec:
    """What shapes the networks; stored as the card's `head` (bound into the weights file)."""

    img_size: int
    channels: int  # 1 grey, 3 rgb
    num_classes: int
    z_dim: int = 64
    g_width: int = 16
    d_width: int = 16
    arch: str = ARCH

    def head(self) -> dict[str, Any]:
        return {"type": "generator", **asdict(self)}

    @classmethod
    def from_head(cls, head: dict[str, Any], where: str) -> "GanSpec":
        keys = {"img_size", "channels", "num_classes", "z_dim", "g_width", "d_width", "arch"}
        if head.get("type") != "generator" or not keys <= set(head):
            raise CheckpointError(f"{where}: not a generator card (its head is {head!r})")
        if head["arch"] != ARCH:
            raise CheckpointError(f"{where}: generator architecture {head['arch']!r} unknown here (this emotune builds {ARCH!r})")
        return cls(**{k: head[k] for k in keys})


class CondBatchNorm(nn.Module):
    """Batch norm whose scale and shift are looked up per class (the class-conditioning of BigGAN/SNGAN generators)."""

    def __init__(self, ch: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, affine=False)
        self.gamma = nn.Embedding(num_classes, ch)
        self.beta = nn.Embedding(num_classes, ch)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gamma(y)[:, :, None, None] + self.beta(y)[:, :, None, None]


class GBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes: int):
        super().__init__()
        self.norm = CondBatchNorm(cin, num_classes)
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(F.relu(self.norm(x, y)), scale_factor=2, mode="nearest"))


class Generator(nn.Module):
    """(z, class) -> image in [-1, 1], N x C x S x S."""

    def __init__(self, spec: GanSpec):
        super().__init__()
        self.spec = spec
        self.start = spec.img_size // 2 ** N_UP
        widths = [spec.g_width * 2 ** i for i in range(N_UP, -1, -1)]  # e.g. 128, 64, 32, 16
        self.embed = nn.Embedding(spec.num_classes, spec.z_dim)
        self.fc = nn.Linear(2 * spec.z_dim, widths[0] * self.start ** 2)
        self.blocks = nn.ModuleList(GBlock(a, b, spec.num_classes) for a, b in zip(widths[:-1], widths[1:]))
        self.out_norm = nn.BatchNorm2d(widths[-1])
        self.to_img = nn.Conv2d(widths[-1], spec.channels, 3, padding=1)
        self.widths = widths

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], 1)).view(z.shape[0], self.widths[0], self.start, self.start)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.to_img(F.relu(self.out_norm(h))))


class Discriminator(nn.Module):
    """Projection discriminator: score = linear(h) + <embed(y), h> over globally summed features h; spectral norm on
    every weight (convolutions, the linear layer and the class embedding)."""

    def __init__(self, spec: GanSpec):
        super().__init__()
        w = spec.d_width
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(spec.channels, w, 3, padding=1)), nn.LeakyReLU(0.1)]
        c = w
        for _ in range(N_UP):
            layers += [spectral_norm(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)), nn.LeakyReLU(0.1)]
            c *= 2
        layers += [spectral_norm(nn.Conv2d(c, c, 3, padding=1)), nn.LeakyReLU(0.1)]
        self.features = nn.Sequential(*layers)
        self.linear = spectral_norm(nn.Linear(c, 1))
        self.embed = spectral_norm(nn.Embedding(spec.num_classes, c))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)


def d_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def g_hinge(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


# ---- DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"), re-implemented:
# the same random, differentiable transform on real and fake images, in both the D and the G step.

def _color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device) - 0.5)  # brightness
    if x.shape[1] > 1:
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (torch.rand(n, 1, 1, 1, device=x.device) * 2) + m  # saturation
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * (torch.rand(n, 1, 1, 1, device=x.device) + 0.5) + m  # contrast


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    ty = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[gb, gx, gy].permute(0, 3, 1, 2).contiguous()


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gx = torch.clamp(gx + ox - ch // 2, 0, h - 1)
    gy = torch.clamp(gy + oy - cw // 2, 0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


DIFFAUGMENT = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: torch.Tensor, policy: list[str]) -> torch.Tensor:
    for name in policy:
        x = DIFFAUGMENT[name](x)
    return x


# ---- EMA of the generator, and its batch-norm statistics

@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """Move the EMA weights towards the model's; the decay ramps up ((1 + t) / (10 + t)) so that a short run's EMA is
    not stuck at its random start."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1 - d)


@torch.no_grad()
def standing_stats(gen: Generator, batches: int, batch_size: int, seed: int, device: torch.device) -> None:
    """Recompute the batch-norm statistics of (EMA) generator weights as the mean over `batches` random batches
    ("standing statistics", BigGAN): running averages from the live generator do not fit averaged weights."""
    norms = [m for m in gen.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    gen.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        z = torch.randn(batch_size, gen.spec.z_dim, generator=g).to(device)
        y = torch.randint(0, gen.spec.num_classes, (batch_size,), generator=g).to(device)
        gen(z, y)
    for m in norms:
        m.momentum = 0.1
    gen.eval()
