"""`emotune average`: a weight average (model soup) of checkpoints, or with --ensemble a probability ensemble."""
from __future__ import annotations

import argparse


def add_average_arguments(a: argparse.ArgumentParser) -> None:
    a.add_argument("models", nargs="+", help="run folders, model card .json or .safetensors files (two or more)")
    a.add_argument("--out", required=True, help="stem of the averaged checkpoint (writes STEM.safetensors and STEM.json)")
    a.add_argument("--weights", help="comma list of weights, one per model (default: uniform)")
    a.add_argument("--ensemble", action="store_true",
                   help="store a probability ensemble of the models (one forward pass each) instead of one averaged model")


def run_average(args: argparse.Namespace) -> int:
    from ..errors import CheckpointError
    from ..models.average import average_checkpoints, ensemble_checkpoints

    try:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    except ValueError:
        raise CheckpointError(f"--weights {args.weights!r}: expected a comma list of numbers, one per model") from None
    card = (ensemble_checkpoints if args.ensemble else average_checkpoints)(args.models, args.out, weights)
    print(f"wrote {card.with_suffix('.safetensors')} and {card}; score it with emotune evaluate --model {card} before use")
    return 0
