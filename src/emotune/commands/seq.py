"""`emotune seq`: sequence (temporal) models over face video: train, cv, evaluate, export."""
from __future__ import annotations

import argparse
import json


def _train_options(p: argparse.ArgumentParser) -> None:
    from ..temporal.heads import TEMPORAL_HEADS

    p.add_argument("--config", help="YAML file of options (keys as the flags, with underscores)")
    p.add_argument("--data", help="an Aff-Wild2 annotation folder, an AFEW-VA root, or a sequence manifest CSV")
    p.add_argument("--data-format", choices=["auto", "affwild2", "afewva", "manifest"])
    p.add_argument("--val-data", help="validation videos (else a --val-fraction hold-out by --split-by)")
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--split-by", choices=["video", "subject"], help="what never straddles a split (default subject)")
    p.add_argument("--targets", help="comma-separated target columns (manifest) or a subset of valence,arousal")
    p.add_argument("--target-scale", help="scale of manifest targets, e.g. -1,1 or 1,7")
    p.add_argument("--labels", help="class taxonomy or comma-separated labels (auto: those in the data)")
    p.add_argument("--encoder", help="per-frame encoder: default (bundled model), an emotune run/card, or timm:NAME")
    p.add_argument("--encoder-weights", help="local weight file for a timm:NAME encoder (else random weights)")
    p.add_argument("--finetune", action="store_true", default=None, help="train the encoder too (end to end; no cache)")
    p.add_argument("--head", choices=list(TEMPORAL_HEADS), help="temporal head (default gru)")
    for name, typ in (("hidden", int), ("layers", int), ("channels", int), ("kernel", int), ("dropout", float)):
        p.add_argument(f"--{name}", type=typ, help=f"temporal head {name} (the heads that take it)")
    for name, typ in (("window", int), ("stride", int), ("max_gap", int), ("min_frames", int), ("epochs", int),
                      ("batch_size", int), ("lr", float), ("encoder_lr", float), ("weight_decay", float),
                      ("class_weight", float), ("target_weight", float), ("patience", int), ("seed", int),
                      ("threads", int), ("frame_batch", int)):
        p.add_argument("--" + name.replace("_", "-"), type=typ)
    p.add_argument("--loss", choices=["ccc", "mse", "ccc+mse"], help="regression loss (default ccc)")
    p.add_argument("--monitor", help="best-epoch score: auto, ccc, video_ccc, macro_f1, loss")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", action="store_true", default=None)
    p.add_argument("--cache-dir", help="embedding cache folder (default $EMOTUNE_CACHE/embeddings; none: off)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def add_seq_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="seq_command", required=True)
    _train_options(sub.add_parser("train", help="train a sequence model (hold-out by video or subject)"))
    cv = sub.add_parser("cv", help="k-fold cross-validation by video or subject")
    _train_options(cv)
    cv.add_argument("--folds", type=int, default=5)
    ev = sub.add_parser("evaluate", help="per-frame and per-video scores of a sequence model on videos")
    ev.add_argument("model")
    ev.add_argument("--data", required=True)
    ev.add_argument("--data-format", default="auto")
    ev.add_argument("--out")
    ev.add_argument("--delay", type=int, default=0, help="frames of look-ahead per prediction, as predict streams it")
    ev.add_argument("--cache-dir")
    ex = sub.add_parser("export", help="ONNX graph of the temporal head (embeddings) or encoder + head (frames)")
    ex.add_argument("model")
    ex.add_argument("-o", "--output", required=True)
    ex.add_argument("--inputs", choices=["embeddings", "frames"], default="embeddings")


def _config(args: argparse.Namespace):
    import yaml

    from ..errors import ConfigError
    from ..temporal.train import SeqConfig

    base = {}
    if args.config:
        try:
            base = yaml.safe_load(open(args.config, encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--config {args.config}: {exc}") from None
    names = {f for f in SeqConfig.__dataclass_fields__}
    over = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return SeqConfig.from_dict({**base, **over})


def run_seq(args: argparse.Namespace) -> int:
    if args.seq_command == "train":
        from ..temporal.train import train_sequence

        res = train_sequence(_config(args))
        print(f"run: {res.run}  best epoch: {res.best_epoch}  " + ", ".join(f"{k} {v:.4f}" for k, v in res.best.items()
                                                                      if isinstance(v, float) and k in ("val_ccc", "val_video_ccc", "val_macro_f1", "val_loss")))
    elif args.seq_command == "cv":
        from ..temporal.train import cv_sequence

        out = cv_sequence(_config(args), args.folds)
        print(json.dumps(out["summary"], indent=1))
    elif args.seq_command == "evaluate":
        from ..temporal.train import evaluate_sequence

        res = evaluate_sequence(args.model, args.data, args.data_format, args.out, args.delay, args.cache_dir)
        print(json.dumps({k: res[k] for k in ("videos", "frames", "val", "video") if k in res}, indent=1))
    else:
        from ..temporal.export import export_sequence

        res = export_sequence(args.model, args.output, args.inputs)
        print(f"{res['path']}: inputs {res['inputs']}, outputs {res['outputs']}; onnxruntime vs PyTorch max |diff| {res['max_abs_diff']:.2e}")
    return 0
