"""`emotune` command line: every command comes from one registry (`COMMANDS`) of option/runner pairs that live
beside their code (predict, cascade, cv, report) or in `emotune.commands`. Errors print one clear line and exit non-zero."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from .errors import EmotuneError


@dataclass(frozen=True)
class CommandSpec:
    """One `emotune NAME` command: `module` (relative to emotune) holds `add(parser)` and `run(args) -> exit code`."""

    name: str
    module: str
    add: str
    run: str
    help: str
    description: str = ""


COMMANDS: list[CommandSpec] = [
    CommandSpec("predict", "predict", "add_predict_arguments", "run_predict",
                "find faces and their emotions in images, folders, videos or a webcam",
                "Detect every face, align it and classify its expression. Prints a table, or writes csv/json/jsonl; "
                "optionally annotated images/videos and timeline plots. Exit status 1 only when no input could be processed."),
    CommandSpec("train", "commands.train", "add_train_arguments", "run_train", "fine-tune a backbone on an emotion dataset",
                "Fine-tune an ImageNet backbone. Options come from --config YAML, overridden by flags."),
    CommandSpec("evaluate", "commands.evaluate", "add_evaluate_arguments", "run_evaluate",
                "score a trained model on a labelled dataset",
                "Accuracy, balanced accuracy, macro-F1, per-class report and confusion matrix."),
    CommandSpec("export", "commands.export", "add_export_arguments", "run_export",
                "export a model to ONNX (with its model card) and check parity",
                "Write an ONNX graph (input N x C x S x S, output class probabilities) plus its model card, "
                "then compare onnxruntime with PyTorch on random inputs."),
    CommandSpec("average", "commands.average", "add_average_arguments", "run_average",
                "average checkpoints: their weights (model soup) or, with --ensemble, their probabilities",
                "Weight-average checkpoints that share backbone, head, labels and preprocessing, e.g. the "
                "best of two consecutive fine-tuning stages: one model at the cost of one. With --ensemble, "
                "keep every model in one checkpoint and average their class probabilities instead: members "
                "may differ in backbone (not in labels or preprocessing) and cost one forward pass "
                "each. Select the result on validation data like any other model."),
    CommandSpec("cascade", "protocols.cascade", "add_cascade_arguments", "run_cascade_command",
                "multi-stage fine-tuning: ImageNet -> large face set -> small target set",
                "Run the stages of a cascade YAML in order; each starts from the best checkpoint of the stage before, with the "
                "head remapped by label name. Completed stages are skipped, an interrupted one resumes."),
    CommandSpec("cv", "protocols.cv", "add_cv_arguments", "run_cv_command",
                "k-fold / subject-grouped / leave-one-subject-out cross-validation",
                "Assign folds (written to folds.csv), train on the other folds with model selection on a hold-out of the "
                "training folds, test on each held-out fold; per-fold metrics, mean ± std and the pooled confusion matrix in "
                "cv.json / cv.md."),
    CommandSpec("report", "protocols.report", "add_report_arguments", "run_report_command",
                "put several runs (train, evaluate, cv) side by side",
                "One table over run folders: train runs, evaluate outputs and cv folders."),
    CommandSpec("faces", "commands.faces", "add_faces_arguments", "run_faces", "faces crop: a photo dataset -> face crops framed as predict frames them"),
    CommandSpec("serve", "commands.serve", "add_serve_arguments", "run_serve",
                "REST API and web page for emotion recognition (FastAPI on uvicorn, 127.0.0.1 by default)",
                "POST /v1/analyze (multipart, base64 JSON or an image body), /v1/analyze/batch, a deepface-compatible "
                "POST /analyze, GET /v1/models and /health; the web page at /, the API page at /docs. The model loads once; "
                "faces of concurrent requests are classified in micro-batches. Needs `pip install 'emotune[serve]'`."),
    CommandSpec("seq", "commands.seq", "add_seq_arguments", "run_seq", "sequence models over face video: train, cv, evaluate, export"),
    CommandSpec("synth", "commands.synth", "add_synth_arguments", "run_synth",
                "generative augmentation: train a class-conditional face GAN, sample synthetic faces, measure them"),
    CommandSpec("models", "commands.catalog", "add_no_arguments", "run_models", "list the registered backbones and the bundled models"),
    CommandSpec("detectors", "commands.catalog", "add_no_arguments", "run_detectors", "list the face detectors"),
    CommandSpec("demo", "commands.demo", "add_demo_arguments", "run_demo",
                "predict on a bundled photo (or --train: a one-minute fine-tuning run)"),
]


def add_command(sub, spec: CommandSpec) -> argparse.ArgumentParser:
    """Add one registered command to the subparsers: its options and its runner (`args.func`)."""
    from importlib import import_module

    mod = import_module(f".{spec.module}", __package__)
    p = sub.add_parser(spec.name, help=spec.help, description=spec.description or None)
    getattr(mod, spec.add)(p)
    p.set_defaults(func=getattr(mod, spec.run))
    return p


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="emotune", description="Visual emotion recognition by transfer learning.")
    p.add_argument("--version", action="version", version=f"emotune {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for spec in COMMANDS:
        add_command(sub, spec)
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
