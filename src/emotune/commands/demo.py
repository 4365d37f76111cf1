"""`emotune demo`: predict on a bundled photo, or (--train) a one-minute fine-tuning run."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_demo_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("--image", help="photo to use (default: matplotlib's public-domain grace_hopper.jpg)")
    d.add_argument("--train", action="store_true", help="instead, fine-tune for 3 epochs on CK+ from --shared (or synthetic faces)")
    d.add_argument("--shared", default="../shared", help="--train: folder with data/ and weights/ (default: ../shared)")
    d.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")


def run_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo as demo, run_train_demo

    if args.train:
        return run_train_demo(Path(args.shared), Path(args.out))
    return demo(Path(args.out), args.image)
