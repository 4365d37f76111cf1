"""Checkpoints as safetensors plus a JSON model card; never pickled modules.

The card says everything needed to rebuild and feed the model (backbone, labels in order, input size,
mean/std, channels) and to trust it (training data, metrics, licence, sha256 of the weights file).
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from ..io import atomic_write, atomic_write_json, sha256_file

CARD_FORMAT = "emotune-model/1"


@dataclass
class ModelCard:
    backbone: str
    labels: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    channels: str = "rgb"
    in_chans: int = 3
    # faces in the training data were this many pixels wide before resizing to input_size (FER2013: 48); inference
    # resamples crops to it first so that photos look like the training data (0 = no such step)
    source_size: int = 0
    head: dict[str, Any] = field(default_factory=lambda: {"type": "linear"})
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    license: str = "apache-2.0"
    weights_file: str = ""
    sha256: str = ""
    format: str = CARD_FORMAT
    emotune_version: str = ""
    torch_version: str = ""
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model card") -> "ModelCard":
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict):
            raise CheckpointError(f"{where}: model card is not a JSON object")
        missing = [k for k in ("backbone", "labels", "input_size", "mean", "std") if k not in d]
        if missing:
            raise CheckpointError(f"{where}: model card lacks {missing}")
        labels, size = d["labels"], d["input_size"]
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
            raise CheckpointError(f"{where}: 'labels' must be a non-empty list of names, got {labels!r}")
        if not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
            raise CheckpointError(f"{where}: 'input_size' must be a positive integer, got {size!r}")
        for key in ("mean", "std"):
            v = d[key]
            if not (isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                raise CheckpointError(f"{where}: {key!r} must be a list of numbers, got {v!r}")
        return cls(**{k: v for k, v in d.items() if k in known})


def save_checkpoint(stem: str | Path, model: nn.Module, card: ModelCard) -> Path:
    """Write `<stem>.safetensors` then `<stem>.json` (card with the weights' sha256), each atomically."""
    from .. import __version__

    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    # append, not with_suffix: a stem such as "resnet18.fer" must keep its dot
    weights = stem.parent / f"{stem.name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda p: save_file(state, str(p), metadata={"format": CARD_FORMAT}))
    card.weights_file = weights.name
    card.sha256 = sha256_file(weights)
    card.emotune_version = __version__
    card.torch_version = torch.__version__
    card.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    card_path = stem.parent / f"{stem.name}.json"
    atomic_write_json(card_path, card.to_dict())
    return card_path


def resolve_card_path(path: str | Path) -> Path:
    """A run folder (its best checkpoint), a card .json, or a .safetensors with its card beside it."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.json", "model.json", "last.json"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p}: no best.json/model.json/last.json model card in this folder")
    if p.suffix == ".safetensors":
        p = p.with_suffix(".json")
    if not p.is_file():
        raise CheckpointError(f"{p}: model card not found")
    return p


def read_card(path: str | Path) -> tuple[ModelCard, Path]:
    card_path = resolve_card_path(path)
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{card_path}: model card is not valid JSON ({exc})") from None
    return ModelCard.from_dict(data, str(card_path)), card_path


def load_checkpoint(path: str | Path, verify: bool = True) -> tuple[nn.Module, ModelCard]:
    """Rebuild the model a card describes and load its weights strictly (sha256-checked)."""
    from .registry import build_from_card

    card, card_path = read_card(path)
    weights = card_path.parent / (card.weights_file or card_path.with_suffix(".safetensors").name)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file named by {card_path} not found")
    if verify and not card.sha256:
        raise CheckpointError(f"{card_path}: model card has no sha256 of its weights; refusing unverified weights")
    if verify and sha256_file(weights) != card.sha256:
        raise CheckpointError(f"{weights}: sha256 does not match its model card {card_path} (corrupt or replaced)")
    model = build_from_card(card)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise CheckpointError(f"{weights}: cannot load into {card.backbone} ({type(exc).__name__}: {exc})") from None
    model.eval()
    return model, card
