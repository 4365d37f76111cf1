"""`emotune` command line: predict, train, evaluate, export, average, models, detectors, demo. Errors print one clear line and exit non-zero."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import EmotuneError


def cmd_train(args: argparse.Namespace) -> int:
    from .train import make_config, train
    from .train.config import _field_types

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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_dataset

    drop = [s for s in (args.drop_labels or "").split(",") if s]
    if args.detect:
        from .evaluate import evaluate_photos

        report = evaluate_photos(args.model, args.data, args.data_format, args.split, drop, args.drop_unknown_labels,
                                 args.detector, args.detector_model, args.tta, args.device, not args.no_progress,
                                 args.max_samples, args.margin)
    else:
        from .inference.recognizer import default_model_path

        report = evaluate_dataset(args.model or default_model_path(), args.data, args.data_format, args.split, args.ferplus_mode, drop,
                                  args.drop_unknown_labels, args.batch_size, args.tta, args.on_bad, args.workers, args.device,
                                  not args.no_progress, args.max_samples)
    text = json.dumps(report.to_dict(), indent=2) if args.format == "json" else report.to_markdown()
    print(text)
    if args.out:
        print("wrote " + ", ".join(map(str, report.write(args.out))), file=sys.stderr)
    for s in report.skipped:
        print(f"skipped {s['where']}: {s['problem']}", file=sys.stderr)
    return 0


def print_table(header: list[tuple[str, int]], rows: list[list[str]]) -> None:
    """Fixed-width columns; the last one takes the rest of the line."""
    def line(cells: list[str]) -> str:
        return "".join(f"{c:<{w}}" if w else c for c, (_, w) in zip(cells, header))
    print(line([h for h, _ in header]))
    for r in rows:
        print(line(r))


def cmd_models(args: argparse.Namespace) -> int:
    from .models import get_model_config, list_models

    rows = [[n, c.timm_name, c.hub_name or "-", str(c.input_size), c.license]
            for n, c in ((n, get_model_config(n)) for n in list_models())]
    print_table([("name", 20), ("timm model", 26), ("hub weights", 34), ("size", 6), ("licence", 0)], rows)
    return 0


def cmd_detectors(args: argparse.Namespace) -> int:
    from .faces import get_detector_config, list_detectors

    rows = [[n, "yes" if c.landmarks else "no", "required" if c.needs_file else "bundled", c.license or "-", c.description]
            for n, c in ((n, get_detector_config(n)) for n in list_detectors())]
    print_table([("name", 11), ("landmarks", 11), ("model file", 12), ("licence", 14), ("description", 0)], rows)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .inference.export import export_and_check

    path, diff = export_and_check(args.model, args.output, args.check_samples)
    print(f"wrote {path} and {path.with_suffix('.json')}; max |p_onnx - p_torch| = {diff:.2e} on {args.check_samples} random inputs")
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from .errors import CheckpointError
    from .models.average import average_checkpoints, ensemble_checkpoints

    try:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    except ValueError:
        raise CheckpointError(f"--weights {args.weights!r}: expected a comma list of numbers, one per model") from None
    card = (ensemble_checkpoints if args.ensemble else average_checkpoints)(args.models, args.out, weights)
    print(f"wrote {card.with_suffix('.safetensors')} and {card}; score it with emotune evaluate --model {card} before use")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo, run_train_demo

    if args.train:
        return run_train_demo(Path(args.shared), Path(args.out))
    return run_demo(Path(args.out), args.image)


# commands whose options and runner live beside their code: (name, module, add-arguments, run, help, description)
PROTOCOL_COMMANDS = [
    ("cascade", "protocols.cascade", "add_cascade_arguments", "run_cascade_command",
     "multi-stage fine-tuning: ImageNet -> large face set -> small target set",
     "Run the stages of a cascade YAML in order; each starts from the best checkpoint of the stage before, with the head "
     "remapped by label name. Completed stages are skipped, an interrupted one resumes."),
    ("cv", "protocols.cv", "add_cv_arguments", "run_cv_command",
     "k-fold / subject-grouped / leave-one-subject-out cross-validation",
     "Assign folds (written to folds.csv), train on the other folds with model selection on a hold-out of the training "
     "folds, test on each held-out fold; per-fold metrics, mean ± std and the pooled confusion matrix in cv.json / cv.md."),
    ("report", "protocols.report", "add_report_arguments", "run_report_command",
     "put several runs (train, evaluate, cv) side by side",
     "One table over run folders: train runs, evaluate outputs and cv folders."),
]


def _module_command(sub, name: str, module: str, add: str, run: str, help_: str, description: str) -> None:
    from importlib import import_module

    mod = import_module(f".{module}", __package__)
    p = sub.add_parser(name, help=help_, description=description)
    getattr(mod, add)(p)
    p.set_defaults(func=getattr(mod, run))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .train.config import add_arguments

    p = argparse.ArgumentParser(prog="emotune", description="Visual emotion recognition by transfer learning.")
    p.add_argument("--version", action="version", version=f"emotune {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    _module_command(sub, "predict", "predict", "add_predict_arguments", "run_predict",
                    "find faces and their emotions in images, folders, videos or a webcam",
                    "Detect every face, align it and classify its expression. Prints a table, or writes csv/json/jsonl; "
                    "optionally annotated images/videos and timeline plots. Exit status 1 only when no input could be processed.")

    t = sub.add_parser("train", help="fine-tune a backbone on an emotion dataset",
                       description="Fine-tune an ImageNet backbone. Options come from --config YAML, overridden by flags.")
    t.add_argument("--config", help="YAML file of training options (keys as the flags, with underscores)")
    add_arguments(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a trained model on a labelled dataset",
                       description="Accuracy, balanced accuracy, macro-F1, per-class report and confusion matrix.")
    e.add_argument("--model", help="run folder, model card .json or .safetensors (default: the bundled model)")
    e.add_argument("--data", required=True, help="class-folder root, manifest CSV, fer2013.csv or FER+ split folder")
    e.add_argument("--data-format", default="auto", choices=["auto", "folder", "manifest", "fer2013csv", "ferplus"], help="dataset format (default: auto)")
    e.add_argument("--split", help="manifest split value or FER2013 Usage (train/val/test)")
    e.add_argument("--ferplus-mode", default="majority", choices=["majority", "probability", "multi_target"], help="FER+ label mode")
    e.add_argument("--drop-labels", help="comma list of data labels to leave out (e.g. contempt for a basic7 model)")
    e.add_argument("--drop-unknown-labels", action="store_true", help="leave out every image whose label the model lacks")
    e.add_argument("--format", default="md", choices=["md", "json"], help="report printed on stdout (default: md)")
    e.add_argument("--out", help="folder for eval.json, eval.md, confusion.png and predictions.csv (one row per image)")
    e.add_argument("--detect", action="store_true", help="score the whole predict pipeline on photos: detect, align, "
                   "classify the largest face (photos without a face count as wrong end to end)")
    e.add_argument("--detector", default="yunet", help="--detect: face detector (default: yunet)")
    e.add_argument("--detector-model", help="--detect: model file for detectors that take one")
    e.add_argument("--margin", type=float, default=1.0, help="--detect: crop margin (default: 1.0)")
    e.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    e.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    e.add_argument("--max-samples", type=int, default=0, help="evaluate a stratified subset of this many images (0 = all)")
    e.add_argument("--on-bad", default="skip", choices=["skip", "fail"], help="skip bad images (reported) or fail")
    e.add_argument("--workers", type=int, default=0, help="data-loader workers (default: 0)")
    e.add_argument("--device", default="auto", help="cpu, cuda or auto")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="export a model to ONNX (with its model card) and check parity",
                       description="Write an ONNX graph (input N x C x S x S, output class probabilities) plus its model card, "
                                   "then compare onnxruntime with PyTorch on random inputs.")
    x.add_argument("--model", default=None, help="run folder, model card .json or .safetensors (default: the bundled model)")
    x.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    x.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    x.add_argument("--check-samples", type=int, default=16, help="random inputs for the parity check (default: 16)")
    x.set_defaults(func=cmd_export)

    a = sub.add_parser("average", help="average checkpoints: their weights (model soup) or, with --ensemble, their probabilities",
                       description="Weight-average checkpoints that share backbone, head, labels and preprocessing, e.g. the "
                                   "best of two consecutive fine-tuning stages: one model at the cost of one. With --ensemble, "
                                   "keep every model in one checkpoint and average their class probabilities instead: members "
                                   "may differ in backbone (not in labels or preprocessing) and cost one forward pass "
                                   "each. Select the result on validation data like any other model.")
    a.add_argument("models", nargs="+", help="run folders, model card .json or .safetensors files (two or more)")
    a.add_argument("--out", required=True, help="stem of the averaged checkpoint (writes STEM.safetensors and STEM.json)")
    a.add_argument("--weights", help="comma list of weights, one per model (default: uniform)")
    a.add_argument("--ensemble", action="store_true",
                   help="store a probability ensemble of the models (one forward pass each) instead of one averaged model")
    a.set_defaults(func=cmd_average)

    for name, module, add, run, help_, desc in PROTOCOL_COMMANDS:
        _module_command(sub, name, module, add, run, help_, desc)

    m = sub.add_parser("models", help="list the registered backbones")
    m.set_defaults(func=cmd_models)

    dt = sub.add_parser("detectors", help="list the face detectors")
    dt.set_defaults(func=cmd_detectors)

    d = sub.add_parser("demo", help="predict on a bundled photo (or --train: a one-minute fine-tuning run)")
    d.add_argument("--image", help="photo to use (default: matplotlib's public-domain grace_hopper.jpg)")
    d.add_argument("--train", action="store_true", help="instead, fine-tune for 3 epochs on CK+ from --shared (or synthetic faces)")
    d.add_argument("--shared", default="../shared", help="--train: folder with data/ and weights/ (default: ../shared)")
    d.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EmotuneError as exc:
        print(f"emotune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emotune: interrupted; a training run resumes with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`emotune predict ... | head`): stop quietly, like any Unix filter killed by SIGPIPE
        _silence_stdout()
        return 141


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush of a closed pipe prints no second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a file descriptor
        pass


if __name__ == "__main__":
    sys.exit(main())
