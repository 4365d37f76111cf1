"""Continuous targets beside classes: scales, losses, metrics, the regression and multi-task engine, evaluation,
cross-validation and the model card. Synthetic data only (brightness encodes valence, a stripe the class)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from emotune.data.sources import load_manifest
from emotune.data.targets import from_unit, parse_scale, parse_targets, to_unit
from emotune.errors import BadInputError, CheckpointError, ConfigError
from emotune.losses import CCCLoss, MaskedMSELoss, MixLoss, create_loss
from emotune.models import ModelCard, load_checkpoint
from emotune.train import make_config, train

BASE = {"backbone": "resnet10t", "img_size": 32, "batch_size": 16, "workers": 0, "progress": False, "val_fraction": 0.25,
        "lr": 3e-3, "erasing": 0.0, "rotation": 0.0, "threads": 1}


# ============================================================== scales
def test_scale_mapping_by_end_points_and_back():
    assert [to_unit(v, (1, 7)) for v in (1, 4, 7)] == [-1.0, 0.0, 1.0]
    assert to_unit(0, (-10, 10)) == 0.0 and to_unit(-10, (-10, 10)) == -1.0
    assert from_unit(np.array([-1.0, 0.0, 1.0]), (1, 9)).tolist() == [1.0, 5.0, 9.0]
    assert parse_scale("1,7") == (1.0, 7.0) and parse_scale("-10..10") == (-10.0, 10.0) and parse_scale("auto") is None
    with pytest.raises(ConfigError, match="low end"):
        parse_scale("7,1")
    with pytest.raises(ConfigError, match="not a scale"):
        parse_scale("one,seven")
    assert [t.name for t in parse_targets(["valence_mean", "arousal_mean"])] == ["valence", "arousal"]
    with pytest.raises(ConfigError, match="same output name"):
        parse_targets(["valence_mean", "valence_sd"])


# ============================================================== losses
def test_ccc_loss_perfect_and_masked():
    t = torch.tensor([[0.1, -0.5], [0.4, float("nan")], [-0.3, 0.2], [0.8, 0.9]])
    p = torch.nan_to_num(t.clone(), nan=5.0)  # the NaN cell's prediction must not matter
    assert float(CCCLoss()(p, t)) == pytest.approx(0.0, abs=1e-5)
    assert float(MaskedMSELoss()(p, t)) == pytest.approx(0.0, abs=1e-7)
    shrunk = p * 0.1  # perfectly correlated but shrunk to the mean: MSE barely sees it, CCC does
    assert float(CCCLoss()(shrunk, t)) > 0.5
    assert float(MixLoss(0.5)(shrunk, t)) == pytest.approx(0.5 * float(CCCLoss()(shrunk, t)) + 0.5 * float(MaskedMSELoss()(shrunk, t)))
    all_nan = torch.full((3, 1), float("nan"))
    x = torch.randn(3, 1, requires_grad=True)
    assert float(create_loss("ccc")(x, all_nan)) == 0.0 and float(create_loss("mse")(x, all_nan)) == 0.0
    with pytest.raises(ConfigError, match="choose one of"):
        create_loss("huber")


# ============================================================== metrics
def test_regression_metrics_with_bootstrap_intervals():
    from emotune.evaluate.regression import compute_regression

    rng = np.random.default_rng(0)
    true = rng.uniform(-1, 1, (200, 2))
    true[:20, 1] = np.nan
    pred = true + rng.normal(0, 0.1, true.shape)
    m = compute_regression(pred, true, ["valence", "arousal"])
    v, a = m.targets
    assert v.n == 200 and a.n == 180
    assert v.values["ccc"] > 0.9 and v.values["pearson"] > 0.9 and v.values["rmse"] < 0.2 and v.values["sagr"] > 0.85
    lo, hi = v.ci["ccc"]
    assert lo < v.values["ccc"] < hi and hi - lo < 0.1
    assert set(m.summary()) >= {"ccc", "valence_ccc", "arousal_mae"}
    assert "valence" in m.to_markdown()


# ============================================================== data with targets
def _scene_images(root: Path, n: int = 48, seed: int = 0, scale=(1, 7)) -> Path:
    from emotune.data.synthetic import make_synthetic_scenes

    return make_synthetic_scenes(root, n, seed, scale)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return _scene_images(tmp_path_factory.mktemp("scenes"))


def test_manifest_targets_on_their_scale(scenes):
    s = load_manifest(scenes, targets=["valence_mean", "arousal_mean"], target_scale="1,7")
    assert set(s[0].targets) == {"valence", "arousal"} and s[0].target_scale == (1.0, 7.0) and s[0].group == "g0"
    assert all(-1 <= v <= 1 for x in s for v in x.targets.values())


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("cell, problem", [("high", "not a number"), ("nan", "finite"), ("9.5", "outside its scale")])
def test_bad_target_values_name_file_and_line(tmp_path, cell, problem):
    m = _write(tmp_path / "m.csv", f"path,label,valence\na.png,happy,3\nb.png,sad,{cell}\n")
    with pytest.raises(BadInputError, match=rf"m\.csv:3.*{problem}"):
        load_manifest(m, targets=["valence"], target_scale="1,7")


def test_missing_target_column_and_uninferable_scale(tmp_path):
    m = _write(tmp_path / "m.csv", "path,label,valence\na.png,happy,3\n")
    with pytest.raises(BadInputError, match=r"m\.csv.*lacks column.*arousal"):
        load_manifest(m, targets=["valence", "arousal"], target_scale="1,7")
    with pytest.raises(BadInputError, match=r"m\.csv.*cannot infer the scale.*--target-scale"):
        load_manifest(m, targets=["valence"])


def test_empty_cell_is_not_annotated(tmp_path):
    m = _write(tmp_path / "m.csv", "path,label,valence\na.png,happy,\nb.png,,2\n")
    s = load_manifest(m, targets=["valence"], target_scale="1,7")
    assert math.isnan(s[0].targets["valence"]) and s[1].label == ""


# ============================================================== card
def test_card_targets_bound_and_convertible(tmp_path):
    from emotune.models import create_model, save_checkpoint

    card = ModelCard(backbone="resnet10t", labels=[], input_size=32, mean=[0.5] * 3, std=[0.5] * 3,
                     targets=[{"name": "valence", "column": "valence_mean", "scale": [1, 7]}], input_kind="scene",
                     resize_mode="center_crop")
    model = create_model("resnet10t", card.num_outputs, None, img_size=32)
    save_checkpoint(tmp_path / "m", model, card)
    m2, c2 = load_checkpoint(tmp_path / "m.json")
    assert c2.targets[0]["scale"] == [1, 7] and c2.input_kind == "scene" and c2.to_source_scale("valence", 0.0) == 4.0
    assert m2(torch.zeros(1, 3, 32, 32)).shape == (1, 1)
    d = json.loads((tmp_path / "m.json").read_text())
    d["targets"][0]["scale"] = [1, 9]  # edited: would convert back wrongly
    (tmp_path / "m.json").write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="targets"):
        load_checkpoint(tmp_path / "m.json")


# ============================================================== engine: regression and multi-task
def test_regression_run_learns_and_reports(tmp_path, scenes):
    from emotune.evaluate import evaluate_dataset

    cfg = make_config({**BASE, "data": str(scenes), "out": str(tmp_path / "run"), "epochs": 6, "targets": ["valence_mean"],
                       "target_scale": "1,7", "labels": "auto", "input_kind": "scene"})
    cfg.labels = "auto"
    res = train(cfg)
    card = json.loads((res.run_dir / "best.json").read_text())
    # a manifest with labels and targets: multi-task; the card keeps the source scale and the input kind
    assert card["labels"] == ["positive", "negative"] and card["targets"][0] == {"name": "valence", "column": "valence_mean", "scale": [1.0, 7.0]}
    assert card["input_kind"] == "scene" and card["resize_mode"] == "center_crop"
    assert "valence" in card["metrics"]["val_per_target"]
    log = (res.run_dir / "log.csv").read_text().splitlines()[0]
    assert "val_valence_ccc" in log and "val_macro_f1" in log
    rep = evaluate_dataset(res.run_dir, scenes, progress=False)
    assert rep.regression.targets[0].n == 48 and rep.regression.targets[0].values["ccc"] > 0.3
    assert "ccc" in rep.regression.targets[0].ci
    written = rep.write(tmp_path / "eval")
    assert (tmp_path / "eval" / "scatter.png").is_file() and (tmp_path / "eval" / "confusion.png").is_file()
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["targets"]["valence"]["ccc_ci"]
    assert {"valence", "true_valence", "positive"} <= set(rep.predictions.columns)


def test_regression_only_and_refusals(tmp_path, scenes):
    from emotune.evaluate import evaluate_dataset
    from emotune.data.synthetic import make_synthetic_dataset

    rows = [r for r in csv.DictReader(open(scenes))]
    (scenes.parent / "iaps.csv").write_text("IAPS,valmn,aromn\n1050,3.5,6.1\n")
    reg = scenes.parent / "reg.csv"
    with open(reg, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "valence_mean", "arousal_mean", "group"])
        w.writeheader()
        w.writerows({k: r[k] for k in ("path", "valence_mean", "arousal_mean", "group")} for r in rows)
    cfg = make_config({**BASE, "data": str(reg), "out": str(tmp_path / "run"), "epochs": 2, "targets": ["valence_mean", "arousal_mean"],
                       "target_scale": "1,7", "loss": "ccc+mse"})
    res = train(cfg)
    model, card = load_checkpoint(res.run_dir)
    assert card.labels == [] and card.target_names == ["valence", "arousal"]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    faces = make_synthetic_dataset(tmp_path / "faces", per_class=3, size=32, seed=1)
    with pytest.raises(ConfigError, match="regression model.*classification dataset"):
        evaluate_dataset(res.run_dir, faces, progress=False)
    cls = train(make_config({**BASE, "data": str(faces), "out": str(tmp_path / "cls"), "epochs": 1}))
    with pytest.raises(BadInputError, match="lacks column.*label.*without classes"):
        evaluate_dataset(cls.run_dir, reg, data_format="manifest", progress=False)
    from emotune.evaluate.loop import labelled_samples

    with pytest.raises(ConfigError, match="classification model cannot be scored on images without a class"):
        labelled_samples(["positive", "negative"], scenes.parent / "iaps.csv")


# ============================================================== cross-validation
def test_cv_regression_grouped_and_stratified_on_binned_targets(tmp_path, scenes):
    from emotune.data.sources import load_manifest
    from emotune.protocols.cv.folds import assign_folds, read_folds_csv
    from emotune.protocols.cv.runner import run_cv

    samples = load_manifest(scenes, targets=["valence_mean"], target_scale="1,7")
    plan = assign_folds(samples, 3, "group", stratify=True, seed=0)
    assert plan.scheme == "StratifiedGroupKFold"
    by_group = {}
    for s, f in zip(samples, plan.fold_of):
        by_group.setdefault(s.group, set()).add(f)
    assert all(len(v) == 1 for v in by_group.values())  # no group crosses folds
    for f in (1, 2, 3):  # every fold spans the valence range
        vals = [s.targets["valence"] for s, g in zip(samples, plan.fold_of) if g == f]
        assert min(vals) < -0.3 and max(vals) > 0.3
    cfg = make_config({**BASE, "data": str(scenes), "out": str(tmp_path / "cv"), "epochs": 1, "targets": ["valence_mean"],
                       "target_scale": "1,7"})
    res = run_cv(cfg, 2, "group", True)
    assert not res.failed, [f.error for f in res.failed]
    assert {"accuracy", "ccc", "valence_ccc", "valence_sagr"} <= set(res.mean) and res.std["valence_ccc"] >= 0
    md = (tmp_path / "cv" / "cv.md").read_text()
    assert "valence CCC" in md and "±" in md
    back, folds = read_folds_csv(tmp_path / "cv" / "folds.csv")
    assert back[0].targets["valence"] == pytest.approx(samples[0].targets["valence"], abs=1e-6) and back[0].group == "g0"
    card = json.loads((tmp_path / "cv" / "fold_1" / "best.json").read_text())
    assert card["targets"][0]["scale"] == [1.0, 7.0]  # fold models keep the source scale
