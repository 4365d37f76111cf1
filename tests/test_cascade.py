"""Cascaded fine-tuning: stages chain through checkpoints, the head is remapped by label name, stages resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from emotune.data.synthetic import make_synthetic_dataset
from emotune.errors import CheckpointError, ConfigError
from emotune.models import create_model, load_checkpoint, read_card
from emotune.models.registry import classifier_prefix
from emotune.protocols.cascade import run_cascade, stage_configs
from emotune.train import make_config, train

SHARED = {"backbone": "mobilenetv2", "img_size": 32, "batch_size": 16, "workers": 0, "progress": False, "val_fraction": 0.25,
          "lr": 3e-3}




@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:  # the "large" source set: four classes
    return make_synthetic_dataset(tmp_path_factory.mktemp("big"), per_class=16, size=36, seed=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:  # the target set: a different label set (neutral dropped, angry added)
    root = make_synthetic_dataset(tmp_path_factory.mktemp("small"), per_class=10, size=36, seed=4)
    (root / "neutral").rename(root / "angry")  # the drawing does not matter, the label set does
    return root


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, big) -> Path:
    out = tmp_path_factory.mktemp("src") / "run"
    train(make_config({**SHARED, "data": str(big), "epochs": 2, "out": str(out)}))
    return out


def head_weight(model) -> torch.Tensor:
    return dict(model.named_parameters())[classifier_prefix(model) + ".weight"]


def test_head_is_remapped_by_label_name(source_run):
    src_model, src_card = load_checkpoint(source_run)
    labels = ["surprise", "angry", "happy"]
    model = create_model("mobilenetv2", 3, str(source_run), img_size=32, labels=labels)
    remap = model.head_remap
    assert remap.kept == ["surprise", "happy"] and remap.new == ["angry"] and set(remap.dropped) == {"neutral", "sad"}
    w_src, w = head_weight(src_model), head_weight(model)
    assert torch.equal(w[0], w_src[src_card.labels.index("surprise")])
    assert torch.equal(w[2], w_src[src_card.labels.index("happy")])
    assert not any(torch.equal(w[1], row) for row in w_src)  # the new class starts fresh
    body = {k: v for k, v in src_model.state_dict().items() if not k.startswith(classifier_prefix(model))}
    mine = model.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in body.items())


def test_checkpoint_of_another_backbone_is_refused(source_run):
    with pytest.raises(CheckpointError, match="does not fit"):
        create_model("resnet18", 2, str(source_run), img_size=32, labels=["happy", "sad"])


def test_freeze_keeps_named_layers_fixed(tmp_path, small, source_run):
    out = tmp_path / "frozen"
    train(make_config({**SHARED, "data": str(small), "epochs": 1, "out": str(out), "pretrained": str(source_run),
                       "freeze": "conv_stem,blocks.0"}))
    before = load_file(str(Path(source_run) / "best.safetensors"))
    after = load_file(str(out / "best.safetensors"))
    assert torch.equal(before["conv_stem.weight"], after["conv_stem.weight"])
    assert not torch.equal(before["blocks.6.0.conv_pw.weight"], after["blocks.6.0.conv_pw.weight"])
    with pytest.raises(ConfigError, match="match no parameter"):
        train(make_config({**SHARED, "data": str(small), "epochs": 1, "out": str(tmp_path / "bad"), "freeze": "not_a_layer"}))


def test_two_stage_cascade_runs_reports_and_resumes(tmp_path, big, small, monkeypatch):
    cfg = tmp_path / "cascade.yaml"
    cfg.write_text(yaml.safe_dump({**SHARED, "out": str(tmp_path / "cas"), "stages": [
        {"name": "big", "data": str(big), "epochs": 1},
        {"name": "target", "data": str(small), "epochs": 1, "lr": 1e-3, "freeze": ["conv_stem"]},
    ]}))
    res = run_cascade(cfg)
    assert [s.status for s in res.stages] == ["done", "done"]
    s2 = res.stages[1]
    assert s2.started_from.endswith("1_big/best.json")
    assert s2.head_remap["new"] == ["angry"] and "neutral" in s2.head_remap["dropped"]
    card, _ = read_card(tmp_path / "cas" / "2_target")
    assert card.labels == ["angry", "happy", "sad", "surprise"] and card.training["head_remap"]["kept"] == ["happy", "sad", "surprise"]
    report = json.loads((tmp_path / "cas" / "cascade.json").read_text())
    assert len(report["stages"]) == 2 and "| 2 | target |" in (tmp_path / "cas" / "cascade.md").read_text()

    calls = []
    import emotune.train as tr

    monkeypatch.setattr(tr, "train", lambda c: calls.append(c) or pytest.fail("a completed stage was retrained"))
    again = run_cascade(cfg)
    assert [s.status for s in again.stages] == ["skipped", "skipped"] and not calls


def test_stage_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="stages"):
        stage_configs({"backbone": "resnet18"}, tmp_path)
    with pytest.raises(ConfigError, match="only the first stage"):
        stage_configs({"stages": [{"data": "a"}, {"data": "b", "pretrained": "x.pth"}]}, tmp_path)
