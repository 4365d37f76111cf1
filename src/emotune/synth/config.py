"""`emotune synth train` options as one typed dataclass (YAML keys and CLI flags come from it, as for `emotune train`)."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# options that shape the networks or what they are conditioned on: a resumed run cannot change them
ARCH_FIELDS = ("img_size", "channels", "z_dim", "g_width", "d_width", "labels", "drop_labels")
# options that say how this invocation runs, or how long: free to differ on --resume
RUN_ONLY = ("resume", "progress", "out", "threads", "epochs")


def opt(default: Any, help: str, choices: tuple | None = None) -> Any:
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SynthConfig:
    # data
    data: str = opt("", "face crops to learn from: class folders, manifest CSV (path,label[,subject][,split]) or fer2013.csv")
    data_format: str = opt("auto", "dataset format (as emotune train)")
    train_split: str | None = opt(None, "manifest `split` value to learn from (e.g. train: a cross-validation fold's training rows)")
    labels: str = opt("auto", "classes to condition on: auto (those in the data), basic7, or a comma list")
    drop_labels: list[str] = opt([], "labels to leave out (comma list)")
    min_per_class: int = opt(10, "refuse a class with fewer training images than this (a generator cannot learn it)")
    # architecture (fixed on resume)
    img_size: int = opt(48, "side of the generated faces (a multiple of 8)")
    channels: str = opt("grayscale", "grey (FER2013, CK+) or rgb faces", ("grayscale", "rgb"))
    z_dim: int = opt(64, "latent size")
    g_width: int = opt(16, "generator channels at full resolution, doubled at each lower one (32-64 on a GPU)")
    d_width: int = opt(16, "discriminator channels at full resolution, doubled at each lower one")
    # optimisation
    epochs: int = opt(20, "epochs (an epoch is --steps-per-epoch updates)")
    steps_per_epoch: int = opt(0, "updates per epoch (0 = one pass over the training faces)")
    batch_size: int = opt(32, "batch size")
    lr_g: float = opt(2e-4, "generator learning rate (Adam, betas 0.0, 0.9)")
    lr_d: float = opt(2e-4, "discriminator learning rate")
    ema_decay: float = opt(0.999, "decay of the EMA of the generator weights (ramped up over the first updates)")
    diffaugment: str = opt("color,translation,cutout", "DiffAugment policy applied to real and fake images alike "
                                                       "(comma list of color, translation, cutout; none = off)")
    hflip: bool = opt(True, "mirror real faces at random (doubles a small set)")
    grid_per_class: int = opt(8, "faces per class in each epoch's sample grid")
    # system
    device: str = opt("auto", "cpu, cuda, cuda:N or auto")
    threads: int = opt(0, "CPU threads for torch (0 = torch's default)")
    seed: int = opt(0, "random seed")
    progress: bool = opt(True, "progress bars")
    out: str = opt("runs/synth", "run folder")
    resume: bool = opt(False, "continue the run in --out from its last completed epoch (its config.yaml supplies the options not given)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def augment_policy(self) -> list[str]:
        return [p.strip() for p in self.diffaugment.split(",") if p.strip() and p.strip() != "none"]

    def validate(self) -> "SynthConfig":
        from .nets import DIFFAUGMENT

        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name}: {getattr(self, f.name)!r} is not one of {list(choices)}")
        if not self.data:
            raise ConfigError("data: no training faces given (--data PATH)")
        if self.img_size < 16 or self.img_size % 8:
            raise ConfigError(f"img_size: {self.img_size} must be a multiple of 8, at least 16 (e.g. 48 or 64)")
        for name in ("z_dim", "g_width", "d_width", "epochs", "batch_size", "grid_per_class", "min_per_class"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.steps_per_epoch < 0:
            raise ConfigError("steps_per_epoch: 0 (one pass over the data) or a number of updates")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay: {self.ema_decay} must be in [0, 1)")
        unknown = [p for p in self.augment_policy if p not in DIFFAUGMENT]
        if unknown:
            raise ConfigError(f"diffaugment: unknown op(s) {unknown}; choose from {sorted(DIFFAUGMENT)} or none")
        return self


def _types() -> dict[str, type]:
    hints = typing.get_type_hints(SynthConfig)
    out = {}
    for f in dataclasses.fields(SynthConfig):
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        out[f.name] = typing.get_origin(args[0] if args else tp) or (args[0] if args else tp)
    return out


def coerce(name: str, value: Any) -> Any:
    tp = _types()[name]
    if value is None:
        return None
    if tp is list:
        return [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else list(value)
    if tp is bool and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    try:
        return tp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {value!r} is not a valid {tp.__name__}") from None


def make_synth_config(overrides: dict[str, Any], yaml_path: str | Path | None = None) -> SynthConfig:
    """Defaults < YAML < flags; with --resume the run folder's config.yaml replaces the defaults."""
    from ..train.config import load_yaml

    values: dict[str, Any] = dict(load_yaml(yaml_path)) if yaml_path else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("resume") and values.get("out"):
        saved = Path(values["out"]) / "config.yaml"
        if saved.is_file():
            values = {**load_yaml(saved), **values}
    known = _types()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown synth option(s) {unknown}; known: {sorted(known)}")
    return SynthConfig(**{k: coerce(k, v) for k, v in values.items()})


def arch_changes(saved: dict[str, Any], cfg: SynthConfig) -> dict[str, tuple[Any, Any]]:
    """{option: (old, new)} for the options a resume may not change."""
    new = cfg.to_dict()
    return {k: (coerce(k, saved.get(k)), new[k]) for k in ARCH_FIELDS if k in saved and coerce(k, saved.get(k)) != new[k]}


def add_synth_train_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per SynthConfig field, all defaulting to None (= not given)."""
    types_ = _types()
    for f in dataclasses.fields(SynthConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f"{f.metadata['help']} (default: {default})"
        if types_[f.name] is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            parser.add_argument(flag, dest=f.name, type=str, default=None, choices=f.metadata.get("choices"),
                                metavar=None if f.metadata.get("choices") else f.name.upper(), help=help_)
