"""`emotune export`: an ONNX file with its model card, and a parity check against PyTorch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import EmotuneError
from ..io import check_writable_file, remove_stale_temps
from ..models import load_checkpoint, read_card
from .backend import OnnxBackend, TorchBackend, export_onnx
from .recognizer import default_model_path


def parity(model: torch.nn.Module, onnx_path: str | Path, in_chans: int, size: int, samples: int = 16, seed: int = 0,
           num_classes: int | None = None) -> float:
    """Max absolute difference of class probabilities (and targets) between onnxruntime and PyTorch on random inputs."""
    x = np.random.default_rng(seed).standard_normal((samples, in_chans, size, size)).astype(np.float32)
    return float(np.abs(OnnxBackend(onnx_path)(x) - TorchBackend(model, "cpu", num_classes)(x)).max())


def _refuse_foreign_card(output: Path) -> None:
    """The export writes `<name>.json` beside `<name>.onnx`: never over a card that describes other weights (a run's
    best.json / last.json), which would orphan its checkpoint."""
    card_path = output.with_suffix(".json")
    if not card_path.is_file():
        return
    try:
        card, _ = read_card(card_path)
    except EmotuneError:
        return  # not a model card: an ordinary file the user chose to replace
    if card.weights_file and card.weights_file != output.name:
        raise EmotuneError(f"--output {output}: its card {card_path.name} would replace the card of {card.weights_file}; "
                           "choose another name or folder")


def export_and_check(model_spec: str | None, output: str | Path, samples: int = 16) -> tuple[Path, float]:
    output = Path(output)
    if output.suffix != ".onnx":
        raise EmotuneError(f"--output {output}: the file name must end in .onnx")
    check_writable_file(output, "--output")  # before loading and exporting, not after
    check_writable_file(output.with_suffix(".json"), "--output card")
    _refuse_foreign_card(output)
    remove_stale_temps(output.parent)
    model, card = load_checkpoint(default_model_path() if model_spec in (None, "", "default") else model_spec)
    path = export_onnx(model, card, output)
    return path, parity(model, path, card.in_chans, card.input_size, samples, len(card.labels) if card.targets else None)
