"""Temporal heads: the part that reads a window of per-frame embeddings (B x W x D) and predicts every frame
(B x W x outputs: one logit per class, then one value per continuous target, as models/heads.py lays out).

A registry of named parts with typed configs (`register_temporal_head(name, Config)`), like the smoothers:

- `gru`, `lstm`: a unidirectional recurrent network (Kollias et al. 2017: CNN features -> RNN).
- `tcn`: a causal temporal convolution (dilated 1-D convolutions, kernel `kernel`, dilation doubling per layer).

Every head is causal: the output at frame t reads frames <= t only. So a prediction never waits for the future
(streaming with a bounded delay, emotune predict --temporal-model), padding after the end of a short sequence
changes nothing before it, and a frame's output from any window that starts at or before the video's start and
contains it is the same.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class RNNConfig:
    """A recurrent head: `hidden` units, `layers` stacked, `dropout` between layers and before the output layer."""

    name: ClassVar[str] = "gru"
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.0

    def __post_init__(self):
        _check_int("hidden", self.hidden, 1, 4096)
        _check_int("layers", self.layers, 1, 16)
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ConfigError(f"temporal head dropout {self.dropout}: give a fraction in [0, 1)")


@dataclass(frozen=True)
class GRUConfig(RNNConfig):
    name: ClassVar[str] = "gru"


@dataclass(frozen=True)
class LSTMConfig(RNNConfig):
    name: ClassVar[str] = "lstm"


@dataclass(frozen=True)
class TCNConfig:
    """A causal temporal convolution: `layers` blocks of `channels` filters, kernel `kernel`, dilations 1, 2, 4...
    (receptive field 1 + (kernel - 1) (2^layers - 1) frames)."""

    name: ClassVar[str] = "tcn"
    channels: int = 64
    kernel: int = 3
    layers: int = 3
    dropout: float = 0.0

    def __post_init__(self):
        _check_int("channels", self.channels, 1, 4096)
        _check_int("kernel", self.kernel, 1, 64)
        _check_int("layers", self.layers, 1, 16)
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ConfigError(f"temporal head dropout {self.dropout}: give a fraction in [0, 1)")

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel - 1) * (2 ** self.layers - 1)


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"temporal head {name} {value!r}: give a whole number in {lo}..{hi}")


@dataclass(frozen=True)
class TemporalHeadEntry:
    name: str
    config: type
    build: Callable[[Any, int], tuple[nn.Module, int]]  # (config, input dim) -> (module B x W x D -> B x W x H, H)
    doc: str


TEMPORAL_HEADS: dict[str, TemporalHeadEntry] = {}


def register_temporal_head(name: str, config: type, doc: str = ""):
    def deco(build):
        TEMPORAL_HEADS[name] = TemporalHeadEntry(name, config, build, doc)
        return build

    return deco


class _RNN(nn.Module):
    def __init__(self, kind: type[nn.RNNBase], cfg: RNNConfig, dim: int):
        super().__init__()
        self.rnn = kind(dim, cfg.hidden, num_layers=cfg.layers, batch_first=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class _CausalBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation)
        self.act, self.drop = nn.ReLU(), nn.Dropout(dropout)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B x C x W
        y = self.conv(nn.functional.pad(x, (self.pad, 0)))  # left padding only: causal
        return self.act(self.drop(y) + self.skip(x))


class _TCN(nn.Module):
    def __init__(self, cfg: TCNConfig, dim: int):
        super().__init__()
        chans = [dim] + [cfg.channels] * cfg.layers
        self.blocks = nn.Sequential(*[_CausalBlock(chans[i], chans[i + 1], cfg.kernel, 2 ** i, cfg.dropout)
                                      for i in range(cfg.layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x.transpose(1, 2)).transpose(1, 2)


@register_temporal_head("gru", GRUConfig, "gated recurrent unit over the window (causal)")
def _gru(cfg: GRUConfig, dim: int):
    return _RNN(nn.GRU, cfg, dim), cfg.hidden


@register_temporal_head("lstm", LSTMConfig, "long short-term memory over the window (causal)")
def _lstm(cfg: LSTMConfig, dim: int):
    return _RNN(nn.LSTM, cfg, dim), cfg.hidden


@register_temporal_head("tcn", TCNConfig, "causal dilated temporal convolution")
def _tcn(cfg: TCNConfig, dim: int):
    return _TCN(cfg, dim), cfg.channels


def head_config(name: str, **options: Any):
    """The typed config of temporal head `name` with `options` (None values ignored); unknown names and options are
    ConfigErrors naming the choices."""
    entry = TEMPORAL_HEADS.get(name)
    if entry is None:
        raise ConfigError(f"--temporal-head {name}: choose one of {', '.join(TEMPORAL_HEADS)}")
    options = {k: v for k, v in options.items() if v is not None}
    known = [f.name for f in fields(entry.config)]
    bad = [k for k in options if k not in known]
    if bad:
        raise ConfigError(f"temporal head {name} has no option(s) {bad} (it takes {', '.join(known)})")
    return entry.config(**options)


def head_to_dict(cfg: Any) -> dict[str, Any]:
    return {"type": cfg.name, **asdict(cfg)}


def head_from_dict(d: dict[str, Any]):
    d = dict(d)
    return head_config(d.pop("type", ""), **d)


class TemporalNet(nn.Module):
    """Per-frame embeddings B x W x D -> per-frame outputs B x W x (classes + targets): LayerNorm, the registered
    head, dropout and a linear layer shared by every frame."""

    def __init__(self, head: Any, embed_dim: int, num_outputs: int):
        super().__init__()
        self.head_cfg, self.embed_dim, self.num_outputs = head, int(embed_dim), int(num_outputs)
        self.norm = nn.LayerNorm(embed_dim)
        self.body, width = TEMPORAL_HEADS[head.name].build(head, embed_dim)
        self.drop = nn.Dropout(getattr(head, "dropout", 0.0))
        self.out = nn.Linear(width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.body(self.norm(x))))
