"""`emotune train`: options from --config YAML, overridden by flags."""
from __future__ import annotations

import argparse
import os
import sys


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from ..train.config import add_arguments

    p.add_argument("--config", help="YAML file of training options (keys as the flags, with underscores)")
    add_arguments(p)


def run_train(args: argparse.Namespace) -> int:
    from ..train import make_config, train
    from ..train.config import _field_types

    overrides = {k: getattr(args, k) for k in _field_types() if getattr(args, k, None) is not None}
    cfg = make_config(overrides, args.config)
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports
        return 0
    best = ", ".join(f"{k} {v:.4f}" for k, v in result.best_metrics.items())
    print(f"run: {result.run_dir}  epochs: {result.epochs_run}  best epoch: {result.best_epoch}  {best}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} bad image(s); see {result.run_dir / 'summary.json'}", file=sys.stderr)
    return 0
