"""Building and loading models: the layer above the registry, cards, weights and heads.

`create_model(name, num_classes, pretrained=...)` takes `pretrained` as None (random init), `"hub"` (the
registry's default hub weights), a timm/Hugging Face tag such as `"resnet18.a1_in1k"`, or a local weight
file (.pth/.bin/.safetensors), which is mapped onto timm's layout when its keys differ (torchvision,
lukemelas EfficientNet). Any timm model name works too, with its own pretrained config.

Import order inside emotune.models (each module imports only those before it; tests/test_provenance.py checks):
registry, fusion, ensemble -> weights -> card -> transfer -> factory -> average.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from safetensors.torch import load_file
from torch import nn

from ..errors import CheckpointError, ConfigError
from .card import ModelCard, read_card, verified_weights, weights_path
from .ensemble import EnsembleNet, is_ensemble
from .heads import get_head
from .registry import get_model_config, hub_tag, is_local_file
from .transfer import init_from_checkpoint, is_emotune_checkpoint
from .weights import load_local_weights


def create_model(name: str, num_classes: int, pretrained: str | bool | None = None, img_size: int | None = None,
                 in_chans: int = 3, drop_rate: float = 0.0, labels: list[str] | None = None,
                 head: dict[str, Any] | None = None) -> nn.Module:
    """Build a backbone with an `num_classes` head; see the module docstring for `pretrained`. With continuous targets,
    `num_classes` is the head's width, classes + targets (models/heads.py).

    `pretrained` may also be an emotune checkpoint (run folder, card or .safetensors): its backbone is loaded and its
    head remapped onto `labels` by name (cascaded fine-tuning). `head` {"type": "fusion_concat" | "fusion_weighted",
    "levels": [...], "dim": 256} puts a multi-level fusion head on the backbone (models/fusion.py)."""
    htype = get_head((head or {}).get("type", "linear"))  # the head registry (models/heads.py)
    if htype.wrap is not None:
        from_ckpt = isinstance(pretrained, (str, Path)) and is_emotune_checkpoint(pretrained)
        base = create_model(name, num_classes, None if from_ckpt else pretrained, img_size, in_chans, drop_rate, labels)
        model = reset_head(htype.wrap(base, num_classes, head or {}, drop_rate))
        if from_ckpt:
            if labels is None or len(labels) != num_classes:
                raise ConfigError("starting from an emotune checkpoint needs the new stage's labels (one per class)")
            model.head_remap = init_from_checkpoint(model, pretrained, list(labels))
        return model

    cfg = get_model_config(name)
    kwargs: dict[str, Any] = dict(cfg.kwargs, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    if cfg.fixed_size and img_size:
        kwargs["img_size"] = img_size
    if pretrained in (None, False, "", "none", "random"):
        return timm.create_model(cfg.timm_name, pretrained=False, **kwargs)
    if isinstance(pretrained, (str, Path)) and is_emotune_checkpoint(pretrained):
        if labels is None or len(labels) != num_classes:
            raise ConfigError("starting from an emotune checkpoint needs the new stage's labels (one per class)")
        model = reset_head(timm.create_model(cfg.timm_name, pretrained=False, **kwargs))
        model.head_remap = init_from_checkpoint(model, pretrained, list(labels))
        return model
    if pretrained is True or pretrained == "hub":
        if not cfg.hub_name:
            raise ConfigError(f"{name}: no default hub weights; pass a tag or a local file")
        return _reset_new_head(timm.create_model(cfg.hub_name, pretrained=True, **kwargs), num_classes)
    pretrained = str(pretrained)
    if is_local_file(pretrained):
        model = timm.create_model(cfg.timm_name, pretrained=False, **kwargs)
        # a head loaded from the file (same number of classes) is kept; only a new head gets the small init
        return model if load_local_weights(model, pretrained) else reset_head(model)
    return _reset_new_head(timm.create_model(hub_tag(cfg, pretrained), pretrained=True, **kwargs), num_classes)


def normalisation(name: str, pretrained: str | bool | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std the starting weights were trained with: timm's pretrained config for hub weights (one backbone's
    tags can differ: EfficientNet-Lite0's ra_in1k uses ImageNet statistics, the TF-ported file 0.5), else the
    registry entry, which describes the local files it documents (and serves random init); an emotune checkpoint's card."""
    cfg = get_model_config(name)
    if isinstance(pretrained, (str, Path)) and is_emotune_checkpoint(pretrained):
        card, _ = read_card(pretrained)  # a cascade keeps the normalisation its starting model was trained with
        mean, std = tuple(card.mean), tuple(card.std)
        return (mean * 3, std * 3) if len(mean) == 1 else (mean, std)
    tag = None
    if pretrained is True or pretrained == "hub":
        tag = cfg.hub_name
    elif isinstance(pretrained, str) and pretrained not in ("", "none", "random") and not is_local_file(pretrained):
        tag = hub_tag(cfg, pretrained)
    pcfg = timm.get_pretrained_cfg(tag) if tag and not tag.startswith(("hf-hub:", "hf_hub:")) else None
    if pcfg is not None and pcfg.mean and pcfg.std:
        return tuple(pcfg.mean), tuple(pcfg.std)
    return cfg.mean, cfg.std


def _reset_new_head(model: nn.Module, num_classes: int) -> nn.Module:
    """After timm loaded hub weights: keep the pretrained head when it fits (timm loaded it), else reset it."""
    pcfg = getattr(model, "pretrained_cfg", None) or {}
    return model if pcfg.get("num_classes") == num_classes else reset_head(model)


def reset_head(model: nn.Module, std: float = 0.01) -> nn.Module:
    """Small-normal init of a new head on pretrained features: timm's default init (e.g. uniform with
    fan-out = number of classes) gives huge first logits on ImageNet features and a rough first epoch."""
    for m in model.get_classifier().modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)
    return model


def build_ensemble(head: dict[str, Any], num_classes: int, img_size: int, in_chans: int) -> EnsembleNet:
    """An untrained EnsembleNet from a card's head spec {"type": "ensemble", "members": [{backbone, head}], "weights"}."""
    specs, weights = head.get("members"), head.get("weights")
    if weights is not None and not isinstance(weights, list):
        raise CheckpointError(f"ensemble head: 'weights' must be a list of numbers, got {weights!r}")
    if not isinstance(specs, list) or not all(isinstance(s, dict) and isinstance(s.get("backbone"), str) for s in specs):
        raise CheckpointError(f"ensemble head: 'members' must be a list of {{backbone, head}} objects, got {specs!r}")
    members = [create_model(s["backbone"], num_classes, None, img_size=img_size, in_chans=in_chans,
                            head=s.get("head") or {"type": "linear"}) for s in specs]
    return EnsembleNet(members, weights or [1.0] * len(specs), specs)


def build_from_card(card: ModelCard) -> nn.Module:
    """An untrained model with the architecture a model card describes."""
    if card.kind != "classifier":
        raise CheckpointError(f"a {card.kind} checkpoint ({card.backbone}), not an emotion classifier: use it with `emotune synth`")
    if card.temporal:  # a sequence model (emotune/temporal): encoder + temporal head
        from ..temporal.model import build_sequence_model
        return build_sequence_model(card)
    if is_ensemble(card):
        return build_ensemble(card.head, len(card.labels), card.input_size, card.in_chans)
    return create_model(card.backbone, num_classes=card.num_outputs, pretrained=None, img_size=card.input_size, in_chans=card.in_chans,
                        head=card.head or {"type": "linear"})


def load_checkpoint(path: str | Path, verify: bool = True) -> tuple[nn.Module, ModelCard]:
    """Rebuild the model a card describes and load its weights strictly: the weights' sha256 and the card fields
    bound into them (card.py) are checked unless `verify` is False."""
    card, card_path = read_card(path, verify=verify)
    weights = verified_weights(card, card_path) if verify else weights_path(card, card_path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file named by {card_path} not found")
    model = build_from_card(card)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise CheckpointError(f"{weights}: cannot load into {card.backbone} ({type(exc).__name__}: {exc})") from None
    model.eval()
    return model, card
