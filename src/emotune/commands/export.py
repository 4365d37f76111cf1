"""`emotune export`: an ONNX graph plus its model card, checked against PyTorch."""
from __future__ import annotations

import argparse

CALIBRATION_CHOICES = ["percentile", "minmax", "entropy"]  # inference.export.CALIBRATION_METHODS (not imported: torch)


def add_export_arguments(x: argparse.ArgumentParser) -> None:
    x.add_argument("--model", default=None, help="run folder, model card .json or .safetensors (default: the bundled model)")
    x.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    x.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    x.add_argument("--check-samples", type=int, default=16, help="random inputs for the parity check (default: 16)")
    x.add_argument("--quantize", default="none", choices=["none", "int8"],
                   help="int8: onnxruntime quantisation (static with --calibration crops, else dynamic); loads like any .onnx")
    x.add_argument("--calibration", help="--quantize int8: face crops (any dataset format, e.g. `faces crop` output) whose "
                                         "activation ranges calibrate static quantisation")
    x.add_argument("--calibration-samples", type=int, default=200, help="crops drawn from --calibration (default: 200)")
    x.add_argument("--calibration-method", default="percentile", choices=CALIBRATION_CHOICES,
                   help="how activation ranges are set from the crops (default: percentile 99.99, which clips rare extremes)")


def run_export(args: argparse.Namespace) -> int:
    from ..inference.export import export_and_check

    path, diff = export_and_check(args.model, args.output, args.check_samples, args.quantize, args.calibration,
                                  args.calibration_samples, args.calibration_method)
    if args.quantize != "none":
        print(f"wrote {path} and {path.with_suffix('.json')} ({args.quantize}, "
              + (f"static, {args.calibration_samples} calibration crops, {args.calibration_method}" if args.calibration else "dynamic") + "); "
              f"argmax differs from PyTorch on {diff:.0%} of {args.check_samples} random inputs (check real crops with "
              "`emotune evaluate --model` on the .onnx)")
        return 0
    print(f"wrote {path} and {path.with_suffix('.json')}; max |p_onnx - p_torch| = {diff:.2e} on {args.check_samples} random inputs")
    return 0
