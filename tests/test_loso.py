"""Leave-one-source-out (emotune.protocols.loso, benchmarks/loso_faces.py): end to end on tiny synthetic sources, the
cluster bootstrap, and errors that name the file before any training starts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emotune.data.synthetic import draw_face, make_synthetic_dataset
from emotune.errors import BadInputError, ConfigError, LabelError
from emotune.protocols.loso import (cluster_bootstrap, markdown, paired_difference, parse_config, plan_folds, run_loso,
                                    scores)

LABELS = "happy,neutral,sad,surprise"


def make_tw(root: Path, subjects: int = 3, per: int = 2) -> Path:
    """A labels.csv folder (Taiwanese layout) with observer votes, 4 classes, `subjects` performers."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(7)
    lines, votes = ["file,subject,label"], ["file,vote_happy,vote_sad,vote_surprise,vote_neutral,vote_centropy"]
    for s in range(1, subjects + 1):
        for lab in ("happy", "neutral", "sad", "surprise"):
            for k in range(per):
                name = f"{s:02d}{lab[:2]}{k}.png"
                draw_face(lab, 48, rng).save(root / "images" / name)
                lines.append(f"{name},{s:02d},{lab}")
                v = {"happy": "0.8,0.1,0,0.1", "neutral": "0.1,0.1,0,0.8", "sad": "0,0.7,0.1,0.2", "surprise": "0.1,0,0.9,0"}[lab]
                votes.append(f"{name},{v},0.4")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    (root / "votes.csv").write_text("\n".join(votes) + "\n")
    return root


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("loso")
    lab = make_synthetic_dataset(root / "lab", per_class=6, size=32, seed=1, labels=("happy", "sad", "surprise"), subjects=3)
    tw = make_tw(root / "tw")
    wild = make_synthetic_dataset(root / "wild", per_class=8, size=32, seed=2)
    wild_val = make_synthetic_dataset(root / "wild_val", per_class=4, size=32, seed=3)
    return root, lab, tw, wild, wild_val


def config(lab, tw, wild, wild_val, **over) -> dict:
    raw = {"labels": LABELS, "detector": "none", "baseline": "wild", "bootstrap": 200,
           "train": {"backbone": "test_resnet", "img_size": 32, "epochs": 2, "batch_size": 8, "workers": 0, "threads": 1,
                     "lr": 0.01, "epoch_samples": 48},
           "sources": [
               {"name": "lab", "data": str(lab), "val_fraction": 0.2, "missing": ["neutral"], "weight": 1,
                "test": {"data": str(lab), "group": "subject"}},
               {"name": "tw", "data": str(tw), "soft_labels": "votes", "val_fraction": 0.2, "weight": 1,
                "test": {"data": str(tw), "group": "subject"}},
               {"name": "wild", "data": str(wild), "val_data": str(wild_val), "weight": 1, "test": {"data": str(wild_val)},
                "train_when_left_out": {"lr": 0.02}}]}
    raw.update(over)
    return raw


def test_loso_end_to_end_on_tiny_sources(sources, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTUNE_CACHE", str(tmp_path / "cache"))
    _, lab, tw, wild, wild_val = sources
    cfg = parse_config(config(lab, tw, wild, wild_val))
    assert [f.name for f in plan_folds(cfg)] == ["without_lab", "without_tw", "without_wild", "only_wild"]
    res = run_loso(cfg, tmp_path / "runs", device="cpu", show=False)
    rows = {(r["left_out"], r["model"]): r for r in res["rows"]}
    assert set(rows) == {("lab", "recipe"), ("tw", "recipe"), ("wild", "recipe"), ("lab", "wild only"), ("tw", "wild only")}
    assert rows[("lab", "recipe")]["trained_on"] == ["tw", "wild"]  # the left-out source is never trained on
    assert rows[("lab", "wild only")]["trained_on"] == ["wild"]
    tw_row = rows[("tw", "recipe")]
    assert tw_row["n"] == 24 and tw_row["clusters"] == 3 and tw_row["grouped_by"] == "subject"
    assert rows[("wild", "recipe")]["grouped_by"] == "image" and rows[("wild", "recipe")]["clusters"] == 16
    assert rows[("lab", "recipe")]["classes"] == ["happy", "sad", "surprise"]  # metrics over the classes present
    # per-photo predictions, so two recipes scored on the same photos can be paired (benchmarks/loso_levers.py)
    assert len(tw_row["photos"]) == 24 and {p["group"] for p in tw_row["photos"]} == set(tw_groups := {p["group"] for p in tw_row["photos"]})
    assert len(tw_groups) == 3 and np.mean([p["true"] == p["pred"] for p in tw_row["photos"]]) == pytest.approx(tw_row["accuracy"])
    assert paired_difference(rows[("lab", "recipe")], rows[("lab", "wild only")], 50)["n"] == rows[("lab", "recipe")]["n"]
    for r in res["rows"]:
        for m in ("accuracy", "balanced_accuracy", "macro_f1"):
            lo, hi = r["ci95"][m]
            assert 0 <= lo <= hi <= 1
    # soft targets reached training: the tw source's votes were read
    summary = json.loads((tmp_path / "runs" / "without_lab" / "summary.json").read_text())
    assert summary["data"]["soft_targets"] is True
    import yaml

    lrs = {f: yaml.safe_load((tmp_path / "runs" / f / "config.yaml").read_text())["lr"] for f in ("without_lab", "without_wild")}
    assert lrs == {"without_lab": 0.01, "without_wild": 0.02}  # train_when_left_out applies to its own fold only
    md = (tmp_path / "runs" / "loso.md").read_text()
    assert "| tw | recipe | lab, wild | 24 | 3 |" in md and "| lab | wild only | wild |" in md and "Recipe vs baseline" in md
    assert json.loads((tmp_path / "runs" / "loso.json").read_text())["kind"] == "emotune-loso/1"
    # finished folds are not trained again
    stamp = (tmp_path / "runs" / "without_lab" / "summary.json").stat().st_mtime_ns
    run_loso(parse_config(config(lab, tw, wild, wild_val)), tmp_path / "runs", device="cpu", show=False, only=["lab"])
    assert (tmp_path / "runs" / "without_lab" / "summary.json").stat().st_mtime_ns == stamp
    assert "## Command" in markdown(res, "python benchmarks/loso_faces.py", "test machine")


def test_cluster_bootstrap_resamples_subjects_not_images():
    rng = np.random.default_rng(0)
    # 10 subjects of 20 images: half the subjects always right, half always wrong -> accuracy 0.5, wide interval
    y = np.zeros(200, int)
    pred = np.repeat(np.tile([0, 1], 5), 20)
    groups = np.repeat([f"s{i}" for i in range(10)], 20)
    by_subject = cluster_bootstrap(y, pred, groups, [0], 500, 0)["accuracy"]
    by_image = cluster_bootstrap(y, pred, [f"i{i}" for i in range(200)], [0], 500, 0)["accuracy"]
    assert by_subject[0] <= 0.5 <= by_subject[1]
    assert (by_subject[1] - by_subject[0]) > 2 * (by_image[1] - by_image[0])  # clusters are not independent images
    s = scores(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), [0, 1])  # 2 = "no face": wrong, not a class of its own
    assert s["accuracy"] == 0.75 and s["balanced_accuracy"] == 0.75 and s["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert rng is not None


def test_loso_refuses_bad_sources_before_training(sources, tmp_path):
    root, lab, tw, wild, wild_val = sources
    nosubj = make_synthetic_dataset(root / "nosubj", per_class=3, size=32, seed=4, labels=("happy", "sad", "surprise"))
    raw = config(lab, tw, wild, wild_val)
    raw["sources"][0] = {**raw["sources"][0], "data": str(nosubj), "test": {"data": str(nosubj), "group": "subject"}}
    with pytest.raises(BadInputError, match=r"nosubj/happy/happy_0000\.png: no subject .*\(test\.group: subject\)"):
        run_loso(parse_config(raw), tmp_path / "a", device="cpu", show=False)
    assert not (tmp_path / "a" / "without_lab").exists()  # nothing was trained
    contempt = make_synthetic_dataset(root / "contempt", per_class=3, size=32, seed=5, labels=("happy", "sad"), subjects=2)
    (contempt / "sad").rename(contempt / "contempt")
    raw = config(lab, tw, wild, wild_val)
    raw["sources"][0] = {**raw["sources"][0], "data": str(contempt), "test": {"data": str(contempt)}}
    with pytest.raises(LabelError, match=r"'contempt' \(e\.g\. .*contempt/S00\d_sad_0000\.png\) are not among the model's labels"):
        run_loso(parse_config(raw), tmp_path / "b", device="cpu", show=False)
    with pytest.raises(ConfigError, match="set by the protocol"):
        parse_config({**config(lab, tw, wild, wild_val), "train": {"out": "x"}})
    with pytest.raises(ConfigError, match="baseline 'nope'"):
        parse_config(config(lab, tw, wild, wild_val, baseline="nope"))
    with pytest.raises(ConfigError, match="test.group must be subject or none"):
        bad = config(lab, tw, wild, wild_val)
        bad["sources"][0]["test"]["group"] = "performer"
        parse_config(bad)


def _row(preds: list[str], truth: list[str], groups: list[str]) -> dict:
    return {"left_out": "ckplus", "photos": [{"id": f"p{i}", "group": g, "true": t, "pred": p}
                                             for i, (p, t, g) in enumerate(zip(preds, truth, groups))]}


def test_paired_difference_resamples_subjects_on_the_same_photos():
    truth = ["happy", "sad"] * 20
    groups = [f"S{i // 4}" for i in range(40)]  # 10 subjects of 4 photos
    base = _row(["happy"] * 40, truth, groups)  # right on half
    same = paired_difference(base, base, 200)
    assert same["accuracy"]["diff"] == 0 and same["accuracy"]["ci95"] == [0.0, 0.0] and same["clusters"] == 10
    better = _row(truth[:36] + ["happy"] * 4, truth, groups)  # right everywhere but the last subject's sad photos
    d = paired_difference(base, better, 500)
    assert d["accuracy"]["base"] == 0.5 and d["accuracy"]["other"] == pytest.approx(38 / 40)
    assert d["accuracy"]["diff"] == pytest.approx(0.45) and 0 < d["accuracy"]["ci95"][0] <= 0.45 <= d["accuracy"]["ci95"][1]
    with pytest.raises(ConfigError, match="same photos"):
        paired_difference(base, _row(["happy"] * 39, truth[:39], groups[:39]))
