"""`emotune export`: an ONNX graph plus its model card, checked against PyTorch."""
from __future__ import annotations

import argparse


def add_export_arguments(x: argparse.ArgumentParser) -> None:
    x.add_argument("--model", default=None, help="run folder, model card .json or .safetensors (default: the bundled model)")
    x.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    x.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    x.add_argument("--check-samples", type=int, default=16, help="random inputs for the parity check (default: 16)")


def run_export(args: argparse.Namespace) -> int:
    from ..inference.export import export_and_check

    path, diff = export_and_check(args.model, args.output, args.check_samples)
    print(f"wrote {path} and {path.with_suffix('.json')}; max |p_onnx - p_torch| = {diff:.2e} on {args.check_samples} random inputs")
    return 0
