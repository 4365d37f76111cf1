"""Named backbones with a typed config per weight, built with timm.

`create_model(name, num_classes, pretrained=...)` takes `pretrained` as None (random init), `"hub"` (the
registry's default hub weights), a timm/Hugging Face tag such as `"resnet18.a1_in1k"`, or a local weight
file (.pth/.bin/.safetensors), which is mapped onto timm's layout when its keys differ (torchvision,
lukemelas EfficientNet). Any timm model name works too, with its own pretrained config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
from torch import nn

from ..errors import ConfigError
from .weights import load_local_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelConfig:
    """What a backbone needs to be built and fed: timm name, default hub weights, input size, normalisation."""

    name: str
    timm_name: str
    hub_tag: str | None
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    license: str = "apache-2.0"
    paper: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    fixed_size: bool = False  # e.g. ViT: the patch grid is set at construction

    @property
    def hub_name(self) -> str | None:
        return f"{self.timm_name}.{self.hub_tag}" if self.hub_tag else None


_REGISTRY: dict[str, ModelConfig] = {}


def register(cfg: ModelConfig) -> ModelConfig:
    _REGISTRY[cfg.name] = cfg
    return cfg


for _cfg in (
    ModelConfig("resnet18", "resnet18", "a1_in1k", paper="He et al. 2016"),
    ModelConfig("resnet50", "resnet50", "a1_in1k", paper="He et al. 2016"),
    ModelConfig("vgg16", "vgg16", "tv_in1k", license="bsd-3-clause", paper="Simonyan & Zisserman 2015"),
    ModelConfig("xception", "legacy_xception", "tf_in1k", input_size=299, mean=HALF, std=HALF, paper="Chollet 2017"),
    ModelConfig("mobilenetv2", "mobilenetv2_100", "ra_in1k", paper="Sandler et al. 2018"),
    ModelConfig("mobilenetv3", "mobilenetv3_large_100", "ra_in1k", paper="Howard et al. 2019"),
    ModelConfig("efficientnet_b0", "efficientnet_b0", "ra_in1k", paper="Tan & Le 2019"),
    # mean/std 0.5: the TF-ported ImageNet file users load locally; the hub's ra_in1k tag brings its own (normalisation())
    ModelConfig("efficientnet_lite0", "efficientnet_lite0", "ra_in1k", mean=HALF, std=HALF, paper="Tan & Le 2019"),
    ModelConfig("convnext_tiny", "convnext_tiny", "fb_in1k", paper="Liu et al. 2022"),
    ModelConfig("vit_small", "vit_small_patch16_224", "augreg_in21k_ft_in1k", mean=HALF, std=HALF, fixed_size=True,
                paper="Dosovitskiy et al. 2021"),
):
    register(_cfg)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_config(name: str) -> ModelConfig:
    """Registry entry, or a config derived from timm's own pretrained config for any other timm name."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    base, _, tag = name.partition(".")
    if not timm.is_model(base):
        raise ConfigError(f"unknown backbone {name!r}: choose one of {', '.join(list_models())} or any timm model name")
    pcfg = timm.get_pretrained_cfg(name) or timm.get_pretrained_cfg(base)
    mean = tuple(pcfg.mean) if pcfg else IMAGENET_MEAN
    std = tuple(pcfg.std) if pcfg else IMAGENET_STD
    size = int(pcfg.input_size[-1]) if pcfg else 224
    return ModelConfig(name, base, tag or (pcfg.tag if pcfg else None), input_size=size, mean=mean, std=std,
                       license=(pcfg.license if pcfg and pcfg.license else "unknown"), fixed_size=bool(pcfg and pcfg.fixed_input_size))


def is_local_file(pretrained: str) -> bool:
    return Path(pretrained).suffix.lower() in {".pth", ".pt", ".bin", ".safetensors", ".ckpt"} or Path(pretrained).exists()


def create_model(name: str, num_classes: int, pretrained: str | bool | None = None, img_size: int | None = None,
                 in_chans: int = 3, drop_rate: float = 0.0, labels: list[str] | None = None,
                 head: dict[str, Any] | None = None) -> nn.Module:
    """Build a backbone with an `num_classes` head; see the module docstring for `pretrained`.

    `pretrained` may also be an emotune checkpoint (run folder, card or .safetensors): its backbone is loaded and its
    head remapped onto `labels` by name (cascaded fine-tuning). `head` {"type": "fusion_concat" | "fusion_weighted",
    "levels": [...], "dim": 256} puts a multi-level fusion head on the backbone (models/fusion.py)."""
    from .transfer import init_from_checkpoint, is_emotune_checkpoint

    htype = (head or {}).get("type", "linear")
    if htype != "linear":
        from .fusion import HEAD_TYPES, FusionNet

        if htype not in HEAD_TYPES:
            raise ConfigError(f"head type {htype!r} is not one of {list(HEAD_TYPES)}")
        from_ckpt = isinstance(pretrained, (str, Path)) and is_emotune_checkpoint(pretrained)
        base = create_model(name, num_classes, None if from_ckpt else pretrained, img_size, in_chans, drop_rate, labels)
        model = reset_head(FusionNet(base, num_classes, htype.split("_", 1)[1], head.get("levels", (-3, -2)),
                                     int(head.get("dim", 256)), drop_rate))
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
    return _reset_new_head(timm.create_model(_hub_tag(cfg, pretrained), pretrained=True, **kwargs), num_classes)


def _hub_tag(cfg: ModelConfig, pretrained: str) -> str:
    """A timm tag ('ra_in1k'), a full timm name ('resnet18.a1_in1k') or an 'hf-hub:' id, as timm wants it."""
    return pretrained if pretrained.startswith(("hf-hub:", "hf_hub:")) or "." in pretrained else f"{cfg.timm_name}.{pretrained}"


def normalisation(name: str, pretrained: str | bool | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std the starting weights were trained with: timm's pretrained config for hub weights (one backbone's
    tags can differ: EfficientNet-Lite0's ra_in1k uses ImageNet statistics, the TF-ported file 0.5), else the
    registry entry, which describes the local files it documents (and serves random init); an emotune checkpoint's card."""
    from .transfer import is_emotune_checkpoint

    cfg = get_model_config(name)
    if isinstance(pretrained, (str, Path)) and is_emotune_checkpoint(pretrained):
        from .card import read_card

        card, _ = read_card(pretrained)  # a cascade keeps the normalisation its starting model was trained with
        mean, std = tuple(card.mean), tuple(card.std)
        return (mean * 3, std * 3) if len(mean) == 1 else (mean, std)
    tag = None
    if pretrained is True or pretrained == "hub":
        tag = cfg.hub_name
    elif isinstance(pretrained, str) and pretrained not in ("", "none", "random") and not is_local_file(pretrained):
        tag = _hub_tag(cfg, pretrained)
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


def classifier_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the model's classification head (timm's pretrained_cfg names it)."""
    pcfg = getattr(model, "pretrained_cfg", None) or {}
    clf = pcfg.get("classifier", "fc")
    return clf if isinstance(clf, str) else clf[0]


def build_from_card(card) -> nn.Module:
    """An untrained model with the architecture a model card describes."""
    from .ensemble import build_ensemble, is_ensemble

    if is_ensemble(card):
        return build_ensemble(card.head, len(card.labels), card.input_size, card.in_chans)
    return create_model(card.backbone, num_classes=len(card.labels), pretrained=None, img_size=card.input_size, in_chans=card.in_chans,
                        head=card.head or {"type": "linear"})
