"""The papers' backbones through every research protocol, chained the way a study would use them.

For each backbone (random init: these tests never download): stage 1 trains on two merged sources whose label sets
differ, with the multi-level fusion head; stage 2 cascades onto a target set with another label set (head remapped
by name); then subject-grouped 2-fold cross-validation starts from the cascade's checkpoint and is scored on folds
that no subject crosses. Tiny synthetic faces and one epoch each: this proves the plumbing, not the accuracy.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from emotune.data.synthetic import make_synthetic_dataset
from emotune.models import read_card
from emotune.models.registry import get_model_config
from emotune.protocols.cascade import run_cascade
from emotune.protocols.cv import crossing_subjects, read_folds_csv, run_cv
from emotune.train import make_config

PAPER_BACKBONES = ["resnet18", "resnet50", "vgg16", "xception", "mobilenetv2", "mobilenetv3", "efficientnet_b0",
                   "efficientnet_lite0"]
TINY = {"img_size": 32, "epochs": 1, "batch_size": 8, "workers": 0, "progress": False, "val_fraction": 0.25, "threads": 1,
        "pretrained": "none", "head": "fusion_concat", "fusion_levels": ["-2"]}


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("paper")
    big = make_synthetic_dataset(base / "big", per_class=6, size=32, seed=11)  # happy, sad, neutral, surprise
    lab = make_synthetic_dataset(base / "lab", per_class=4, size=32, seed=12)
    (lab / "neutral").rename(lab / "contempt")  # CK+-like: contempt, no neutral
    target = make_synthetic_dataset(base / "target", per_class=8, size=32, seed=13, subjects=4)
    (target / "neutral").rename(target / "angry")  # a label set of its own: the drawing does not matter
    return {"big": big, "lab": lab, "target": target}


def test_the_papers_backbones_are_registered():
    for name in PAPER_BACKBONES:
        assert get_model_config(name).paper


@pytest.mark.parametrize("backbone", PAPER_BACKBONES)
def test_merge_fusion_cascade_and_grouped_cv(backbone, sets, tmp_path):
    try:
        _chain(backbone, sets, tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)  # VGG16's runs hold GBs of checkpoints; pytest keeps three sessions


def _chain(backbone: str, sets: dict[str, Path], tmp_path: Path) -> None:
    spec = {**TINY, "backbone": backbone, "out": str(tmp_path / "cascade"), "stages": [
        {"name": "merged", "sources": [
            {"name": "big", "data": str(sets["big"]), "missing": ["contempt"], "weight": 1},
            {"name": "lab", "data": str(sets["lab"]), "missing": ["neutral"], "weight": 1}], "epoch_samples": 24},
        {"name": "target", "data": str(sets["target"])},
    ]}
    (tmp_path / "cascade.yaml").write_text(yaml.safe_dump(spec))
    stages = run_cascade(tmp_path / "cascade.yaml").stages
    assert [s.status for s in stages] == ["done", "done"], [s.error for s in stages]
    merged_card, _ = read_card(tmp_path / "cascade" / "1_merged")
    assert set(merged_card.metrics["val_per_source"]) == {"big", "lab"}
    assert merged_card.head["type"] == "fusion_concat"
    assert stages[1].head_remap["new"] == ["angry"] and set(stages[1].head_remap["dropped"]) == {"contempt", "neutral"}

    cfg = make_config({**TINY, "backbone": backbone, "data": str(sets["target"]),
                       "pretrained": str(tmp_path / "cascade" / "2_target"), "out": str(tmp_path / "cv")})
    res = run_cv(cfg, folds=2, group_by="subject", stratify=True)
    assert len(res.folds) == 2 and all(f.ok for f in res.folds), [f.error for f in res.folds]
    samples, fold_of = read_folds_csv(tmp_path / "cv" / "folds.csv")
    assert not crossing_subjects(samples, fold_of)
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert report["backbone"] == backbone and 0.0 <= report["mean"]["accuracy"] <= 1.0
