"""The fine-tuning loop: data -> model -> optimiser/schedule -> epochs with validation, checkpoints and resume.

A run directory holds config.yaml, log.csv (one row per epoch, with the learning rate at its first and last update),
best/last checkpoints (safetensors + model card), train_state.safetensors (everything needed to resume after a kill),
curves.png and, when a resume went on under changed options, config_history.json.

Resume is exact with data-loader workers too: each epoch's shuffling and worker seeds come from (seed, epoch) alone,
and the learning rate from the number of updates done, so epoch e does not depend on how earlier epochs were run.
"""
from __future__ import annotations

import csv
import io
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import yaml
from timm.scheduler import CosineLRScheduler
from timm.models import group_parameters
from timm.optim import create_optimizer_v2
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from torchvision.transforms import v2
from tqdm.auto import tqdm

from ..progress import progress

from ..data import AugmentConfig, EmotionDataset, Skipped, eval_transform, filter_labels, load_samples, prepare_samples, train_transform
from ..data.transforms import scene_train_transform
from ..data.merge import load_merged, parse_sources, source_sample_weights
from ..data.splits import holdout_split, stratified_subset
from ..device import pick_device
from ..errors import ConfigError
from ..evaluate import Metrics, compute_metrics, plot_confusion
from ..data.splits import sklearn_notes
from .. import kinds
from ..io import atomic_write, atomic_write_json, atomic_write_text
from ..models import ModelCard, create_model, get_model_config, normalisation, save_checkpoint
from ..taxonomy import resolve_labels
from .config import FIXED_ON_RESUME, TrainConfig, check_model_choice, config_changes, describe_changes, saved_run_config
from .state import load_state, open_run, rng_state, save_state, set_rng_state
from .head_fit import eval_view, fit_head
from .tasks import Task, select_task

LOG_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy",
              "val_macro_f1", "lr_start", "lr_end", "trainable_params", "seconds", "images_per_second"]


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int
    history: list[dict[str, Any]]
    skipped: list[Skipped] = field(default_factory=list)
    stopped_early: bool = False


@dataclass
class Dist:
    """torchrun's process layout: one process per GPU (or CPU process with gloo); rank 0 writes the run folder."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> Dist:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as tdist

    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda") or device_name.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(d.local_rank)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if use_cuda else "gloo")
    return d


def all_sum(values: list[float], dist: Dist, device: torch.device) -> list[float]:
    if not dist.enabled:
        return values
    import torch.distributed as tdist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return t.tolist()


def barrier(dist: Dist) -> None:
    if dist.enabled:
        import torch.distributed as tdist

        tdist.barrier()


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


# ---------------------------------------------------------------------------------------------- data

@dataclass
class DataBundle:
    labels: tuple[str, ...]
    train: EmotionDataset
    val: EmotionDataset
    soft: bool
    skipped: list[Skipped]
    describe: dict[str, Any]
    sources: list = field(default_factory=list)  # SourceSpec per merged dataset
    native_side: int = 0  # the training images' common square size (FER2013: 48), 0 when they differ
    targets: tuple[str, ...] = ()  # continuous target names (valence, arousal...), after the classes
    target_specs: list[dict] = field(default_factory=list)  # {name, column, scale} per target, for the card

    def per_source_metrics(self, targets: np.ndarray, preds: np.ndarray) -> dict[str, dict[str, float]]:
        """Validation metrics of each merged source (empty for a single dataset)."""
        if not self.sources:
            return {}
        names = np.array([s.dataset for s in self.val.samples])
        return {src.name: compute_metrics(targets[names == src.name], preds[names == src.name], self.labels).summary()
                for src in self.sources if (names == src.name).any()}


def data_targets(cfg: TrainConfig, samples) -> tuple[tuple[str, ...], list[dict]]:
    """The run's continuous targets, in order of first appearance in the data, each with its column and source scale
    (the scales of a merged run's sources may differ: each source was mapped to [-1, 1] on its own; the first is
    recorded for converting back)."""
    from ..data.targets import parse_targets

    columns = {t.name: t.column for t in parse_targets(cfg.targets)} if cfg.targets else {}
    specs: dict[str, dict] = {}
    for s in samples:
        for name in (s.targets or {}):
            if name not in specs:
                specs[name] = {"name": name, "column": columns.get(name, name),
                               "scale": list(s.target_scale) if s.target_scale else [-1.0, 1.0]}
    return tuple(specs), list(specs.values())


def build_data(cfg: TrainConfig, size: int, mean, std) -> DataBundle:
    """Read, split, filter, subset and validate the data; build train/val datasets with the model's preprocessing."""
    merged = None
    if cfg.sources:
        merged = load_merged(parse_sources(cfg.sources), cfg.labels, cfg.seed, cfg.ferplus_mode, cfg.val_fraction, cfg.drop_labels)
        train_s, val_s, labels = merged.train, merged.val, merged.labels
    else:
        extra = dict(targets=cfg.targets, target_scale=cfg.target_scale, tier=cfg.tier)
        train_s = load_samples(cfg.data, cfg.data_format, split=cfg.train_split, ferplus_mode=cfg.ferplus_mode,
                               drop_labels=cfg.drop_labels, **extra)
        if cfg.val_data or cfg.val_split:
            val_s = load_samples(cfg.val_data or cfg.data, cfg.data_format, split=cfg.val_split,
                                 ferplus_mode=cfg.ferplus_mode, drop_labels=cfg.drop_labels, **extra)
        elif cfg.val_fraction > 0:
            train_s, val_s = holdout_split(train_s, cfg.val_fraction, cfg.seed)
        else:
            raise ConfigError("no validation data: give --val-data, --val-split or a --val-fraction above 0")
        present = [s.label for s in train_s if s.label and s.label not in cfg.drop_labels]
        labels = resolve_labels(cfg.labels, present) if present or cfg.labels != "auto" else ()
    targets, target_specs = data_targets(cfg, train_s)
    if not targets and any(not s.label for s in train_s):
        raise ConfigError(f"{cfg.data or 'sources'}: some images have neither a label nor targets (give --targets)")
    train_s = filter_labels(train_s, labels, cfg.drop_labels, where=cfg.data)
    val_s = filter_labels(val_s, labels, cfg.drop_labels, where=cfg.val_data or cfg.data)
    train_s = stratified_subset(train_s, cfg.max_train_samples, cfg.seed)
    val_s = stratified_subset(val_s, cfg.max_val_samples, cfg.seed)
    tr_prep, tr_cache = prepare_samples(train_s, cfg.channels, cfg.on_bad, cfg.cache, cfg.progress, "checking train images")
    va_prep, va_cache = prepare_samples(val_s, cfg.channels, cfg.on_bad, cfg.cache, cfg.progress, "checking val images")
    soft = any(s.soft for s in tr_prep.samples)
    aug = AugmentConfig(crop_scale=(cfg.crop_scale, 1.0), hflip=cfg.hflip, rotation=cfg.rotation,
                        brightness=cfg.brightness, contrast=cfg.contrast, saturation=0.2 if cfg.channels == "rgb" else 0.0,
                        erasing=cfg.erasing, translate=cfg.translate, perspective=cfg.perspective, blur=cfg.blur,
                        jpeg=cfg.jpeg)
    if soft and targets:
        raise ConfigError("soft (FER+ vote) labels cannot be combined with continuous targets; use --ferplus-mode majority")
    tr_tf = scene_train_transform(size, mean, std, cfg.hflip) if cfg.input_kind == "scene" else train_transform(size, mean, std, aug)
    train_ds = EmotionDataset(tr_prep.samples, labels, tr_tf, cfg.channels, soft, tr_cache, targets=targets)
    val_ds = EmotionDataset(va_prep.samples, labels, eval_transform(size, mean, std, resize_mode=cfg.resolved_resize_mode),
                            cfg.channels, False, va_cache, targets=targets)
    labelled = [t for t in train_ds.targets if t >= 0]
    counts = {c: int(n) for c, n in zip(labels, np.bincount(labelled, minlength=len(labels)))}
    missing = [c for c, n in counts.items() if n == 0]
    if missing:
        raise ConfigError(f"labels {missing} have no training images in {cfg.data}; drop them (--drop-labels) or add data")
    describe = {"train": cfg.data or "sources", "val": cfg.val_data or f"{cfg.val_fraction:.0%} hold-out of train",
                "n_train": len(train_ds), "n_val": len(val_ds), "train_class_counts": counts,
                "skipped": len(tr_prep.skipped) + len(va_prep.skipped), "soft_targets": soft,
                **({"targets": target_specs, "train_target_counts": {t: int(sum(1 for s in tr_prep.samples if s.targets
                                                                                and (s.targets.get(t, float("nan")) == s.targets.get(t, float("nan")))))
                                                                    for t in targets}} if targets else {}),
                **(merged.describe if merged is not None else {})}
    specs = parse_sources(cfg.sources) if cfg.sources else []
    return DataBundle(labels, train_ds, val_ds, soft, tr_prep.skipped + va_prep.skipped, describe, specs,
                      tr_prep.native_side(), targets, target_specs)


def draw_weights(cfg: TrainConfig, data: DataBundle) -> np.ndarray | None:
    """Per-image draw weights from source shares or --class-balance sampler; None = uniform."""
    by_source = source_sample_weights(data.train.samples, data.sources) if data.sources else None
    if by_source is not None and cfg.class_balance == "sampler":
        raise ConfigError("per-source weights and --class-balance sampler both set the draws; use --class-balance loss")
    if cfg.class_balance == "sampler":
        if any(t < 0 for t in data.train.targets):
            raise ConfigError("--class-balance sampler draws by class, but some training images have none (targets only); "
                              "use --class-balance loss")
        counts = np.bincount(data.train.targets, minlength=len(data.labels)).astype(float)
        return 1.0 / counts[np.asarray(data.train.targets)]
    return by_source


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffling and worker RNGs, from (seed, epoch) alone: a resumed run redraws them exactly."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


def seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's RNGs in a loader worker from its torch seed (base seed drawn per epoch + worker id)."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def make_loaders(cfg: TrainConfig, data: DataBundle, device: torch.device, dist: Dist = Dist()) -> tuple[DataLoader, DataLoader]:
    common = dict(num_workers=cfg.workers, pin_memory=device.type == "cuda")
    sampler = None
    if dist.enabled:
        if cfg.class_balance == "sampler" or cfg.epoch_samples or any(s.weight is not None for s in data.sources):
            raise ConfigError("weighted draws (--class-balance sampler, --epoch-samples, source weights) are not supported with torchrun; "
                              "use --class-balance loss")
        from torch.utils.data.distributed import DistributedSampler

        # each process sees its own 1/world of the data every epoch (reshuffled by set_epoch)
        sampler = DistributedSampler(data.train, dist.world, dist.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    else:
        weights = draw_weights(cfg, data)
        if weights is not None or cfg.epoch_samples:
            # with replacement: each source or class gets its share of the draws, however small it is
            weights = np.ones(len(data.train)) if weights is None else weights
            sampler = WeightedRandomSampler(weights.tolist(), num_samples=cfg.epoch_samples or len(weights), replacement=True,
                                            generator=torch.Generator().manual_seed(cfg.seed))
    draws = cfg.epoch_samples or len(data.train)
    if cfg.epoch_samples and draws < cfg.batch_size:
        raise ConfigError(f"epoch_samples {cfg.epoch_samples} is less than one batch ({cfg.batch_size})")
    # not persistent: workers restart each epoch with seeds drawn from that epoch's generator (see epoch_seed)
    train = DataLoader(data.train, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=draws > cfg.batch_size,
                       generator=torch.Generator().manual_seed(cfg.seed), worker_init_fn=seed_worker, **common)
    val = DataLoader(data.val, batch_size=cfg.batch_size * 2, shuffle=False, persistent_workers=cfg.workers > 0, **common)
    return train, val


# ---------------------------------------------------------------------------------------------- model and optimiser

def layer_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped stem-to-head with timm's group matcher (the unit of gradual unfreezing)."""
    groups = group_parameters(model, model.group_matcher(coarse=False))
    return [list(names) for _, names in sorted(groups.items(), key=lambda kv: kv[0])]


def set_trainable(model: nn.Module, cfg: TrainConfig, epoch: int) -> int:
    """Freeze according to the strategy for this epoch; returns the number of trainable parameters."""
    head = {n for n, _ in model.get_classifier().named_parameters(prefix=_classifier_name(model))}
    if cfg.strategy == "linear_probe":
        trainable = head
    elif cfg.strategy == "gradual":
        groups = layer_groups(model)
        n_open = 1 + epoch // max(cfg.unfreeze_every, 1)
        trainable = set(head)
        for names in groups[::-1][:n_open]:
            trainable.update(names)
    else:
        trainable = {n for n, _ in model.named_parameters()}
    if cfg.freeze:
        names = [n for n, _ in model.named_parameters()]
        unmatched = [f for f in cfg.freeze if not any(n == f or n.startswith(f.rstrip(".") + ".") for n in names)]
        if unmatched:
            tops = sorted({n.split(".")[0] for n in names})
            raise ConfigError(f"freeze: {unmatched} match no parameter of {cfg.backbone}; its top-level modules are {tops}")
        trainable = {n for n in trainable if not any(n == f or n.startswith(f.rstrip(".") + ".") for f in cfg.freeze)}
    count = 0
    for n, p in model.named_parameters():
        p.requires_grad_(n in trainable)
        count += p.numel() if n in trainable else 0
    return count


def _classifier_name(model: nn.Module) -> str:
    target = model.get_classifier()
    for name, mod in model.named_modules():
        if mod is target:
            return name
    raise ConfigError(f"{type(model).__name__}: cannot find its classifier")


def apply_train_mode(model: nn.Module, cfg: TrainConfig) -> None:
    """train() for what learns; frozen parts stay in eval so their BatchNorm statistics keep ImageNet values."""
    model.train()
    for mod in model.modules():
        params = list(mod.parameters(recurse=False))
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            mod.eval()


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = {"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}
    layer_decay = cfg.layer_decay if cfg.strategy == "layerwise" else None
    opt = create_optimizer_v2(model, opt=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, layer_decay=layer_decay, **kwargs)
    for g in opt.param_groups:
        # timm's scheduler schedules the base lr (initial_lr) and multiplies each group's lr_scale (layer decay) in
        g["initial_lr"] = cfg.lr
        g["lr"] = cfg.lr * g.get("lr_scale", 1.0)
    return opt


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> CosineLRScheduler:
    """timm's cosine schedule per update: linear warm-up over `warmup_epochs`, then cosine decay to `min_lr` (scaled by
    each group's lr_scale like the peak). Stateless in the update count: `step_update(n)` gives update n's lr."""
    total = max(max(cfg.epochs, 1) * steps_per_epoch, 1)  # epochs 0 (a fitted head): a schedule never stepped
    warmup = min(int(cfg.warmup_epochs * steps_per_epoch), total - 1)
    return CosineLRScheduler(optimizer, t_initial=max(total - warmup, 1), lr_min=cfg.min_lr, warmup_t=warmup,
                             warmup_lr_init=cfg.lr / max(warmup, 1) if warmup else 0.0, warmup_prefix=True, cycle_limit=1,
                             t_in_epochs=False)


MAX_SKIPPED_LINES = 20


def print_skipped(skipped: list[Skipped], seen: set[str] | None = None, limit: int = MAX_SKIPPED_LINES) -> None:
    """Name each skipped image on stderr (`path: problem`), at most `limit` lines; `seen` drops those named before."""
    new = [s for s in skipped if seen is None or s.where not in seen]
    if seen is not None:
        seen.update(s.where for s in new)
    for s in new[:limit]:
        print(f"skipped {s.where}: {s.problem}", file=sys.stderr)
    if len(new) > limit:
        print(f"... and {len(new) - limit} more skipped image(s)", file=sys.stderr)


def class_weights(targets: list[int], k: int) -> torch.Tensor:
    """Inverse class frequency, scaled so that the weights average 1 over the training images."""
    counts = np.bincount(targets, minlength=k).astype(float)
    w = counts.sum() / (k * np.maximum(counts, 1))
    return torch.tensor(w, dtype=torch.float32)


def make_criterion(cfg: TrainConfig, targets: list[int], k: int) -> nn.CrossEntropyLoss:
    """Cross-entropy with label smoothing, class-weighted under --class-balance loss; it takes hard or soft targets."""
    weight = class_weights(targets, k) if cfg.class_balance == "loss" else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def batch_mixer(cfg: TrainConfig, k: int, soft: bool) -> v2.RandomChoice | None:
    """MixUp and/or CutMix on whole batches (one of them per batch), turning hard targets into mixed soft ones."""
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    if soft:
        raise ConfigError("mixup/cutmix need hard labels; use --ferplus-mode majority or turn them off")
    ops = ([v2.MixUp(alpha=cfg.mixup, num_classes=k)] if cfg.mixup > 0 else []) + \
          ([v2.CutMix(alpha=cfg.cutmix, num_classes=k)] if cfg.cutmix > 0 else [])
    return v2.RandomChoice(ops)


# ---------------------------------------------------------------------------------------------- run directory

def write_log(run: Path, history: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields or LOG_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run / "log.csv", buf.getvalue())


def plot_curves(run: Path, history: list[dict[str, Any]], curves: list[tuple[str, str]] | None = None) -> None:
    from ..plotting import new_figure

    curves = curves or [("train_accuracy", "train accuracy"), ("val_accuracy", "val accuracy"), ("val_macro_f1", "val macro-F1")]
    ep = [h["epoch"] for h in history]
    fig = new_figure(figsize=(10, 3.6), dpi=110)
    a, b = fig.subplots(1, 2)
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["val_loss"] for h in history], "o-", label="val")
    a.set_xlabel("epoch"); a.set_ylabel("loss"); a.legend(); a.grid(alpha=0.3)
    for i, (key, legend) in enumerate(curves):
        b.plot(ep, [h.get(key, float("nan")) for h in history], "o-" if i < 2 else "s--", label=legend)
    b.set_xlabel("epoch"); b.set_ylim(0 if all(not k.endswith("_ccc") for k, _ in curves) else -0.2, 1); b.legend(); b.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(run / "curves.png", lambda p: fig.savefig(p, format="png"))


def monitor_value(m: Metrics, name: str) -> float:
    return -m.loss if name == "loss" else float(getattr(m, name))


# ---------------------------------------------------------------------------------------------- the loop

def resume_changes(cfg: TrainConfig, run: Path) -> dict[str, dict[str, Any]]:
    """Options that differ from the run's config.yaml; refused unless --allow-config-change (and never for those that
    shape the model)."""
    saved = saved_run_config(run)
    if saved is None:
        return {}
    changes = config_changes(saved, cfg)
    fixed = {k: v for k, v in changes.items() if k in FIXED_ON_RESUME}
    if fixed:
        raise ConfigError(f"{run}: --resume cannot change {describe_changes(fixed)} (they shape the model or its optimiser); "
                          "start a new run, e.g. from this one's checkpoint with --pretrained")
    if changes and not cfg.allow_config_change:
        raise ConfigError(f"{run}: --resume with options that differ from its config.yaml: {describe_changes(changes)}; drop "
                          "them to continue as started, or pass --allow-config-change to go on under the new ones")
    return changes


def record_config_change(run: Path, from_epoch: int, changes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Append {from_epoch, changes} to config_history.json (merged with an entry for the same epoch) and return it all."""
    import json

    path = run / "config_history.json"
    history = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    if changes:
        if history and history[-1]["from_epoch"] == from_epoch:  # resumed again before that epoch finished
            merged = {**history[-1]["changes"]}
            for k, c in changes.items():
                merged[k] = {"old": merged[k]["old"] if k in merged else c["old"], "new": c["new"]}
            history[-1]["changes"] = {k: c for k, c in merged.items() if c["old"] != c["new"]}
        else:
            history.append({"from_epoch": from_epoch, "changes": changes})
        atomic_write_json(path, history)
    return history


def train(cfg: TrainConfig, report_skipped: bool = True) -> TrainResult:
    """Fine-tune `cfg.backbone` on `cfg.data`; see the module docstring for what lands in `cfg.out`.

    `report_skipped`: name the skipped bad images on stderr (cross-validation names them once itself)."""
    cfg.validate()
    run, cfg.resume = open_run(cfg.out, "train_state.safetensors", cfg.resume)
    state_path = run / "train_state.safetensors"
    check_model_choice(cfg.backbone, cfg.pretrained)  # before anything is written
    changes = resume_changes(cfg, run) if cfg.resume else {}
    dist = setup_distributed(cfg.device)
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:
            (run / "config_history.json").unlink(missing_ok=True)
            atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed, cfg.deterministic)
    device = pick_device(cfg.device, dist)

    mcfg = get_model_config(cfg.backbone)
    size = cfg.img_size or mcfg.input_size
    in_chans = 1 if cfg.channels == "grayscale" else 3
    mean, std = normalisation(cfg.backbone, cfg.pretrained)
    mean, std = (mean[:1], std[:1]) if in_chans == 1 else (mean, std)
    data = build_data(cfg, size, mean, std)
    if report_skipped and dist.main:
        print_skipped(data.skipped)
    if cfg.monitor_source and cfg.monitor_source not in {s.dataset for s in data.val.samples}:
        raise ConfigError(f"monitor_source {cfg.monitor_source!r}: no validation images from that source "
                          f"(sources: {sorted({s.dataset for s in data.val.samples})})")
    k = len(data.labels)
    task: Task = select_task(data.labels, data.targets, cfg.loss)
    task.check_config(cfg)
    head_spec = None
    if cfg.head != "linear":
        try:
            levels = [int(v) for v in cfg.fusion_levels]
        except ValueError:
            raise ConfigError(f"fusion_levels: {cfg.fusion_levels} must be integers") from None
        head_spec = {"type": cfg.head, "levels": levels, "dim": cfg.fusion_dim}
    model = create_model(cfg.backbone, k + len(data.targets), cfg.pretrained, img_size=size, in_chans=in_chans, drop_rate=cfg.drop_rate,
                         labels=list(data.labels) + list(data.targets), head=head_spec).to(device)
    remap = getattr(model, "head_remap", None)
    cuda = device.type == "cuda"
    if cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader = make_loaders(cfg, data, device, dist)
    optimizer = build_optimizer(model, cfg)
    steps_per_epoch = max(len(train_loader), 1)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    criterion = task.criterion(cfg, data.train.targets).to(device)
    mixer = batch_mixer(cfg, k, data.soft)
    ema = timm.utils.ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and cfg.amp)

    history: list[dict[str, Any]] = []
    config_history: list[dict[str, Any]] = []
    start_epoch, best_score, best_epoch, bad_epochs = 0, -math.inf, -1, 0
    if cfg.resume:
        st = load_state(state_path)
        model.load_state_dict(st["model"])
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        optimizer.load_state_dict(st["optimizer"])
        if changes:  # the new lr, weight decay... take effect; moments and step counts carry on
            for g, f in zip(optimizer.param_groups, fresh):
                g.update(f)
        elif "t_initial" in st.get("scheduler", {}):  # (a state from before timm's scheduler holds LambdaLR's)
            scheduler.load_state_dict(st["scheduler"])
        if ema is not None and "ema" in st:
            ema.module.load_state_dict(st["ema"])
        set_rng_state(st["rng"])
        prog = st["progress"]
        start_epoch, best_score, best_epoch, bad_epochs = prog["epoch"] + 1, prog["best_score"], prog["best_epoch"], prog["bad_epochs"]
        history = list(st["history"])
        if dist.main:
            config_history = record_config_change(run, start_epoch + 1, changes)
            if changes:
                atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
                print(f"{run}: resuming at epoch {start_epoch + 1} under changed options: {describe_changes(changes)} "
                      "(recorded in config_history.json)", file=sys.stderr)
            write_log(run, history, *((task.log_fields(),) if data.targets else ()))

    card = ModelCard(backbone=cfg.backbone, labels=list(data.labels), input_size=size, mean=list(mean), std=list(std),
                     channels=cfg.channels, in_chans=in_chans, license=mcfg.license, targets=data.target_specs,
                     input_kind=cfg.input_kind, resize_mode=cfg.resolved_resize_mode,
                     source_size=(cfg.source_size if cfg.source_size >= 0 else data.native_side) if cfg.input_kind != "scene" else 0,
                     head=model.head_spec() if hasattr(model, "head_spec") else {"type": "linear"},
                     training={"data": data.describe, "pretrained": cfg.pretrained, "epochs": cfg.epochs, "strategy": cfg.strategy,
                               **({"head_init": cfg.head_init} if cfg.head_init != "default" else {}),
                               "optimizer": cfg.optimizer, "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed,
                               **({"head_remap": remap.__dict__} if remap is not None else {}),
                               **({"config_history": config_history} if config_history else {})})
    stopped_early = False
    epoch = start_epoch - 1
    show = cfg.progress and dist.main
    if cfg.head_init == "fit" and not cfg.resume:
        fit = fit_head(model, eval_view(data.train, data.val.transform), k, data.targets, device, loss=cfg.loss,
                       balanced=cfg.class_balance != "none", weights=draw_weights(cfg, data), show=show)
        card.training["head_fit"] = fit.describe()
        if show:
            tqdm.write(f"head fitted in closed form on {fit.n_rows} feature rows: {fit.describe()}")
    sgd = cfg.epochs > 0  # epochs 0 (with --head-init fit): the fitted head is validated and saved as it is
    n_epochs = max(cfg.epochs, 1)
    for epoch in range(start_epoch, n_epochs):
        trainable = set_trainable(model, cfg, epoch)
        apply_train_mode(model, cfg)
        net = model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # wrapped per epoch: DDP fixes its set of trainable parameters when built, and gradual unfreezing changes it
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
            train_loader.sampler.set_epoch(epoch)
        elif isinstance(train_loader.sampler, WeightedRandomSampler):
            train_loader.sampler.generator.manual_seed(cfg.seed + epoch)  # each epoch's draws, the same after a resume
        train_loader.generator.manual_seed(epoch_seed(cfg.seed, epoch))  # shuffling and worker seeds of this epoch
        t0, loss_sum, correct, seen, labelled = time.perf_counter(), 0.0, 0, 0, 0
        lr_start = lr_end = None
        bar = progress(train_loader if sgd else [], show and sgd, desc=f"epoch {epoch + 1}/{n_epochs}", unit="batch")
        for step, (x, y) in enumerate(bar):
            scheduler.step_update(epoch * steps_per_epoch + step)  # this update's lr, from the update count alone
            lr_end = optimizer.param_groups[-1]["lr"]
            lr_start = lr_end if lr_start is None else lr_start
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cuda and cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y_true = y
            if mixer is not None:
                x, y = mixer(x, y)
            with autocast:
                logits = net(x)
                loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update(model)
            n = x.shape[0]
            loss_sum += float(loss.detach()) * n
            hits, counted = task.train_hits(logits, y_true)
            correct += hits
            labelled += counted
            seen += n
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / max(labelled, 1):.3f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        train_secs = time.perf_counter() - t0
        loss_sum, correct, seen, labelled = all_sum([loss_sum, correct, seen, labelled], dist, device)
        eval_model = ema.module if ema is not None else model
        v = task.validate(eval_model, val_loader, device, cfg.tta)
        m = v.classes
        row = {"epoch": epoch + 1, "train_loss": round(loss_sum / max(seen, 1), 5) if seen else None,
               "train_accuracy": round(correct / max(labelled, 1), 5) if k and seen else None, **v.row(),
               "lr_start": lr_start, "lr_end": lr_end, "trainable_params": trainable,
               "seconds": round(time.perf_counter() - t0, 2), "images_per_second": round(seen / max(train_secs, 1e-9), 1)}
        history.append(row)
        card.metrics = {"epoch": epoch + 1, **v.card_metrics()}
        per_source = {}
        if data.sources:
            with sklearn_notes():
                per_source = task.per_source(v, np.array([s.dataset for s in data.val.samples]), [src.name for src in data.sources])
        if per_source:
            card.metrics["val_per_source"] = per_source
            row["per_source"] = per_source
        if cfg.monitor_source:
            key = cfg.monitor if cfg.monitor in per_source.get(cfg.monitor_source, {}) else "ccc"
            if key not in per_source.get(cfg.monitor_source, {}):
                raise ConfigError(f"monitor_source {cfg.monitor_source!r} has no {cfg.monitor} score")
            score = float(per_source[cfg.monitor_source][key])
        else:
            score = task.monitor(v, cfg.monitor)
        improved = score > best_score
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch + 1, 0
        else:
            bad_epochs += 1
        if not dist.main:  # every process validated the same weights; rank 0 alone writes the run folder
            barrier(dist)
            if cfg.patience and bad_epochs >= cfg.patience:
                stopped_early = True
                break
            continue
        # Order matters for kill -9: weights first, then the train state (the commit point), then derived files
        # (log, plots), which a resume rewrites from the state's history.
        save_checkpoint(run / "last", eval_model, card)
        if improved:
            save_checkpoint(run / "best", eval_model, card)
        parts = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": rng_state(), "history": history,
                 "progress": {"epoch": epoch, "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad_epochs}}
        if ema is not None:
            parts["ema"] = ema.module.state_dict()
        save_state(state_path, parts)
        extra = (task.log_fields(),) if data.targets else ()  # the classic call for classifiers (tests patch these)
        write_log(run, history, *extra)
        plot_curves(run, history, *((task.curves(),) if data.targets else ()))
        if improved and m is not None:
            plot_confusion(m, run / "val_confusion.png", title=f"val, epoch {epoch + 1}")
        barrier(dist)
        if cfg.progress:
            tqdm.write(f"epoch {epoch + 1}/{n_epochs}  {task.describe(row)}  "
                       f"{row['images_per_second']:.0f} img/s" + ("  *best" if improved else ""))
        if cfg.patience and bad_epochs >= cfg.patience:
            stopped_early = True
            break
    best = next((h for h in history if h["epoch"] == best_epoch), {})
    result = TrainResult(run, best_epoch, {key: val for key, val in best.items() if key.startswith("val_")}, len(history), history,
                         data.skipped, stopped_early)
    if dist.enabled:
        import torch.distributed as tdist

        tdist.destroy_process_group()
    if not dist.main:
        return result
    atomic_write_json(run / "summary.json", {"kind": kinds.TRAIN, "best_epoch": best_epoch, "monitor": cfg.monitor, "monitor_source": cfg.monitor_source,
                                             "best": result.best_metrics,
                                             **({"best_per_source": best["per_source"]} if "per_source" in best else {}),
                                             "epochs_run": len(history), "stopped_early": stopped_early, "data": data.describe,
                                             "config_history": config_history,
                                             "skipped": [s.__dict__ for s in data.skipped]})
    return result
