"""Generative augmentation (issue 17): the generator's run folder and resume, synthetic sets, the synthetic merge
source, leak checks under cross-validation, quality measures and the one-line errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from emotune import cli
from emotune.data.synthetic import make_synthetic_dataset
from emotune.errors import CheckpointError, ConfigError

TINY = dict(img_size=16, z_dim=8, g_width=4, d_width=4, batch_size=8, steps_per_epoch=2, grid_per_class=2, min_per_class=4,
            progress=False, threads=1)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """Cartoon faces, 4 classes x 12, with CK+-style subject prefixes (4 subjects)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("faces") / "faces", per_class=12, size=24, subjects=4)


def config(data, out, **kw):
    from emotune.synth.config import SynthConfig

    return SynthConfig(data=str(data), out=str(out), **{**TINY, **kw})


def train(data, out, **kw):
    from emotune.synth.train import train_generator

    return train_generator(config(data, out, **kw))


@pytest.fixture(scope="module")
def gen_run(faces, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "run"
    train(faces, out, epochs=2)
    return out


def test_run_folder_has_the_train_habits(gen_run):
    for name in ("config.yaml", "log.csv", "train_images.csv", "last.json", "last.safetensors", "train_state.safetensors",
                 "samples.png", "samples/epoch_001.png", "samples/epoch_002.png", "summary.json"):
        assert (gen_run / name).is_file(), name
    rows = list(csv.DictReader(open(gen_run / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(float(r["seconds"]) > 0 for r in rows)
    card = json.loads((gen_run / "last.json").read_text())
    assert card["kind"] == "generator" and card["head"]["type"] == "generator" and card["labels"] == ["happy", "neutral", "sad", "surprise"]
    assert len(list(csv.DictReader(open(gen_run / "train_images.csv")))) == 48
    from PIL import Image

    grid = Image.open(gen_run / "samples.png")
    assert grid.height >= 4 * 16 * 2  # one row per class


def test_a_classifier_loader_refuses_a_generator_and_classifier_cards_still_read(gen_run, tmp_path):
    from emotune.models import ModelCard, load_checkpoint

    with pytest.raises(CheckpointError, match="generator checkpoint.*emotune synth"):
        load_checkpoint(gen_run)
    card = ModelCard(backbone="mobilenetv2", labels=["a", "b"], input_size=48, mean=[0.5], std=[0.5])
    assert card.kind == "classifier" and ModelCard.from_dict(card.to_dict()).kind == "classifier"
    with pytest.raises(CheckpointError, match="'kind' must be one of"):
        ModelCard.from_dict({**card.to_dict(), "kind": "painter"})
    # kind is bound into the weights: an edited card is refused
    d = json.loads((gen_run / "last.json").read_text())
    (tmp_path / "last.safetensors").write_bytes((gen_run / "last.safetensors").read_bytes())
    (tmp_path / "last.json").write_text(json.dumps({**d, "kind": "classifier"}))
    with pytest.raises(CheckpointError, match="kind"):
        load_checkpoint(tmp_path)


def test_resume_after_a_kill_gives_the_uninterrupted_run(faces, tmp_path):
    train(faces, tmp_path / "straight", epochs=2)
    train(faces, tmp_path / "cut", epochs=1)  # as if killed after epoch 1
    from emotune.synth.train import train_generator
    from emotune.synth.config import make_synth_config

    train_generator(make_synth_config({"out": str(tmp_path / "cut"), "resume": True, "epochs": 2}))
    a, b = load_file(str(tmp_path / "straight" / "last.safetensors")), load_file(str(tmp_path / "cut" / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(list(csv.DictReader(open(tmp_path / "cut" / "log.csv")))) == 2


def test_resume_refuses_a_changed_architecture_and_a_second_run(faces, gen_run):
    with pytest.raises(ConfigError, match=r"--resume cannot change g_width 4 -> 8"):
        train(faces, gen_run, epochs=3, g_width=8, resume=True)
    with pytest.raises(ConfigError, match="already holds a generator run"):
        train(faces, gen_run, epochs=3)


def test_too_few_images_names_the_class_and_count(faces, tmp_path):
    with pytest.raises(ConfigError, match=r"too few images to train a generator: 'happy' has 12.*at least 20"):
        train(faces, tmp_path / "r", min_per_class=20)


def test_sampling_is_reproducible_by_seed_and_marks_every_image(gen_run, tmp_path):
    from emotune.synth.sample import sample_dataset

    a = sample_dataset(gen_run, tmp_path / "a", 3, seed=7)
    b = sample_dataset(gen_run, tmp_path / "b", 3, seed=7)
    c = sample_dataset(gen_run, tmp_path / "c", 3, seed=8)
    d = sample_dataset(gen_run, tmp_path / "d", 3, seed=7, classes=["sad"])
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 12
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)
    assert (a / "sad/synth_sad_00002.png").read_bytes() == (d / "sad/synth_sad_00002.png").read_bytes()  # whatever other classes
    rows = list(csv.DictReader(open(a / "manifest.csv")))
    assert len(rows) == 12 and {r["synthetic"] for r in rows} == {"1"}
    assert json.loads((a / "synthetic.json").read_text())["synthetic"] is True
    from emotune.data.sources import load_samples

    assert len(load_samples(a)) == 12 and len(load_samples(a / "manifest.csv")) == 12


def test_sample_errors_are_one_line(gen_run, tmp_path, capsys):
    assert cli.main(["synth", "sample", "--model", str(gen_run), "--per-class", "2", "--out", str(tmp_path / "s"),
                     "--classes", "happy,contempt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no class 'contempt'" in err and "happy" in err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    assert cli.main(["synth", "sample", "--model", str(gen_run), "--per-class", "2", "--out", str(tmp_path / "busy")]) == 2
    assert "not empty" in capsys.readouterr().err


# ---- the synthetic source of a merged config

def test_a_synthetic_source_is_never_validated_on(faces, gen_run, tmp_path):
    from emotune.data.merge import load_merged, parse_sources
    from emotune.synth.sample import sample_dataset

    syn = sample_dataset(gen_run, tmp_path / "syn", 4, seed=1)
    for bad in ({"val_fraction": 0.2}, {"val_data": str(faces)}):
        with pytest.raises(ConfigError, match="never used for validation or test; remove val_"):
            parse_sources([{"name": "real", "data": str(faces)}, {"name": "gan", "data": str(syn), "synthetic": True, **bad}])
    with pytest.raises(ConfigError, match="holds synthetic faces.*synthetic: true"):
        parse_sources([{"name": "real", "data": str(faces)}, {"name": "gan", "data": str(syn)}])
    specs = parse_sources([{"name": "real", "data": str(faces), "weight": 1}, {"name": "gan", "data": str(syn), "synthetic": True, "weight": 0.5}])
    m = load_merged(specs, "auto", seed=0, default_val_fraction=0.25)
    assert {s.dataset for s in m.val} == {"real"} and sum(s.dataset == "gan" for s in m.train) == 16
    assert m.describe["sources"]["gan"]["synthetic"] is True and m.describe["sources"]["gan"]["n_val"] == 0
    from emotune.data.merge import source_sample_weights

    w = source_sample_weights(m.train, specs)
    assert abs(w[[s.dataset == "gan" for s in m.train]].sum() - 1 / 3) < 1e-9  # its share of the draws


def test_a_generator_whose_labels_differ_is_mapped_by_name_or_refused(faces, gen_run, tmp_path):
    from emotune.data.merge import load_merged, parse_sources
    from emotune.synth.sample import sample_dataset

    syn = sample_dataset(gen_run, tmp_path / "syn", 2, seed=1, classes=["happy", "sad"])
    with pytest.raises(ConfigError, match=r"source 'gan' has no \['neutral', 'surprise'\] images"):
        load_merged(parse_sources([{"name": "real", "data": str(faces)}, {"name": "gan", "data": str(syn), "synthetic": True}]), "auto")
    m = load_merged(parse_sources([{"name": "real", "data": str(faces)},
                                   {"name": "gan", "data": str(syn), "synthetic": True, "missing": ["neutral", "surprise"]}]), "auto")
    assert {s.label for s in m.train if s.dataset == "gan"} == {"happy", "sad"}


# ---- leak checks under cross-validation

def _fold_samples(faces):
    from emotune.data.sources import load_samples

    samples = load_samples(faces)
    fold_of = [1 if s.subject in ("S001", "S002") else 2 for s in samples]
    return samples, fold_of


def test_a_generator_that_saw_a_test_subject_is_refused(faces, gen_run, tmp_path):
    from emotune.synth.protocol import check_cv_sources, check_no_leak
    from emotune.synth.sample import sample_dataset

    samples, fold_of = _fold_samples(faces)
    syn = sample_dataset(gen_run, tmp_path / "syn", 2, seed=1)  # its generator learnt from every subject
    sources = [{"name": "real", "data": str(faces)}, {"name": "gan", "data": str(syn), "synthetic": True}]
    with pytest.raises(ConfigError, match="its generator was trained on 24 test image.*test fold 1"):
        check_cv_sources(sources, samples, fold_of)
    with pytest.raises(ConfigError, match="first source is the one tested"):
        check_no_leak(list(reversed(sources)), samples)


def test_one_generator_per_fold_passes_the_check(faces, tmp_path):
    import shutil

    from emotune.synth.protocol import check_no_leak, leaks
    from emotune.synth.sample import sample_dataset

    samples, fold_of = _fold_samples(faces)
    # the fold-1 generator learns from fold 2's subjects only (a copy of their images: same dataset folder layout)
    for s, f in zip(samples, fold_of):
        if f == 2:
            (tmp_path / "train" / s.label).mkdir(parents=True, exist_ok=True)
            shutil.copy(s.path, tmp_path / "train" / s.label / s.path.name)
    train(tmp_path / "train", tmp_path / "g1", epochs=1)
    syn = sample_dataset(tmp_path / "g1", tmp_path / "syn", 2, seed=1)
    check_no_leak([{"name": "real", "data": str(faces)}, {"name": "gan", "data": str(syn), "synthetic": True}],
                  [s for s, f in zip(samples, fold_of) if f == 1])
    # the same subjects in the same dataset folder would be a leak, even as other files
    rows = [{"path": str(Path(s.path).resolve().parent / "other.png"), "subject": s.subject} for s in samples[:1]]
    assert leaks(rows, samples)[1] == [samples[0].subject]


def test_emotune_cv_refuses_a_leaking_synthetic_source_before_training(faces, gen_run, tmp_path, monkeypatch):
    from emotune.protocols.cv import runner
    from emotune.synth.sample import sample_dataset
    from emotune.train.config import TrainConfig

    syn = sample_dataset(gen_run, tmp_path / "syn", 2, seed=1)
    monkeypatch.setattr(runner, "train", lambda cfg: pytest.fail("a fold trained"))
    cfg = TrainConfig(sources=[{"name": "real", "data": str(faces)}, {"name": "gan", "data": str(syn), "synthetic": True}],
                      out=str(tmp_path / "cv"), progress=False, val_fraction=0.25)
    with pytest.raises(ConfigError, match="its generator was trained on"):
        runner.run_cv(cfg, folds=2, group_by="subject")
    assert not (tmp_path / "cv" / "fold_1").exists()


# ---- quality

def test_quality_reports_every_measure_and_keeps_the_nn_grid_in_the_run(gen_run, faces, tmp_path):
    from emotune.synth.quality import FEATURES, measure

    r = measure(gen_run, str(faces), tmp_path / "q", per_class=6, max_real_per_class=8)
    assert "penultimate" in FEATURES and "Not the Inception FID" in r["note"]
    assert r["frechet_distance"] > 0 and r["frechet_real_vs_real"] >= 0
    assert 0 <= r["fidelity"] <= 1 and r["fidelity_classes"] == ["happy", "neutral", "sad", "surprise"]
    assert r["diversity_ratio"] > 0 and r["memorisation"]["available"] and r["memorisation"]["n_train_compared"] == 48
    assert Path(r["memorisation"]["nn_grid"]).parent == gen_run  # dataset images stay in the run folder
    assert (tmp_path / "q" / "quality.json").is_file() and "Frechet distance" in (tmp_path / "q" / "quality.md").read_text()
    assert not list((tmp_path / "q").glob("*.png"))


def test_one_generator_per_fold_cross_validation_runs_end_to_end(faces, tmp_path):
    """The CK+ protocol in small: each fold's generator learns from that fold's training rows only, its faces join that
    fold's training side, and the folds are scored as `emotune cv` scores them."""
    from emotune.protocols.cv import write_folds_csv
    from emotune.synth.protocol import cv_with_fold_generators, generator_training
    from emotune.synth.sample import sample_dataset
    from emotune.train import make_config

    samples, fold_of = _fold_samples(faces)
    write_folds_csv(tmp_path / "folds.csv", samples, fold_of)
    seen = {}

    def make(fold, split_csv):
        g = tmp_path / f"g{fold}"
        train(split_csv, g, epochs=1, data_format="manifest", train_split="train")
        seen[fold] = {r["subject"] for r in generator_training(sample_dataset(g, g / "syn", 3, seed=0))}
        return g / "syn"

    cfg = make_config({"img_size": 32, "epochs": 1, "batch_size": 16, "workers": 0, "progress": False, "val_fraction": 0.25,
                       "backbone": "test_resnet", "threads": 1, "data": str(faces), "out": str(tmp_path / "cv")})
    res = cv_with_fold_generators(cfg, tmp_path / "folds.csv", make, {"name": "gan"}, tmp_path / "cv")
    assert [f.status for f in res.folds] == ["ok", "ok"], [f.error for f in res.folds]
    assert seen == {1: {"S003", "S004"}, 2: {"S001", "S002"}}  # never a test subject
    assert (tmp_path / "cv" / "cv.json").is_file()
    card = json.loads((tmp_path / "cv" / "fold_1" / "best.json").read_text())
    assert card["training"]["data"]["sources"]["gan"]["synthetic"] is True and card["training"]["data"]["sources"]["gan"]["n_val"] == 0


def test_benchmark_synthetic_sets_are_nested_and_follow_their_generator(gen_run, faces, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import synth_augment

    sets = synth_augment.synthetic_sets(gen_run, tmp_path / "syn", [1, 3], seed=0)
    n1, n3 = (list(csv.DictReader(open(sets[n]))) for n in (1, 3))
    assert len(n1) == 4 and len(n3) == 12 and {r["path"] for r in n1} < {r["path"] for r in n3}
    before = (tmp_path / "syn" / "happy" / "synth_happy_00000.png").read_bytes()
    other = tmp_path / "other"
    train(faces, other, epochs=1, seed=5)
    synth_augment.synthetic_sets(other, tmp_path / "syn", [1, 3], seed=0)  # another generator: sampled again
    assert json.loads((tmp_path / "syn" / "synthetic.json").read_text())["generator"] == str((other / "last.json").resolve())
    assert (tmp_path / "syn" / "happy" / "synth_happy_00000.png").read_bytes() != before
    m = synth_augment.subset_manifest(faces, 0.5, 0, tmp_path / "sub.csv")
    assert len(list(csv.DictReader(open(m)))) == 4 * 10  # at least 10 per class
