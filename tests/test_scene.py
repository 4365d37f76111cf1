"""Scene models: taxonomies, resize modes, scene cards, Recognizer columns and multi-output ONNX (synthetic model)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from emotune.data.transforms import Preprocess, scene_train_transform
from emotune.errors import LabelError
from emotune.models import ModelCard, create_model, save_checkpoint
from emotune.taxonomy import MIKELS8, SENTIMENT2, canonical_label, resolve_labels


def test_scene_taxonomies_and_synonyms():
    assert resolve_labels("sentiment2") == ("positive", "negative") == SENTIMENT2
    assert len(resolve_labels("mikels8")) == 8 and "awe" in MIKELS8
    assert [canonical_label(x) for x in ("Pos", "negative", "amused", "Excited", "content", "sadness", "anger")] == \
        ["positive", "negative", "amusement", "excitement", "contentment", "sad", "angry"]
    assert resolve_labels("auto", ["negative", "positive"]) == ("positive", "negative")
    with pytest.raises(LabelError, match="awe"):
        canonical_label("boredom")


@pytest.mark.parametrize("mode", ["squash", "center_crop", "letterbox"])
def test_resize_modes(mode):
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :20] = 255  # a white band on the left quarter
    p = Preprocess(32, (0.5,) * 3, (0.5,) * 3, resize_mode=mode)
    x = p(img)
    assert x.shape == (3, 32, 32)
    left = float(x[0, 16, 0])
    if mode == "center_crop":
        assert left < 0  # the centre square cuts the band away
    elif mode == "letterbox":
        assert float(x[0, 0, 16]) == pytest.approx(-1.0) and float(x[0, 16, 2]) > 0.9  # padded rows, band kept
    else:
        assert left > 0.9
    assert np.allclose(p.batch([img, img])[0], x.numpy(), atol=1e-6)


def test_scene_train_transform_no_face_ops():
    t = scene_train_transform(32, (0.5,) * 3, (0.5,) * 3)
    names = [type(o).__name__ for o in t.transforms]
    assert "RandomResizedCrop" in names and "RandomHorizontalFlip" in names
    assert "RandomRotation" not in str(names) and "RandomErasing" not in names


@pytest.fixture(scope="module")
def scene_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("scene_model")
    card = ModelCard(backbone="resnet10t", labels=["positive", "negative"], input_size=32, mean=[0.5] * 3, std=[0.5] * 3,
                     targets=[{"name": "valence", "column": "valence_mean", "scale": [1, 7]},
                              {"name": "arousal", "column": "arousal_mean", "scale": [1, 7]}],
                     input_kind="scene", resize_mode="center_crop")
    torch.manual_seed(0)
    save_checkpoint(d / "model", create_model("resnet10t", card.num_outputs, None, img_size=32), card)
    return d / "model.json"


def test_recognizer_scene_columns_and_auto_mode(scene_model, caplog):
    from emotune.inference.recognizer import Recognizer

    img = (np.random.default_rng(0).random((60, 90, 3)) * 255).astype(np.uint8)
    with caplog.at_level(logging.WARNING):
        rec = Recognizer(scene_model, device="cpu", backend="torch")  # no scene=True: the card says scene
    assert rec.scene and "scene model" in caplog.text
    (r,) = rec.predict(img)
    assert set(r.probs) == {"positive", "negative"} and set(r.targets) == {"valence", "arousal"}
    assert sum(r.probs.values()) == pytest.approx(1.0, abs=1e-5) and all(-1 <= v <= 1 for v in r.targets.values())
    assert r.box == (0.0, 0.0, 90.0, 60.0)
    from emotune.inference.output import annotate, table_text
    from emotune.inference.recognizer import result_rows

    df = rec.frame_of(result_rows("a.jpg", [r], rec.columns))
    assert {"positive", "negative", "valence", "arousal", "label"} <= set(df.columns)
    text = table_text(df, rec.labels)
    assert "valence" in text and "arousal" in text
    out = annotate(img, [r], rec.labels)
    assert out.shape == img.shape and not np.array_equal(out, img)


def test_onnx_named_outputs_match_torch(scene_model, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx

    from emotune.inference.backend import OnnxBackend, TorchBackend, export_onnx
    from emotune.models import load_checkpoint

    model, card = load_checkpoint(scene_model)
    path = export_onnx(model, card, tmp_path / "scene.onnx")
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["probs", "targets"]
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    a, b = OnnxBackend(path)(x), TorchBackend(model, "cpu", 2)(x)
    assert a.shape == (3, 4) and np.abs(a - b).max() < 1e-4
    from emotune.inference.recognizer import Recognizer

    rec = Recognizer(path, device="cpu", backend="onnx", scene=True)
    (r,) = rec.predict(np.zeros((40, 40, 3), np.uint8))
    assert set(r.targets) == {"valence", "arousal"}


def test_face_model_with_scene_refused(tmp_path):
    """A face model asked for scenes is refused in one line that names the way out (it used to warn and run)."""
    from emotune.errors import ConfigError
    from emotune.inference.recognizer import Recognizer

    card = ModelCard(backbone="resnet10t", labels=["happy", "sad"], input_size=32, mean=[0.5] * 3, std=[0.5] * 3)
    save_checkpoint(tmp_path / "face", create_model("resnet10t", 2, None, img_size=32), card)
    with pytest.raises(ConfigError, match="a face model, not a scene model.*--model SCENE_RUN.*--scene-model") as exc:
        Recognizer(tmp_path / "face.json", device="cpu", backend="torch", scene=True)
    assert "\n" not in str(exc.value)
