"""Run a classifier on a batch of preprocessed crops: PyTorch, or onnxruntime (faster on CPU, no autograd).

Both return class probabilities as float32 numpy arrays, so the rest of the pipeline does not care which ran.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..io import atomic_write, sha256_file
from ..models.card import ModelCard

ONNX_OPSET = 17


class TorchBackend:
    name = "torch"

    def __init__(self, model: nn.Module, device: str = "cpu", num_classes: int | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.num_classes = num_classes  # a model with targets: its classes come first (models/heads.py); None = all classes

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.model(torch.from_numpy(x).to(self.device))
        if self.num_classes is not None:
            from ..models.heads import predictions

            return predictions(out, self.num_classes).cpu().numpy()
        return torch.softmax(out.float(), dim=1).cpu().numpy()


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: str | Path, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("the onnx backend needs `pip install onnxruntime`") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: onnxruntime cannot load it ({exc})") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, or for a model with targets its named outputs side by side ([probs, targets])."""
        outs = self.session.run(None, {self.input: np.ascontiguousarray(x, np.float32)})
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)


class _WithSoftmax(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def export_onnx(model: nn.Module, card: ModelCard, path: str | Path, opset: int = ONNX_OPSET) -> Path:
    """Write an ONNX graph (input `input` N x C x S x S float32, output `probs`) with the model card in its metadata,
    and the card beside it (`<name>.json`, with the ONNX file's sha256). A model with continuous targets has the named
    outputs `probs` (when it has classes) and `targets` (N x T on [-1, 1], in the card's `targets` order)."""
    import onnx

    path = Path(path)
    model = model.cpu().eval()
    dummy = torch.zeros(1, card.in_chans, card.input_size, card.input_size)

    def write(tmp: Path) -> None:
        # eval() on the wrapper too: the exporter restores the wrapper's mode afterwards, and with it the model's
        if card.targets:
            from ..models.heads import NamedOutputs

            wrapper = NamedOutputs(model, len(card.labels), len(card.targets))
            names = wrapper.output_names()
        else:
            wrapper, names = _WithSoftmax(model), ["probs"]
        torch.onnx.export(wrapper.eval(), (dummy,), str(tmp), dynamo=False, input_names=["input"], output_names=names,
                          dynamic_axes={"input": {0: "batch"}, **{n: {0: "batch"} for n in names}}, opset_version=opset)
        proto = onnx.load(str(tmp))
        meta = proto.metadata_props.add()
        meta.key, meta.value = "emotune_card", json.dumps(card.to_dict())
        onnx.save(proto, str(tmp))

    atomic_write(path, write)
    from ..io import atomic_write_json

    onnx_card = ModelCard.from_dict(card.to_dict())
    onnx_card.weights_file, onnx_card.sha256 = path.name, sha256_file(path)
    atomic_write_json(path.with_suffix(".json"), onnx_card.to_dict())
    return path


def cache_dir() -> Path:
    return Path(os.environ.get("EMOTUNE_CACHE", Path.home() / ".cache" / "emotune"))


def _safe_name(text: str, limit: int = 64) -> str:
    """A file-name-safe form of a card's backbone: no separators, no `..`, not hidden; an ensemble's long
    "a+b+c..." becomes "ensemble"."""
    name = re.sub(r"[^A-Za-z0-9_+.-]+", "_", text).strip("._-") or "model"
    name = re.sub(r"\.{2,}", ".", name)
    return name if len(name) <= limit else "ensemble"


def onnx_cache_key(card: ModelCard) -> str:
    """A hash of everything that shapes the exported graph: the whole card (input size, channels, head, ensemble
    members...) as canonical JSON, the weights' sha256, the opset and the exporting PyTorch."""
    canonical = json.dumps(card.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
    material = "\n".join([canonical, card.sha256 or "nohash", f"opset{ONNX_OPSET}", f"torch{torch.__version__}"])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:20]


def onnx_cache_path(card: ModelCard) -> Path:
    """Where the ONNX export of a card's model lives in the emotune cache: always inside `cache_dir()/onnx`, named by
    the (sanitised) backbone and keyed by `onnx_cache_key`, so a card that changes reuses no stale export."""
    return cache_dir() / "onnx" / f"{_safe_name(card.backbone)}-{onnx_cache_key(card)}-opset{ONNX_OPSET}.onnx"


def cached_onnx(make_model, card: ModelCard) -> Path:
    """The model's ONNX export, made once per weights file in the emotune cache; `make_model()` builds the PyTorch
    model only when there is no export yet, so a cache hit costs no model construction."""
    path = onnx_cache_path(card)
    if not path.is_file():
        export_onnx(make_model(), card, path)
    return path
