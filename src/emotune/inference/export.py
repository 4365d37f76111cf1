"""`emotune export`: an ONNX file with its model card, and a parity check against PyTorch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import EmotuneError
from ..models.card import load_checkpoint, resolve_card_path
from .backend import OnnxBackend, TorchBackend, export_onnx
from .recognizer import default_model_path


def parity(model: torch.nn.Module, onnx_path: str | Path, in_chans: int, size: int, samples: int = 16, seed: int = 0) -> float:
    """Max absolute difference of class probabilities between onnxruntime and PyTorch on random normalised inputs."""
    x = np.random.default_rng(seed).standard_normal((samples, in_chans, size, size)).astype(np.float32)
    return float(np.abs(OnnxBackend(onnx_path)(x) - TorchBackend(model, "cpu")(x)).max())


def export_and_check(model_spec: str | None, output: str | Path, samples: int = 16) -> tuple[Path, float]:
    output = Path(output)
    if output.suffix != ".onnx":
        raise EmotuneError(f"--output {output}: the file name must end in .onnx")
    spec = default_model_path() if model_spec in (None, "", "default") else model_spec
    if output.with_suffix(".json").resolve() == resolve_card_path(spec).resolve():
        raise EmotuneError(f"--output {output}: its card {output.with_suffix('.json').name} would replace the model's own "
                           "card; choose another name or folder")
    model, card = load_checkpoint(spec)
    path = export_onnx(model, card, output)
    return path, parity(model, path, card.in_chans, card.input_size, samples)
