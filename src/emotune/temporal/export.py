"""ONNX export of a sequence model, with its card in the graph's metadata and beside it (like every emotune model).

- `embeddings` (default): the temporal head over a window of embeddings: input `embeddings` B x W x D, outputs
  `probs` B x W x K (softmax, when the model has classes) and `targets` B x W x T (clipped to [-1, 1]).
- `frames`: encoder + head over a window of preprocessed frames: input `frames` B x W x C x S x S.
Batch and window length are dynamic axes. `export_sequence` checks onnxruntime against PyTorch on random inputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..io import atomic_write, atomic_write_json, sha256_file
from .model import load_sequence_model

ONNX_OPSET = 17


class _Outputs(nn.Module):
    def __init__(self, net: nn.Module, k: int, t: int):
        super().__init__()
        self.net, self.k, self.t = net, k, t

    def forward(self, x):
        out = self.net(x).float()
        parts = []
        if self.k:
            parts.append(torch.softmax(out[..., :self.k], dim=-1))
        if self.t:
            parts.append(out[..., self.k:].clamp(-1.0, 1.0))
        return tuple(parts)


def export_sequence(model_path: str | Path, output: str | Path, inputs: str = "embeddings", samples: int = 4) -> dict:
    """Write the ONNX graph + card; returns {path, inputs, max_abs_diff}."""
    import onnx
    import onnxruntime as ort

    from ..models import ModelCard

    if inputs not in ("embeddings", "frames"):
        raise ConfigError(f"--inputs {inputs}: choose embeddings or frames")
    output = Path(output)
    if output.suffix != ".onnx":
        raise ConfigError(f"--output {output}: the file name must end in .onnx")
    model, card = load_sequence_model(model_path)
    k, t = len(card.labels), len(card.targets)
    window = int(card.temporal["window"])
    net = model.temporal if inputs == "embeddings" else model
    wrapper = _Outputs(net, k, t).eval()
    names = (["probs"] if k else []) + (["targets"] if t else [])
    shape = (1, window, int(card.temporal["embed_dim"])) if inputs == "embeddings" else (1, window, card.in_chans, card.input_size, card.input_size)
    dummy = torch.zeros(*shape)

    def write(tmp: Path) -> None:
        torch.onnx.export(wrapper, (dummy,), str(tmp), dynamo=False, input_names=[inputs], output_names=names,
                          dynamic_axes={inputs: {0: "batch", 1: "window"}, **{n: {0: "batch", 1: "window"} for n in names}},
                          opset_version=ONNX_OPSET)
        proto = onnx.load(str(tmp))
        meta = proto.metadata_props.add()
        meta.key, meta.value = "emotune_card", json.dumps(card.to_dict())
        meta = proto.metadata_props.add()
        meta.key, meta.value = "emotune_sequence_inputs", inputs
        onnx.save(proto, str(tmp))

    atomic_write(output, write)
    onnx_card = ModelCard.from_dict(card.to_dict())
    onnx_card.weights_file, onnx_card.sha256 = output.name, sha256_file(output)
    onnx_card.training = {**onnx_card.training, "onnx_inputs": inputs}
    atomic_write_json(output.with_suffix(".json"), onnx_card.to_dict())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, window + 3, *shape[2:])).astype(np.float32)  # a longer window than trained: dynamic
    sess = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    got = sess.run(None, {inputs: x})
    with torch.no_grad():
        ref = [o.numpy() for o in wrapper(torch.from_numpy(x))]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(got, ref))
    return {"path": str(output), "inputs": inputs, "outputs": names, "max_abs_diff": diff}
