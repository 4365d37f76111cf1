"""Dataset merging: explicit label maps, explicit missing classes, per-source draw shares and per-source metrics."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from emotune.data.merge import load_merged, parse_sources, source_sample_weights
from emotune.data.synthetic import make_synthetic_dataset
from emotune.errors import BadInputError, ConfigError, LabelError
from emotune.models import read_card
from emotune.train import make_config, train
from emotune.train.config import add_arguments


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:  # happy, neutral, sad, surprise ("FER2013-like": has neutral)
    return make_synthetic_dataset(tmp_path_factory.mktemp("big"), per_class=12, size=32, seed=5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:  # happy, sad, surprise, contempt ("CK+-like": no neutral, has contempt)
    root = make_synthetic_dataset(tmp_path_factory.mktemp("lab"), per_class=6, size=32, seed=6)
    (root / "neutral").rename(root / "contempt")
    return root


def test_a_missing_class_must_be_acknowledged(big, lab):
    specs = parse_sources([{"name": "big", "data": str(big)}, {"name": "lab", "data": str(lab)}])
    with pytest.raises(ConfigError) as e:
        load_merged(specs, "auto", seed=0)
    msg = str(e.value)
    assert "'big' has no ['contempt']" in msg and "'lab' has no ['neutral']" in msg and "missing:" in msg
    specs = parse_sources([{"name": "big", "data": str(big), "missing": ["contempt"]},
                           {"name": "lab", "data": str(lab), "missing": ["neutral"]}])
    m = load_merged(specs, "auto", seed=0, default_val_fraction=0.25)
    assert m.labels == ("happy", "neutral", "sad", "surprise", "contempt")
    assert {s.dataset for s in m.train} == {"big", "lab"} and {s.dataset for s in m.val} == {"big", "lab"}
    assert m.describe["sources"]["lab"]["missing"] == ["neutral"]


def test_label_map_merges_and_drops(big, lab):
    specs = parse_sources([{"name": "big", "data": str(big), "label_map": {"neutral": None}, "missing": ["disgust"]},
                           {"name": "lab", "data": str(lab), "label_map": {"contempt": "Disgust"}}])
    m = load_merged(specs, "auto", seed=0, default_val_fraction=0.2)
    assert m.labels == ("disgust", "happy", "sad", "surprise")
    lab_counts = Counter(s.label for s in m.train + m.val if s.dataset == "lab")
    assert lab_counts["disgust"] == 6 and "contempt" not in lab_counts
    assert not any(s.label == "neutral" for s in m.train + m.val)
    unacknowledged = parse_sources([{"name": "big", "data": str(big), "label_map": {"neutral": None}},
                                    {"name": "lab", "data": str(lab), "label_map": {"contempt": "disgust"}}])
    with pytest.raises(ConfigError, match="'big' has no \\['disgust'\\]"):  # mapping made disgust a label big lacks
        load_merged(unacknowledged, "auto", seed=0)


def test_empty_folders_of_classes_a_source_leaves_out_are_excused(tmp_path):
    """A source's `label_map: {x: null}` and `missing: [x]` excuse an empty x/ folder, as --drop-labels does."""
    a = make_synthetic_dataset(tmp_path / "a", per_class=4, size=16, seed=1, labels=("happy", "sad"))
    b = make_synthetic_dataset(tmp_path / "b", per_class=4, size=16, seed=2, labels=("happy", "sad"))
    (a / "fear").mkdir()
    (b / "angry").mkdir()
    raw = [{"name": "a", "data": str(a), "label_map": {"fear": None}}, {"name": "b", "data": str(b), "missing": ["angry"]}]
    m = load_merged(parse_sources(raw), "auto", seed=0, default_val_fraction=0.25)
    assert m.labels == ("happy", "sad")
    with pytest.raises(BadInputError, match="'angry' holds no images"):  # b without its `missing`
        load_merged(parse_sources([raw[0], {**raw[1], "missing": []}]), "auto", seed=0)
    (a / "angry").mkdir()  # excused for b only, not for a
    with pytest.raises(BadInputError, match="'angry' holds no images"):
        load_merged(parse_sources(raw), "auto", seed=0)


def test_bad_source_specs_are_explicit(big):
    with pytest.raises(ConfigError, match="unknown key"):
        parse_sources([{"name": "a", "data": str(big), "wieght": 2}])
    with pytest.raises(ConfigError, match="every source or to none"):
        parse_sources([{"name": "a", "data": str(big), "weight": 2}, {"name": "b", "data": str(big)}])
    with pytest.raises(ConfigError, match="unique"):
        parse_sources([{"name": "a", "data": str(big)}, {"name": "a", "data": str(big)}])
    with pytest.raises(LabelError, match="unknown emotion label 'joyful'"):
        parse_sources([{"name": "a", "data": str(big), "label_map": {"happy": "joyful"}}])


def test_weights_set_each_sources_share_of_draws(big, lab):
    specs = parse_sources([{"name": "big", "data": str(big), "missing": ["contempt"], "weight": 1},
                           {"name": "lab", "data": str(lab), "missing": ["neutral"], "weight": 3}])
    m = load_merged(specs, "auto", seed=0, default_val_fraction=0.2)
    w = source_sample_weights(m.train, specs)
    names = np.array([s.dataset for s in m.train])
    assert w[names == "lab"].sum() / w.sum() == pytest.approx(0.75)
    draws = torch.multinomial(torch.tensor(w), 20000, replacement=True, generator=torch.Generator().manual_seed(0)).numpy()
    assert (names[draws] == "lab").mean() == pytest.approx(0.75, abs=0.02)
    natural = parse_sources([{"name": "big", "data": str(big)}, {"name": "lab", "data": str(lab)}])
    assert source_sample_weights(m.train, natural) is None


def test_training_on_merged_sources_reports_per_source_metrics(tmp_path, big, lab):
    cfg = make_config({"sources": [{"name": "big", "data": str(big), "missing": ["contempt"], "weight": 1},
                                   {"name": "lab", "data": str(lab), "missing": ["neutral"], "weight": 1}],
                       "backbone": "mobilenetv2", "img_size": 32, "batch_size": 16, "workers": 0, "progress": False,
                       "val_fraction": 0.25, "epochs": 1, "threads": 1, "out": str(tmp_path / "run")})
    res = train(cfg)
    card, _ = read_card(res.run_dir)
    assert set(card.metrics["val_per_source"]) == {"big", "lab"}
    n = {k: v["n"] for k, v in card.metrics["val_per_source"].items()}
    assert n["big"] + n["lab"] == card.metrics["val"]["n"]
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert set(summary["best_per_source"]) == {"big", "lab"} and set(summary["data"]["sources"]) == {"big", "lab"}
    assert card.labels == ["happy", "neutral", "sad", "surprise", "contempt"]


def test_sources_are_yaml_only_and_exclusive_with_data(big):
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert "--sources" not in p.format_help()
    with pytest.raises(ConfigError, match="either data or sources"):
        make_config({"data": str(big), "sources": [{"data": str(big)}]})


def test_epoch_samples_sets_the_draws_per_epoch_and_keeps_source_shares(big, lab):
    from emotune.train.engine import build_data, make_loaders

    sources = [{"name": "big", "data": str(big), "missing": ["contempt"], "weight": 1},
               {"name": "lab", "data": str(lab), "missing": ["neutral"], "weight": 3}]
    base = {"sources": sources, "img_size": 32, "batch_size": 8, "workers": 0, "val_fraction": 0.25}
    data = build_data(make_config(base), 32, (0.5,), (0.5,))
    natural, _ = make_loaders(make_config(base), data, torch.device("cpu"))
    budget, _ = make_loaders(make_config({**base, "epoch_samples": 4000}), data, torch.device("cpu"))
    assert len(natural.sampler) == len(data.train) and len(budget.sampler) == 4000 and len(budget) == 500
    names = np.array([s.dataset for s in data.train.samples])
    assert (names == "lab").mean() < 0.4  # lab is the smaller source...
    assert (names[list(budget.sampler)] == "lab").mean() == pytest.approx(0.75, abs=0.03)  # ...but gets 3/4 of the draws
    plain = make_config({"data": str(big), "drop_labels": ["neutral"], "img_size": 32, "batch_size": 8, "workers": 0,
                         "epoch_samples": 24})
    loader, _ = make_loaders(plain, build_data(plain, 32, (0.5,), (0.5,)), torch.device("cpu"))
    assert len(loader.sampler) == 24 and len(loader) == 3
    tiny = make_config({**base, "epoch_samples": 5})
    with pytest.raises(ConfigError, match="less than one batch"):
        make_loaders(tiny, data, torch.device("cpu"))


def test_monitor_source_picks_the_best_epoch_on_one_sources_validation(tmp_path, big, lab):
    sources = [{"name": "big", "data": str(big), "missing": ["contempt"], "weight": 1},
               {"name": "lab", "data": str(lab), "missing": ["neutral"], "weight": 1}]
    base = {"sources": sources, "backbone": "test_resnet", "img_size": 32, "batch_size": 8, "workers": 0, "progress": False,
            "val_fraction": 0.25, "epochs": 4, "threads": 1, "lr": 0.01, "monitor": "accuracy"}
    res = train(make_config({**base, "monitor_source": "lab", "out": str(tmp_path / "run")}))
    lab_acc = [row["per_source"]["lab"]["accuracy"] for row in res.history]
    assert res.best_epoch == 1 + lab_acc.index(max(lab_acc))  # the first epoch reaching the best lab score
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["monitor_source"] == "lab" and summary["best_per_source"]["lab"]["accuracy"] == max(lab_acc)

    with pytest.raises(ConfigError, match="monitor_source 'nope'"):
        train(make_config({**base, "epochs": 1, "monitor_source": "nope", "out": str(tmp_path / "bad")}))
    with pytest.raises(ConfigError, match="single dataset"):
        make_config({"data": str(big), "monitor_source": "lab"})
    with pytest.raises(ConfigError, match="not the loss"):
        make_config({"sources": sources, "monitor_source": "lab", "monitor": "loss"})
    with pytest.raises(ConfigError, match="epoch_samples"):
        make_config({"sources": sources, "epoch_samples": -1})
