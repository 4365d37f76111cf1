"""Which torch device to run on: shared by training and evaluation, so neither imports the other."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .errors import ConfigError

if TYPE_CHECKING:
    from .train.engine import Dist


def pick_device(name: str, dist: Dist | None = None) -> torch.device:
    """`auto` (CUDA when present), `cpu`, `cuda[:N]`; under torchrun each process takes its local GPU."""
    if dist is not None and dist.enabled:
        on_gpu = torch.cuda.is_available() and (name == "auto" or name.startswith("cuda"))
        return torch.device(f"cuda:{dist.local_rank}") if on_gpu else torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is available")
    return dev
