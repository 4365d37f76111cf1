"""Training, resuming, evaluating and cross-validating sequence models (`emotune seq train|evaluate|cv`).

A run folder holds config.yaml, log.csv, best/last checkpoints (safetensors + bound card), train_state.safetensors
(resume after a kill: the head's weights, the optimiser, RNG, history) and summary.json. With a frozen encoder the
per-frame embeddings come from the EmbeddingCache and only the temporal head trains: seconds per epoch on a CPU.
With `finetune`, the encoder trains too, end to end on frame windows (preprocessed frames held in memory).
"""
from __future__ import annotations

import csv
import io
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..errors import ConfigError
from ..io import atomic_write_json, atomic_write_text, check_writable_dir
from .data import SequenceData, gather, holdout_videos, load_sequences, make_windows, video_folds, warn
from .embed import EmbeddingCache, FrameEncoder, embed_videos, load_encoder, read_frame
from .heads import TemporalNet, head_config, head_to_dict
from .model import SequenceModel, load_sequence_model, predict_embeddings
from .task import SequenceTask, sequence_task

SEQ_KIND = "emotune-sequence-train/1"
SEQ_CV_KIND = "emotune-sequence-cv/1"
FIXED_ON_RESUME = ("encoder", "encoder_weights", "finetune", "head", "hidden", "layers", "channels", "kernel", "window",
                   "targets", "labels", "data", "data_format", "seed", "split_by", "val_fraction")


@dataclass
class SeqConfig:
    data: str = ""
    data_format: str = "auto"  # affwild2 | afewva | manifest | auto
    val_data: str | None = None
    val_fraction: float = 0.25
    split_by: str = "subject"  # video | subject: what never straddles a split
    targets: tuple[str, ...] = ()
    target_scale: str | None = None
    labels: str = "auto"
    encoder: str = "default"  # default | emotune run/card | timm:NAME
    encoder_weights: str | None = None
    finetune: bool = False
    head: str = "gru"
    hidden: int | None = None
    layers: int | None = None
    channels: int | None = None
    kernel: int | None = None
    dropout: float | None = None
    window: int = 16
    stride: int = 8
    max_gap: int = 5
    min_frames: int = 1
    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    encoder_lr: float = 1e-4
    weight_decay: float = 1e-4
    loss: str = "ccc"
    class_weight: float = 1.0
    target_weight: float = 1.0
    label_smoothing: float = 0.0
    class_balance: str = "none"
    monitor: str = "auto"  # auto: ccc with targets, else macro_f1
    patience: int = 0
    seed: int = 0
    out: str = "runs/seq"
    resume: bool = False
    cache_dir: str | None = None  # default: $EMOTUNE_CACHE/embeddings; "none": no cache
    device: str = "cpu"
    threads: int = 0
    frame_batch: int = 64
    progress: bool = True

    def head_config(self):
        return head_config(self.head, hidden=self.hidden, layers=self.layers, channels=self.channels, kernel=self.kernel,
                           dropout=self.dropout)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SeqConfig":
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"unknown sequence training option(s) {bad}")
        d = dict(d)
        if isinstance(d.get("targets"), str):
            d["targets"] = tuple(t for t in d["targets"].split(",") if t.strip())
        elif d.get("targets") is not None:
            d["targets"] = tuple(d["targets"])
        return cls(**d)

    def check(self) -> None:
        if not self.data:
            raise ConfigError("give --data (an Aff-Wild2 or AFEW-VA folder, or a sequence manifest CSV)")
        if self.window < 1 or self.stride < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("--window, --stride, --epochs and --batch-size must be at least 1")
        if self.stride > self.window:
            raise ConfigError(f"--stride {self.stride} is longer than --window {self.window}: frames would be skipped")
        if not 0 < self.val_fraction < 1 and not self.val_data:
            raise ConfigError(f"--val-fraction {self.val_fraction}: give a fraction in (0, 1) or --val-data")
        self.head_config()


# ---------------------------------------------------------------------------------------------- pieces
def cache_root(cfg: SeqConfig) -> Path | None:
    if cfg.cache_dir in ("none", ""):
        return None
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    from ..inference.backend import cache_dir

    return cache_dir() / "embeddings"


def encoder_identity(enc: FrameEncoder) -> dict[str, Any]:
    return {k: enc.spec.get(k) for k in ("source", "backbone", "input_size", "channels", "source_size", "weights_sha256")}


def frame_tensors(enc: FrameEncoder, videos) -> list[torch.Tensor]:
    """Fine-tuning: every video's preprocessed frames (n x C x S x S), read once."""
    prep = enc.preprocess()
    return [torch.from_numpy(prep.batch([read_frame(p, b, w) for p, b, w in zip(v.paths, v.boxes or [None] * len(v), v.where)]))
            for v in videos]


def monitor_name(cfg: SeqConfig, task: SequenceTask) -> str:
    if cfg.monitor != "auto":
        return cfg.monitor
    return "ccc" if task.targets else "macro_f1"


def score_videos(task: SequenceTask, net: TemporalNet, feats, videos, window: int) -> tuple[Any, dict[str, float], list[np.ndarray]]:
    """(Validation over all frames, per-video scores, per-video prediction arrays) of a temporal head."""
    from ..models.heads import predictions

    preds = [predictions(torch.from_numpy(predict_embeddings(net, f, window)), task.k).numpy() for f in feats]
    ys = [v.y() for v in videos]
    v = task.score(np.concatenate(preds), np.concatenate(ys))
    return v, task.video_scores(preds, ys), preds


def write_log(run: Path, history: list[dict[str, Any]]) -> None:
    cols: list[str] = []
    for h in history:
        cols += [k for k in h if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run / "log.csv", buf.getvalue())


# ---------------------------------------------------------------------------------------------- fitting
@dataclass
class FitResult:
    run: Path
    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)


def fit(cfg: SeqConfig, data: SequenceData, enc: FrameEncoder, feats: list[np.ndarray] | None, tr: list[int], va: list[int],
        run: Path) -> FitResult:
    """Train a temporal head (and, with finetune, the encoder) on videos `tr`, select on videos `va`, in `run`."""
    from ..models import ModelCard, save_checkpoint
    from ..train.state import load_state, rng_state, save_state, set_rng_state

    torch.manual_seed(cfg.seed)
    task = sequence_task(data.labels, data.targets, cfg.loss)
    videos = data.videos
    hcfg = cfg.head_config()
    net = TemporalNet(hcfg, enc.dim, task.k + len(task.targets))
    model = SequenceModel(enc, net)
    train_v = [videos[i] for i in tr]
    criterion = task.criterion(cfg, [int(c) for v in train_v for c in v.labels])
    params = [{"params": net.parameters(), "lr": cfg.lr}]
    if cfg.finetune:
        params.append({"params": enc.parameters(), "lr": cfg.encoder_lr})
    else:
        enc.requires_grad_(False)
    opt = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
    windows = make_windows(train_v, cfg.window, cfg.stride, cfg.max_gap)
    if not windows:
        raise ConfigError(f"{cfg.data}: no training window")
    frames = frame_tensors(enc, videos) if cfg.finetune else None
    ys = [v.y() for v in train_v]
    card = ModelCard(backbone=enc.spec["backbone"], labels=list(data.labels), input_size=enc.spec["input_size"],
                     mean=list(enc.spec["mean"]), std=list(enc.spec["std"]), channels=enc.spec["channels"],
                     in_chans=enc.spec["in_chans"], source_size=enc.spec.get("source_size") or 0, framing=enc.spec["framing"],
                     resize_mode=enc.spec.get("resize_mode") or "squash", targets=data.target_specs,
                     temporal={"head": head_to_dict(hcfg), "window": cfg.window, "stride": cfg.stride, "embed_dim": enc.dim,
                               "finetune": cfg.finetune, "causal": True,
                               "encoder": {k: v for k, v in enc.spec.items() if k not in ("source",)} | {"source": str(enc.spec["source"])}},
                     training={"data": cfg.data, "videos_train": [videos[i].name for i in tr], "videos_val": [videos[i].name for i in va],
                               "split_by": cfg.split_by, "epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size,
                               "loss": cfg.loss, "seed": cfg.seed, "encoder_key": enc.key() if not cfg.finetune else None})
    state_path = run / "train_state.safetensors"
    history: list[dict[str, Any]] = []
    start, best_score, best_epoch, bad = 0, -math.inf, -1, 0
    if cfg.resume and state_path.is_file():
        st = load_state(state_path)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        set_rng_state(st["rng"])
        p = st["progress"]
        start, best_score, best_epoch, bad, history = p["epoch"] + 1, p["best_score"], p["best_epoch"], p["bad_epochs"], list(st["history"])
    mon = monitor_name(cfg, task)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        net.train()
        enc.train(cfg.finetune)
        order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)).tolist()
        loss_sum, seen = 0.0, 0
        for b in range(0, len(order), cfg.batch_size):
            batch = [windows[i] for i in order[b:b + cfg.batch_size]]
            if cfg.finetune:
                x = torch.zeros(len(batch), cfg.window, *frames[0].shape[1:])
                _, y, m = gather(batch, [np.zeros((len(v), 1), np.float32) for v in train_v], ys, cfg.window)
                for i, w in enumerate(batch):
                    x[i, :w.length] = frames[tr[w.video]][w.start:w.start + w.length]
                out = model(x)
            else:
                x, y, m = gather(batch, [feats[i] for i in tr], ys, cfg.window)
                out = net(torch.from_numpy(x))
            loss = criterion(out, torch.from_numpy(y).float(), torch.from_numpy(m))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(batch)
            seen += len(batch)
        val_feats = ([embed_with(enc, frames[i]) for i in va] if cfg.finetune else [feats[i] for i in va])
        v, per_video, _ = score_videos(task, net, val_feats, [videos[i] for i in va], cfg.window)
        row = {"epoch": epoch + 1, "train_loss": round(loss_sum / max(seen, 1), 5), **v.row(), **{f"val_{k}": x for k, x in per_video.items()},
               "seconds": round(time.perf_counter() - t0, 2)}
        history.append(row)
        score = task.monitor(v, mon) if mon != "video_ccc" else per_video.get("video_ccc", float("nan"))
        improved = score > best_score
        if improved:
            best_score, best_epoch, bad = score, epoch + 1, 0
        else:
            bad += 1
        card.metrics = {"epoch": epoch + 1, **v.card_metrics(), "val_video": per_video}
        save_checkpoint(run / "last", model, card)
        if improved:
            save_checkpoint(run / "best", model, card)
        save_state(state_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(), "history": history,
                                "progress": {"epoch": epoch, "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad}})
        write_log(run, history)
        if cfg.progress:
            print(f"epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}"
                  + "".join(f"  {k} {row[k]:.4f}" for k in ("val_ccc", "val_video_ccc", "val_macro_f1") if k in row)
                  + ("  *best" if improved else ""), file=sys.stderr)
        if cfg.patience and bad >= cfg.patience:
            break
    best = next((h for h in history if h["epoch"] == best_epoch), {})
    return FitResult(run, best_epoch, {k: x for k, x in best.items() if k.startswith("val_")}, history)


@torch.no_grad()
def embed_with(enc: FrameEncoder, frames: torch.Tensor, batch: int = 64) -> np.ndarray:
    enc.eval()
    return torch.cat([enc(frames[i:i + batch]) for i in range(0, len(frames), batch)]).numpy() if len(frames) else np.zeros((0, enc.dim), np.float32)


def prepare(cfg: SeqConfig) -> tuple[SequenceData, FrameEncoder, list[np.ndarray] | None, EmbeddingCache | None]:
    """Read the videos, load the encoder, and (frozen encoder) embed every frame through the cache."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_sequences(cfg.data, cfg.data_format, cfg.targets, cfg.target_scale, cfg.labels, cfg.min_frames)
    warn(data.notes)
    enc = load_encoder(cfg.encoder, cfg.encoder_weights)
    if cfg.finetune:
        return data, enc, None, None
    cache = EmbeddingCache(cache_root(cfg), enc.key(), encoder_identity(enc))
    feats = embed_videos(enc, data.videos, cache, cfg.frame_batch, cfg.device, cfg.progress)
    return data, enc, feats, cache


def start_run(cfg: SeqConfig) -> Path:
    cfg.check()
    run = check_writable_dir(cfg.out, "--out")
    state = run / "train_state.safetensors"
    if state.is_file() and not cfg.resume:
        raise ConfigError(f"{run} already holds a run; pass --resume to continue it or choose another --out")
    if cfg.resume and (run / "config.yaml").is_file():
        saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
        changed = [k for k in FIXED_ON_RESUME if k in saved and saved[k] != cfg.to_dict()[k]]
        if changed:
            raise ConfigError(f"{run}: --resume cannot change {', '.join(changed)} (they shape the model or its data)")
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run


def train_sequence(cfg: SeqConfig) -> FitResult:
    """Hold-out training (see the module doc); the split keeps every video (or subject) on one side."""
    run = start_run(cfg)
    data, enc, feats, cache = prepare(cfg)
    if cfg.val_data:
        val = load_sequences(cfg.val_data, cfg.data_format, cfg.targets, cfg.target_scale, ",".join(data.labels) or cfg.labels, cfg.min_frames)
        if val.targets != data.targets:
            raise ConfigError(f"--val-data {cfg.val_data}: targets {list(val.targets)} differ from the training data's {list(data.targets)}")
        tr, va = list(range(len(data.videos))), list(range(len(data.videos), len(data.videos) + len(val.videos)))
        data = SequenceData(data.videos + val.videos, data.labels, data.targets, data.target_specs, data.notes + val.notes)
        if feats is not None:
            feats = feats + embed_videos(enc, val.videos, cache, cfg.frame_batch, cfg.device, cfg.progress)
    else:
        tr, va = holdout_videos(data.videos, cfg.val_fraction, cfg.split_by, cfg.seed)
    res = fit(cfg, data, enc, feats, tr, va, run)
    atomic_write_json(run / "summary.json", {"kind": SEQ_KIND, "best_epoch": res.best_epoch, "best": res.best,
                                             "epochs_run": len(res.history), "videos": len(data.videos),
                                             "train_videos": len(tr), "val_videos": len(va),
                                             "cache": None if cache is None else {"key": cache.key, "hits": cache.hits, "misses": cache.misses},
                                             "notes": data.notes})
    return res


def cv_sequence(cfg: SeqConfig, folds: int) -> dict[str, Any]:
    """k-fold cross-validation by video or subject: each fold trains on the others (selecting on a hold-out of
    them, by the same grouping) and is scored on the held-out fold; cv.json has per-fold and mean +- std scores."""
    run = start_run(cfg)
    data, enc, feats, cache = prepare(cfg)
    if feats is None:
        raise ConfigError("--folds with --finetune is not supported; cross-validate the frozen-encoder model")
    rows = []
    for i, (train_idx, test_idx) in enumerate(video_folds(data.videos, folds, cfg.split_by, cfg.seed)):
        sub = [data.videos[j] for j in train_idx]
        tr_i, va_i = holdout_videos(sub, cfg.val_fraction, cfg.split_by, cfg.seed)
        fold_dir = run / f"fold_{i + 1}"
        fold_dir.mkdir(exist_ok=True)
        fold_cfg = SeqConfig(**{**cfg.__dict__, "out": str(fold_dir), "progress": False, "resume": cfg.resume})
        res = fit(fold_cfg, data, enc, feats, [train_idx[j] for j in tr_i], [train_idx[j] for j in va_i], fold_dir)
        model, card = load_sequence_model(fold_dir)
        task = sequence_task(data.labels, data.targets, cfg.loss)
        v, per_video, _ = score_videos(task, model.temporal, [feats[j] for j in test_idx], [data.videos[j] for j in test_idx], cfg.window)
        rows.append({"fold": i + 1, "held_out_videos": [data.videos[j].name for j in test_idx], "best_epoch": res.best_epoch,
                     **{f"test_{k}": x for k, x in v.row().items() if k != "val_loss"}, **{f"test_{k}": x for k, x in per_video.items()}})
    keys = [k for k in rows[0] if k.startswith("test_")]
    summary = {k: {"mean": round(float(np.nanmean([r[k] for r in rows])), 4), "std": round(float(np.nanstd([r[k] for r in rows])), 4)}
               for k in keys}
    out = {"kind": SEQ_CV_KIND, "task": "sequence", "folds": rows, "summary": summary,
           "split_by": cfg.split_by}
    atomic_write_json(run / "cv.json", out)
    return out


def evaluate_sequence(model_path: str | Path, data_path: str | Path, data_format: str = "auto", out: str | Path | None = None,
                      delay: int = 0, cache_dir: str | None = None) -> dict[str, Any]:
    """Score a trained sequence model on videos: per-frame CCC/RMSE/... and class metrics over all frames, and the
    per-video CCC averaged over videos; eval.json (and eval.md) in `out`."""
    from ..models.heads import predictions
    from ..tables import render_table

    model, card = load_sequence_model(model_path)
    targets = tuple(card.target_names)
    data = load_sequences(data_path, data_format, targets, None, ",".join(card.labels) if card.labels else "auto")
    warn(data.notes)
    if tuple(data.targets) != targets:
        raise ConfigError(f"{data_path}: targets {list(data.targets)} differ from the model's {list(targets)}")
    enc = model.encoder
    cfg = SeqConfig(cache_dir=cache_dir)
    cache = EmbeddingCache(cache_root(cfg), enc.key(), encoder_identity(enc))
    feats = embed_videos(enc, data.videos, cache, show=False)
    task = sequence_task(card.labels, targets)
    window = int(card.temporal["window"])
    preds = [predictions(torch.from_numpy(predict_embeddings(model.temporal, f, window, delay)), task.k).numpy() for f in feats]
    ys = [v.y() for v in data.videos]
    v = task.score(np.concatenate(preds), np.concatenate(ys), ci=True)
    per_video = task.video_scores(preds, ys)
    result = {"kind": "emotune-sequence-eval/1", "model": str(model_path), "data": str(data_path), "videos": len(data.videos),
              "frames": int(sum(len(x) for x in data.videos)), "delay": delay, **v.card_metrics(), "video": per_video}
    if out:
        outp = check_writable_dir(out, "--out")
        outp.mkdir(parents=True, exist_ok=True)
        atomic_write_json(outp / "eval.json", result)
        lines = [f"# Sequence model evaluation\n\nmodel `{model_path}`, data `{data_path}`: {result['videos']} videos, "
                 f"{result['frames']} frames, delay {delay}\n"]
        if v.regression is not None and targets:
            lines.append(v.regression.to_markdown())
            lines.append("\n" + render_table(["target", "per-video CCC (mean over videos)"],
                                             [[t, per_video[f"video_{t}_ccc"]] for t in targets], "md"))
        if v.classes is not None:
            lines.append("\n" + render_table(["accuracy", "balanced accuracy", "macro-F1"],
                                             [[round(v.classes.accuracy, 4), round(v.classes.balanced_accuracy, 4), round(v.classes.macro_f1, 4)]], "md"))
        atomic_write_text(outp / "eval.md", "\n".join(lines) + "\n")
    return result
