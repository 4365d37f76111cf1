"""`emotune export --quantize int8`: an onnxruntime int8 model that loads like any .onnx model and agrees with fp32."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emotune.cli import main
from emotune.data.synthetic import make_synthetic_dataset
from emotune.errors import CheckpointError
from emotune.inference.recognizer import Recognizer


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Synthetic 48 px faces (the bundled model's source size): calibration crops and test crops, disjoint."""
    root = tmp_path_factory.mktemp("q")
    calib = make_synthetic_dataset(root / "calib", per_class=10, size=48, seed=1)
    test = make_synthetic_dataset(root / "test", per_class=15, size=48, seed=2)
    from PIL import Image

    crops = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(test.rglob("*.png"))]
    return root, calib, crops


def test_static_int8_runs_and_agrees_with_fp32(faces):
    root, calib, crops = faces
    out = root / "int8.onnx"
    assert main(["export", "-o", str(out), "--quantize", "int8", "--calibration", str(calib), "--calibration-samples", "40"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    q = card["training"]["quantization"]
    assert q["dtype"] == "int8" and q["method"].startswith("static") and q["calibration_crops"] == 40
    fp32 = Recognizer(None, detector="none", backend="torch", device="cpu").classify(crops)
    rec = Recognizer(out, detector="none", threads=1)  # loads like any .onnx model (card beside it, sha256 checked)
    assert rec.backend.name == "onnx"
    int8 = rec.classify(crops)
    assert int8.shape == fp32.shape and np.allclose(int8.sum(1), 1, atol=1e-3)
    agree = float(np.mean(int8.argmax(1) == fp32.argmax(1)))
    assert agree >= 0.85, agree
    assert np.abs(int8 - fp32).mean() < 0.05
    # graph really is quantised: int8 weights
    import onnx

    types = {init.data_type for init in onnx.load(str(out)).graph.initializer}
    assert onnx.TensorProto.INT8 in types
    # a changed file no longer matches its card
    with open(out, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        Recognizer(out, detector="none")


def test_dynamic_int8_without_calibration_loads(faces, capsys):
    root, _, crops = faces
    out = root / "dyn.onnx"
    assert main(["export", "-o", str(out), "--quantize", "int8", "--check-samples", "4"]) == 0
    assert "dynamic" in capsys.readouterr().out
    p = Recognizer(out, detector="none", threads=1).classify(crops[:8])
    assert p.shape == (8, 7) and np.isfinite(p).all()
