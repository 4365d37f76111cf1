"""Start a model from another emotune checkpoint (cascaded fine-tuning), remapping the head by label name.

Stage 2 of ImageNet -> FER2013 -> CK+ keeps FER2013's whole backbone and, for every label the two stages share,
that label's row of the classifier; labels new to this stage (e.g. contempt) start from the usual small init.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from ..errors import CheckpointError
from .card import read_card, verified_weights
from .ensemble import is_ensemble
from .registry import classifier_prefix, get_model_config


@dataclass
class HeadRemap:
    """What happened to the classifier when a checkpoint started a new stage."""

    source: str
    kept: list[str] = field(default_factory=list)  # labels whose classifier row came from the checkpoint
    new: list[str] = field(default_factory=list)  # labels that start fresh
    dropped: list[str] = field(default_factory=list)  # checkpoint labels this stage does not use


def classifier_prefix_of(card) -> str:
    """The classifier's state-dict prefix for the architecture a card describes (without building it)."""
    import timm

    if (card.head or {}).get("type", "linear") != "linear":
        return "head"
    cfg = timm.get_pretrained_cfg(get_model_config(card.backbone).timm_name)
    clf = getattr(cfg, "classifier", None) or "fc"
    return clf if isinstance(clf, str) else clf[0]


def is_emotune_checkpoint(spec: str | Path | None) -> bool:
    """A run folder, a model card .json, or a .safetensors with its card beside it."""
    if not spec or spec in ("hub", "none"):
        return False
    p = Path(spec)
    if p.is_dir():
        return any((p / n).is_file() for n in ("best.json", "model.json", "last.json"))
    if p.suffix == ".json":
        return p.is_file()
    return p.suffix == ".safetensors" and p.with_suffix(".json").is_file()


def init_from_checkpoint(model: nn.Module, spec: str | Path, labels: list[str]) -> HeadRemap:
    """Load a checkpoint's backbone into `model` (same architecture required) and remap its head to `labels`."""
    card, card_path = read_card(spec)
    if is_ensemble(card):
        raise CheckpointError(f"{card_path}: an ensemble cannot seed fine-tuning; start from one of its members instead")
    weights = verified_weights(card, card_path, strict=False)
    src = load_file(str(weights))
    head = classifier_prefix(model)
    dst = model.state_dict()
    is_head = lambda k: k == head or k.startswith(head + ".")  # noqa: E731
    src_head = "head" if any(k.startswith("backbone.") for k in src) else classifier_prefix_of(card)
    body_src = {k for k in src if not (k == src_head or k.startswith(src_head + "."))}
    body_dst = {k for k in dst if not is_head(k)}
    moved = body_src != body_dst and {f"backbone.{k}" for k in body_src} == body_dst
    if moved:
        # a plain checkpoint starting a fusion model: the backbone moves under `backbone.`, its linear head is left out
        src = {f"backbone.{k}": v for k, v in src.items() if k in body_src}
        body_src = body_dst
    if body_src != body_dst:
        diff = sorted(body_src ^ body_dst)[:3]
        raise CheckpointError(f"{card_path}: a {card.backbone} checkpoint does not fit this backbone (e.g. {diff}); "
                              "a cascade keeps one backbone across stages")
    new_state = {}
    for k in body_dst:
        if src[k].shape != dst[k].shape:
            raise CheckpointError(f"{card_path}: tensor {k} is {tuple(src[k].shape)}, this model needs {tuple(dst[k].shape)} "
                                  "(different input channels? keep --channels the same across stages)")
        new_state[k] = src[k]
    shared = [] if moved else [c for c in labels if c in card.labels]
    remap = HeadRemap(str(card_path), shared, [c for c in labels if c not in shared], [c for c in card.labels if c not in labels])
    per_class_keys = {f"{head}.{p}" for p in ("weight", "bias", "fc.weight", "fc.bias")}
    for k in (k for k in dst if is_head(k)):
        if k not in src or src[k].shape[1:] != dst[k].shape[1:]:
            continue  # a head tensor this checkpoint does not have: keep the fresh init
        if k not in per_class_keys or src[k].shape[0] != len(card.labels):
            if src[k].shape == dst[k].shape:
                new_state[k] = src[k]  # shared head layers (e.g. fusion projections) carry over
            continue
        t = dst[k].clone()
        for i, c in enumerate(labels):
            if c in card.labels:
                t[i] = src[k][card.labels.index(c)]
        new_state[k] = t
    model.load_state_dict(new_state, strict=False)
    return remap
