"""`emotune export`: an ONNX file with its model card, and a parity check against PyTorch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import EmotuneError
from ..io import atomic_write, check_writable_file, remove_stale_temps, sha256_file
from ..models import load_checkpoint, read_card
from ..models.bundled import resolve_model
from ..models.card import require_image_model
from .backend import OnnxBackend, TorchBackend, export_onnx


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


QUANTIZE_MODES = ("none", "int8")
# how static quantisation sets each activation's range from the calibration crops. Percentile (99.99) clips the rare
# extreme activations that min-max lets stretch the 256 uint8 steps: on the bundled FER2013 model it kept FER2013 val
# within 0.03 points of fp32, where min-max lost 0.31 and entropy 0.31 (docs/faces.md, "int8 models").
CALIBRATION_METHODS = ("percentile", "minmax", "entropy")
PERCENTILE = 99.99


def calibration_inputs(card, data: str | Path, samples: int = 200, seed: int = 0) -> np.ndarray:
    """Model inputs (N x C x S x S) from a dataset of face crops (any emotune format; e.g. `faces crop` output),
    through the card's one `Preprocess`: what the quantised model will see in use."""
    from ..data import Preprocess, load_samples
    from ..data.dataset import load_pil
    from ..data.splits import stratified_subset

    picked = stratified_subset(load_samples(data), samples, seed)
    prep = Preprocess.from_card(card)
    return prep.batch([np.asarray(load_pil(s, "rgb")) for s in picked])


def quantize_int8(fp32: str | Path, output: str | Path, card, calibration: np.ndarray | None = None,
                  method: str = "percentile") -> dict:
    """onnxruntime int8 quantisation of an exported graph, written atomically with its card beside it.

    With calibration inputs: static QDQ quantisation (int8 weights per channel, uint8 activations whose ranges come
    from the calibration crops), which turns the convolutions into int8 kernels. Without: dynamic quantisation
    (weights int8, activation ranges found per batch at run time), which needs no data but speeds up CNNs less."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..io import atomic_write_json
    from ..models.card import ModelCard

    if method not in CALIBRATION_METHODS:
        raise EmotuneError(f"--calibration-method {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    output = Path(output)
    # `source_sha256` binds the int8 file to the weights it was made from (models/bundled.py int8_companion)
    info: dict = {"dtype": "int8", "onnxruntime": __import__("onnxruntime").__version__, "source_sha256": card.sha256}
    calib_options = {"percentile": {"calibrate_method": CalibrationMethod.Percentile,
                                    "extra_options": {"CalibPercentile": PERCENTILE}},
                     "minmax": {"calibrate_method": CalibrationMethod.MinMax},
                     "entropy": {"calibrate_method": CalibrationMethod.Entropy}}[method]

    class Reader(CalibrationDataReader):
        def __init__(self, x: np.ndarray):
            self.batches = iter([{"input": x[i:i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.batches, None)

    def write(tmp: Path) -> None:
        pre = tmp.with_name(tmp.name + ".pre.onnx")
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            if calibration is not None and len(calibration):
                import onnx

                # the softmax stays float: probabilities in 1/255 steps would tie and blur what users read
                keep = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Softmax"]
                quantize_static(str(pre), str(tmp), Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                                weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, nodes_to_exclude=keep,
                                **calib_options)
            else:
                quantize_dynamic(str(pre), str(tmp), weight_type=QuantType.QUInt8)
        finally:
            pre.unlink(missing_ok=True)

    info.update({"method": "static QDQ, per-channel int8 weights, uint8 activations", "calibration_crops": len(calibration),
                 "calibration_method": method + (f" {PERCENTILE}" if method == "percentile" else "")}
                if calibration is not None and len(calibration) else {"method": "dynamic (no calibration crops given)"})
    atomic_write(output, write)
    q_card = ModelCard.from_dict(card.to_dict())
    q_card.weights_file, q_card.sha256 = output.name, sha256_file(output)
    q_card.training = {**(q_card.training or {}), "quantization": info}
    # the fp32 model's scores are not the int8 model's: kept apart, so no figure is read as this file's
    q_card.metrics = {"fp32_source": card.metrics} if card.metrics else {}
    atomic_write_json(output.with_suffix(".json"), q_card.to_dict())
    return info


def export_and_check(model_spec: str | None, output: str | Path, samples: int = 16, quantize: str = "none",
                     calibration: str | Path | None = None, calibration_samples: int = 200,
                     calibration_method: str = "percentile") -> tuple[Path, float]:
    """Export (and with `quantize="int8"`, quantise) a model; returns the file and the parity with PyTorch: the max
    probability difference for fp32, the share of random inputs whose argmax differs for int8."""
    if quantize not in QUANTIZE_MODES:
        raise EmotuneError(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZE_MODES)}")
    output = Path(output)
    if output.suffix != ".onnx":
        raise EmotuneError(f"--output {output}: the file name must end in .onnx")
    check_writable_file(output, "--output")  # before loading and exporting, not after
    check_writable_file(output.with_suffix(".json"), "--output card")
    _refuse_foreign_card(output)
    remove_stale_temps(output.parent)
    spec = resolve_model(model_spec)
    require_image_model(read_card(spec)[0], spec, "export")
    model, card = load_checkpoint(spec)
    if quantize == "none":
        path = export_onnx(model, card, output)
        return path, parity(model, path, card.in_chans, card.input_size, samples, len(card.labels) if card.targets else None)
    import tempfile

    calib = calibration_inputs(card, calibration, calibration_samples) if calibration else None
    with tempfile.TemporaryDirectory(prefix="emotune-quant-") as tmp:
        fp32 = export_onnx(model, card, Path(tmp) / "fp32.onnx")
        quantize_int8(fp32, output, card, calib, calibration_method)
    x = np.random.default_rng(0).standard_normal((samples, card.in_chans, card.input_size, card.input_size)).astype(np.float32)
    disagree = float(np.mean(OnnxBackend(output)(x).argmax(1) != TorchBackend(model, "cpu")(x).argmax(1)))
    return output, disagree
