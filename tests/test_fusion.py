"""Multi-level feature fusion heads: every registered backbone, checkpoints, ONNX, training and cascades."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emotune.data.synthetic import make_synthetic_dataset
from emotune.errors import ConfigError
from emotune.models import ModelCard, create_model, list_models, load_checkpoint, read_card, save_checkpoint
from emotune.models.fusion import FusionNet
from emotune.train import make_config, train
from emotune.train.engine import layer_groups




@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("mode", ["fusion_concat", "fusion_weighted"])
def test_every_backbone_takes_a_fusion_head(name, mode):
    size = 32 if name != "xception" else 40
    model = create_model(name, 5, None, img_size=size, head={"type": mode, "levels": [-3, -2]})
    assert isinstance(model, FusionNet) and len(model.levels) == 2
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    low = next(p for n, p in model.named_parameters() if n.startswith("backbone.") and p.grad is not None)
    assert low.grad.abs().sum() > 0  # gradients reach the backbone
    groups = layer_groups(model)
    assert any(n.startswith("head.") for n in groups[-1]) and not any(n.startswith("head.") for g in groups[:-1] for n in g)


def test_weighted_levels_are_a_learned_distribution():
    model = create_model("resnet18", 3, None, img_size=32, head={"type": "fusion_weighted", "levels": [1, 2, 3], "dim": 64})
    w = model.head.level_weights()
    assert w.shape == (4,) and torch.allclose(w.sum(), torch.tensor(1.0)) and torch.allclose(w, torch.full((4,), 0.25))
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.head.level_logits.grad is not None


def test_bad_levels_and_modes_are_config_errors():
    with pytest.raises(ConfigError, match="out of range"):
        create_model("resnet18", 3, None, img_size=32, head={"type": "fusion_concat", "levels": [9]})
    with pytest.raises(ConfigError, match="not one of"):
        create_model("resnet18", 3, None, img_size=32, head={"type": "fusion_magic"})


def test_fusion_checkpoint_round_trip_and_onnx_parity(tmp_path, monkeypatch):
    from emotune.inference.backend import OnnxBackend, export_onnx

    model = create_model("mobilenetv2", 4, None, img_size=32, in_chans=1, head={"type": "fusion_weighted", "levels": [-3, -2]})
    card = ModelCard("mobilenetv2", ["happy", "neutral", "sad", "surprise"], 32, [0.5], [0.5], "grayscale", 1, head=model.head_spec())
    save_checkpoint(tmp_path / "m", model, card)
    loaded, c = load_checkpoint(tmp_path / "m.json")
    assert c.head == {"type": "fusion_weighted", "levels": [2, 3], "dim": 256}
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        ref = torch.softmax(loaded(x), 1).numpy()
    export_onnx(loaded, c, tmp_path / "m.onnx")
    assert not loaded.training  # exporting leaves the model as it was
    assert np.abs(OnnxBackend(tmp_path / "m.onnx")(x.numpy()) - ref).max() < 1e-4


def test_training_with_fusion_and_cascading_from_a_plain_checkpoint(tmp_path):
    data = make_synthetic_dataset(tmp_path / "d", per_class=10, size=32, seed=2)
    base = {"data": str(data), "backbone": "mobilenetv2", "img_size": 32, "batch_size": 16, "workers": 0, "progress": False,
            "val_fraction": 0.25, "epochs": 1, "threads": 1}
    plain = train(make_config({**base, "out": str(tmp_path / "plain")}))
    fused = train(make_config({**base, "out": str(tmp_path / "fused"), "head": "fusion_concat", "fusion_levels": "-4,-2",
                               "pretrained": str(plain.run_dir), "strategy": "gradual"}))
    card, _ = read_card(fused.run_dir)
    assert card.head == {"type": "fusion_concat", "levels": [1, 3]}
    remap = card.training["head_remap"]
    assert remap["kept"] == [] and sorted(remap["new"]) == sorted(card.labels)  # a linear head cannot seed a fusion head
    model, _ = load_checkpoint(fused.run_dir)
    plain_model, _ = load_checkpoint(tmp_path / "plain" / "best.json")
    # the stem was frozen in the single gradual epoch, so it still holds the plain run's weights
    assert torch.equal(model.backbone.conv_stem.weight, plain_model.conv_stem.weight)
