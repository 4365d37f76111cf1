"""Metrics against hand-computed values, reports, and `emotune evaluate` on a trained model."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from emotune.data.synthetic import make_synthetic_dataset
from emotune.errors import LabelError
from emotune.evaluate import (average_predictions, compare_predictions, compute_metrics, evaluate_dataset, plot_confusion,
                              prediction_table)
from emotune.train import make_config, train


def test_metrics_match_hand_computed_values():
    labels = ["a", "b", "c"]
    y = [0, 0, 0, 0, 1, 1, 2, 2]
    p = [0, 0, 0, 1, 1, 0, 2, 1]
    m = compute_metrics(y, p, labels)
    assert m.accuracy == pytest.approx(5 / 8)
    assert m.balanced_accuracy == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    assert m.confusion == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]
    f1_a = 2 * (3 / 4 * 3 / 4) / (3 / 4 + 3 / 4)
    f1_b = 2 * (1 / 3 * 1 / 2) / (1 / 3 + 1 / 2)
    f1_c = 2 * (1 * 1 / 2) / (1 + 1 / 2)
    assert m.macro_f1 == pytest.approx((f1_a + f1_b + f1_c) / 3)
    assert [c.support for c in m.per_class] == [4, 2, 2]
    md = m.to_markdown()
    assert "| a | 3 | 1 | 0 |" in md and "macro-F1" in md


def test_absent_class_is_left_out_of_macro_f1():
    m = compute_metrics([0, 0, 1], [0, 0, 1], ["a", "b", "c"])
    assert m.macro_f1 == pytest.approx(1.0) and m.per_class[2].support == 0


def test_confusion_plot_is_a_png(tmp_path):
    m = compute_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["x", "y"])
    path = plot_confusion(m, tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = make_synthetic_dataset(root / "faces", per_class=12, size=40, seed=2, labels=("happy", "sad", "neutral"))
    cfg = make_config({"data": str(data), "backbone": "resnet10t", "img_size": 32, "epochs": 2, "batch_size": 12,
                       "workers": 0, "progress": False, "out": str(root / "run"), "lr": 3e-3})
    train(cfg)
    return root


def test_evaluate_on_a_dataset_with_extra_labels(trained):
    data = make_synthetic_dataset(trained / "test", per_class=5, size=40, seed=9, labels=("happy", "sad", "neutral", "surprise"))
    with pytest.raises(LabelError, match="surprise"):
        evaluate_dataset(trained / "run", data, progress=False)
    rep = evaluate_dataset(trained / "run", data, drop_unknown_labels=True, progress=False, tta=True)
    assert rep.metrics.n == 15 and rep.dropped_labels == {"surprise": 5}
    assert rep.metrics.labels == ["happy", "neutral", "sad"]
    assert sum(map(sum, rep.metrics.confusion)) == 15
    (data / "contempt").mkdir()  # an empty folder of a label left out on purpose is no error
    rep = evaluate_dataset(trained / "run", data, drop_labels=["surprise", "contempt"], progress=False)
    assert rep.metrics.n == 15 and rep.dropped_labels == {"surprise": 5}


def test_cli_evaluate_writes_reports(trained, tmp_path):
    data = make_synthetic_dataset(tmp_path / "d", per_class=4, size=40, seed=5, labels=("happy", "sad", "neutral"))
    (data / "sad" / "bad.jpg").write_text("hello")
    out = subprocess.run([sys.executable, "-m", "emotune.cli", "evaluate", "--model", str(trained / "run"), "--data", str(data),
                          "--format", "json", "--out", str(tmp_path / "rep"), "--no-progress"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["n"] == 12 and {"accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion"} <= set(rep)
    assert "bad.jpg" in out.stderr and len(rep["skipped"]) == 1
    assert (tmp_path / "rep" / "confusion.png").is_file() and (tmp_path / "rep" / "eval.md").is_file()
    import pandas as pd

    preds = pd.read_csv(tmp_path / "rep" / "predictions.csv")
    assert len(preds) == 12 and list(preds.columns[:3]) == ["file", "label", "pred"]
    assert list(preds.columns[3:]) == rep["labels"] and np.allclose(preds[rep["labels"]].sum(axis=1), 1, atol=1e-4)
    assert (preds["label"] == preds["pred"]).mean() == pytest.approx(rep["accuracy"])
    assert not preds["file"].str.contains("bad.jpg").any()


def test_prediction_table_and_paired_comparison():
    labels = ["happy", "sad"]
    y = [0] * 60 + [1] * 40
    a = prediction_table([f"f{i}" for i in range(100)], y, y, labels)  # a is always right
    wrong = [1 - t if i < 30 else t for i, t in enumerate(y)]  # b errs on 30 images a gets right
    b = prediction_table([f"f{i}" for i in range(100)][::-1], y[::-1], wrong[::-1], labels)  # order must not matter
    c = compare_predictions(a, b)
    assert (c.n, c.only_a_right, c.only_b_right) == (100, 30, 0)
    assert c.diff == pytest.approx(-0.3) and c.ci95[0] < -0.3 < c.ci95[1] < 0
    assert c.p_mcnemar == pytest.approx(2 * 0.5 ** 30)  # exact two-sided binomial test on 30 discordant pairs
    assert "-30.0 points" in c.sentence() and compare_predictions(a, a).p_mcnemar == 1.0
    relabelled = a.assign(label="sad")
    with pytest.raises(ValueError, match="true label"):
        compare_predictions(a, relabelled)
    with pytest.raises(ValueError, match="different images: 100 and 99 rows, 99 shared"):
        compare_predictions(a, b.iloc[1:])
    with pytest.raises(ValueError, match="'f0' more than once"):
        compare_predictions(a.assign(file=["f0"] * 100), b)


def test_average_predictions_is_a_probability_ensemble(tmp_path):
    """Two models that are each wrong on different images, but less sure when wrong: their mean is right on all."""
    labels = ["happy", "sad"]
    files, y = [f"f{i}" for i in range(4)], [0, 0, 1, 1]
    pa = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])  # wrong on f1, mildly
    pb = np.array([[0.3, 0.7], [0.9, 0.1], [0.1, 0.9], [0.2, 0.8]])  # wrong on f0, mildly
    a = prediction_table(files, y, pa.argmax(1), labels, pa)
    b = prediction_table(files[::-1], y[::-1], pb.argmax(1)[::-1], labels, pb[::-1])  # row order must not matter
    ens = average_predictions([a, b])
    assert list(ens["file"]) == files and list(ens["pred"]) == ["happy", "happy", "sad", "sad"]
    assert ens["happy"].to_numpy() == pytest.approx((pa[:, 0] + pb[:, 0]) / 2)
    assert list(average_predictions([a, b], weights=[1, 0])["pred"]) == list(a["pred"])  # weights are honoured
    with pytest.raises(ValueError, match="one non-negative weight per table"):
        average_predictions([a, b], weights=[1])
    swapped = b[["file", "label", "pred", "sad", "happy"]]  # the same classes in another column order
    assert average_predictions([a, swapped])["happy"].to_numpy() == pytest.approx(ens["happy"].to_numpy())
    with pytest.raises(ValueError, match="other classes"):
        average_predictions([a, b.rename(columns={"sad": "neutral"})])
    with pytest.raises(ValueError, match="no class probabilities"):
        average_predictions([prediction_table(files, y, y, labels)] * 2)
    with pytest.raises(ValueError, match="tables 1 and 2 hold different images"):
        average_predictions([a, b.iloc[:3]])

    # the script scores the ensemble and writes it
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "ensemble_predictions", Path(__file__).resolve().parents[1] / "scripts" / "ensemble_predictions.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    assert mod.main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "ens")]) == 0
    summary = json.loads((tmp_path / "ens" / "summary.json").read_text())
    assert summary["accuracy"] == 1.0 and summary["n"] == 4 and "+25.0 points" in summary["vs_first"]
    (tmp_path / "bad.csv").write_text("")
    with pytest.raises(SystemExit):
        mod.main([str(tmp_path / "a.csv"), str(tmp_path / "bad.csv")])


def test_evaluate_detect_scores_the_whole_pipeline_on_photos(trained, tmp_path, capsys):
    """--detect: the predict pipeline on labelled photos; a photo without a face counts as wrong end to end."""
    import shutil
    from pathlib import Path

    from emotune.cli import main

    images = Path(__file__).resolve().parents[1].parent / "shared" / "images"
    if not images.is_dir():
        pytest.skip(f"needs real photos in {images} (../shared is absent)")
    photos = tmp_path / "photos"
    for label, name in [("happy", "pyfeat/0-f15-hao-ph.jpg"), ("happy", "astronaut.png"), ("neutral", "grace_hopper.jpg"),
                        ("sad", "rocket.jpg"), ("surprise", "pyfeat/0-f1-su-ph.jpg")]:
        (photos / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(images / name, photos / label / Path(name).name)
    code = main(["evaluate", "--model", str(trained / "run"), "--data", str(photos), "--detect", "--drop-unknown-labels",
                 "--format", "json", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rep = json.loads(out.out)
    assert rep["pipeline"]["photos"] == 4 and rep["pipeline"]["no_face"] == 1  # surprise dropped; the rocket has no face
    assert rep["n"] == 3 and rep["dropped_labels"] == {"surprise": 1}
    correct = sum(rep["confusion"][i][i] for i in range(len(rep["labels"])))
    assert rep["pipeline"]["end_to_end_accuracy"] == round(correct / 4, 4)
    assert "rocket.jpg" in out.err and "no face found" in out.err


def test_paired_interval_is_scipy_s_paired_bootstrap():
    """compare_predictions' interval is scipy.stats.bootstrap (paired, BCa) of the accuracy difference."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    labels = ["happy", "sad"]
    y = rng.integers(0, 2, 300)
    pa = np.where(rng.random(300) < 0.7, y, 1 - y)
    pb = np.where(rng.random(300) < 0.8, y, 1 - y)
    files = [f"f{i:03d}" for i in range(300)]
    c = compare_predictions(prediction_table(files, y, pa, labels), prediction_table(files, y, pb, labels), n_boot=999, seed=5)
    ra, rb = (pa == y).astype(float), (pb == y).astype(float)
    want = bootstrap((ra, rb), lambda a, b, axis: b.mean(axis) - a.mean(axis), paired=True, vectorized=True, n_resamples=999,
                     method="BCa", random_state=np.random.default_rng(5)).confidence_interval
    assert c.ci95 == pytest.approx((want.low, want.high))
    assert c.ci95[0] < c.diff < c.ci95[1]
    same = prediction_table(files, y, pa, labels)
    assert compare_predictions(same, same).ci95 == (0.0, 0.0)  # no discordant image, no spread
