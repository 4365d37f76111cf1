"""`emotune cv`: its flags (plus every training flag) and the command that runs it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...data.sources import SUBJECT_PATTERN
from ...errors import ConfigError
from .folds import FOLDS_FILE
from .results import _pm, metric_keys, metric_name
from .runner import run_cv


def add_cv_arguments(parser: argparse.ArgumentParser) -> None:
    """`emotune cv`: the cross-validation flags plus every training flag (`--data`, `--backbone`, `--epochs`...)."""
    from ...train.config import add_arguments

    parser.add_argument("--config", help="YAML file of training options (keys as the flags, with underscores)")
    parser.add_argument("--folds", help="number of folds K, or loso (leave one subject out) (default: 5, or those of --folds-file)")
    parser.add_argument("--group-by", default="none", choices=["none", "subject", "group"],
                        help="keep each subject's (or group's: duplicates, themes, videos; a manifest `group` column or "
                             "the format's) images in one fold")
    parser.add_argument("--stratify", action="store_true", help="keep class proportions (regression: quantile bins of the "
                                                                "targets) similar across folds")
    parser.add_argument("--final", action="store_true", help="also train a final model on all data into OUT/final")
    parser.add_argument("--folds-file", help="reuse the fold assignment of an earlier run (its folds.csv)")
    parser.add_argument("--subject-pattern", help=f"regex whose first group is the subject in file names without one "
                                                  f"(default for folders and manifests: {SUBJECT_PATTERN})")
    add_arguments(parser)  # includes --out (the cv folder) and --resume (skip finished folds)
    for action in parser._actions:  # the training flags' help speaks of one run; say what they mean here
        if action.dest == "out":
            action.help = "cross-validation folder (default: runs/cv)"
        elif action.dest == "resume":
            action.help = "continue the run in --out: skip finished folds, resume an interrupted fold's training"


def run_cv_command(args: argparse.Namespace) -> int:
    """Run `emotune cv`; exit status 1 when a fold (or the final model) failed, after writing the report."""
    from ...train.config import _field_types, make_config

    overrides = {k: getattr(args, k) for k in _field_types() if getattr(args, k, None) is not None}
    overrides.setdefault("out", "runs/cv")
    from ...train.config import load_yaml

    merging = bool(args.config and load_yaml(args.config).get("sources"))
    if args.folds_file and not overrides.get("data") and not merging:
        overrides["data"] = args.folds_file
    if args.folds_file and overrides.get("data") == args.folds_file:
        overrides.setdefault("data_format", "manifest")
    cfg = make_config(overrides, args.config)
    if not args.folds_file and not cfg.data and not cfg.sources:
        raise ConfigError("data: no data given (--data PATH or --folds-file folds.csv)")
    res = run_cv(cfg, args.folds, args.group_by, args.stratify, args.final, args.folds_file, args.subject_pattern)
    out = Path(res.out)
    print("  ".join(f"{metric_name(m)} {_pm(res.mean[m], res.std[m])}" for m in metric_keys(res.folds) if m in res.mean))
    print(f"wrote {out / 'cv.json'}, {out / 'cv.md'}, {out / 'confusion.png'}, {out / 'curves.png'}, {out / FOLDS_FILE}", file=sys.stderr)
    failed = res.failed or (res.final is not None and res.final.get("status") != "ok")
    if res.failed:
        print(f"{len(res.failed)} fold(s) failed: " + "; ".join(f"fold {f.fold}: {f.error}" for f in res.failed), file=sys.stderr)
    return 1 if failed else 0
