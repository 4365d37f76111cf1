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


@pytest.mark.parametrize("method", ["percentile", "minmax", "entropy"])
def test_calibration_methods_are_recorded_and_bound_to_the_source_weights(faces, method):
    root, calib, crops = faces
    out = root / f"{method}.onnx"
    assert main(["export", "-o", str(out), "--quantize", "int8", "--calibration", str(calib), "--calibration-samples", "20",
                 "--calibration-method", method, "--check-samples", "2"]) == 0
    q = json.loads(out.with_suffix(".json").read_text())["training"]["quantization"]
    from emotune.models.bundled import bundled_path

    assert q["calibration_method"].startswith(method)
    assert q["source_sha256"] == json.loads(bundled_path("default").read_text())["sha256"]
    assert Recognizer(out, detector="none", threads=1).classify(crops[:4]).shape == (4, 7)


def test_export_choices_match_the_methods():
    from emotune.commands.export import CALIBRATION_CHOICES
    from emotune.inference.export import CALIBRATION_METHODS

    assert tuple(CALIBRATION_CHOICES) == CALIBRATION_METHODS


@pytest.fixture()
def run_with_companion(faces, tmp_path):
    """A copy of the bundled fer2013 model as a run folder, with an int8 companion beside its card."""
    import shutil

    from emotune.models.bundled import bundled_path

    _, calib, _ = faces
    card = bundled_path("fer2013")
    shutil.copy(card, tmp_path / "best.json")
    shutil.copy(card.with_suffix(".safetensors"), tmp_path / "fer2013.safetensors")
    q = tmp_path / "best.int8.onnx"
    assert main(["export", "--model", str(tmp_path), "-o", str(q), "--quantize", "int8", "--calibration", str(calib),
                 "--calibration-samples", "20", "--check-samples", "2"]) == 0
    return tmp_path, q


def test_auto_precision_runs_the_int8_companion_on_cpu_only(run_with_companion, faces):
    run, q = run_with_companion
    crops = faces[2][:6]
    auto = Recognizer(run, detector="none", device="cpu", threads=1)
    assert auto.precision == "int8" and auto.card.weights_file == q.name
    assert Recognizer(run, detector="none", device="cpu", threads=1, precision="int8").precision == "int8"
    fp32 = Recognizer(run, detector="none", device="cpu", threads=1, precision="fp32")
    assert fp32.precision == "fp32" and fp32.backend.name == "onnx"
    torch_rec = Recognizer(run, detector="none", device="cpu", backend="torch")
    assert torch_rec.precision == "fp32" and torch_rec.backend.name == "torch"
    assert np.abs(auto.classify(crops) - fp32.classify(crops)).max() < 0.2


def test_a_stale_or_missing_companion_is_never_used(run_with_companion):
    from emotune.errors import ConfigError
    from emotune.models.bundled import int8_companion

    run, q = run_with_companion
    assert int8_companion(run / "best.json") == q
    card = json.loads(q.with_suffix(".json").read_text())
    card["training"]["quantization"]["source_sha256"] = "0" * 64  # made from other weights
    q.with_suffix(".json").write_text(json.dumps(card))
    assert int8_companion(run / "best.json") is None
    assert Recognizer(run, detector="none", device="cpu", threads=1).precision == "fp32"
    with pytest.raises(ConfigError, match=r"--precision int8 with .*no int8 companion"):
        Recognizer(run, detector="none", device="cpu", threads=1, precision="int8")
    q.unlink()
    assert int8_companion(run / "best.json") is None


def test_int8_refuses_the_torch_backend(run_with_companion):
    from emotune.errors import ConfigError

    run, _ = run_with_companion
    with pytest.raises(ConfigError, match="int8 runs with onnxruntime on CPU"):
        Recognizer(run, detector="none", device="cpu", backend="torch", precision="int8")


def test_int8_card_does_not_claim_the_fp32_scores(run_with_companion):
    run, q = run_with_companion
    src = json.loads((run / "best.json").read_text())["metrics"]
    metrics = json.loads(q.with_suffix(".json").read_text())["metrics"]
    assert src and "test" not in metrics and metrics["fp32_source"] == src


def test_the_bundled_default_ships_a_current_int8_companion():
    """Re-bundling the default without remaking its int8 file fails here (the stale file would be ignored silently)."""
    from emotune.models.bundled import bundled_path, int8_companion

    q = int8_companion(bundled_path("default"))
    assert q is not None, "remake it: emotune export --model default -o src/emotune/weights/default.int8.onnx ..."
    quant = json.loads(q.with_suffix(".json").read_text())["training"]["quantization"]
    assert quant["calibration_method"].startswith("percentile") and quant["calibration_crops"] >= 200
    rec = Recognizer(None, detector="none", device="cpu", threads=1)
    assert rec.precision == "int8" and rec.card.weights_file == q.name
    assert Recognizer(None, detector="none", device="cpu", threads=1, precision="fp32").precision == "fp32"


def test_precision_that_contradicts_an_onnx_file_is_an_error(run_with_companion):
    from emotune.errors import ConfigError

    run, q = run_with_companion
    assert Recognizer(q, detector="none", threads=1, precision="int8").precision == "int8"
    with pytest.raises(ConfigError, match=r"--precision fp32 with .*an int8 export"):
        Recognizer(q, detector="none", threads=1, precision="fp32")
    fp32 = run / "fp32.onnx"
    assert main(["export", "--model", str(run), "-o", str(fp32), "--check-samples", "2"]) == 0
    with pytest.raises(ConfigError, match=r"--precision int8 with .*an fp32 export"):
        Recognizer(fp32, detector="none", threads=1, precision="int8")
    assert Recognizer(fp32, detector="none", threads=1).precision == "fp32"
