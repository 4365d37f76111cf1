"""Cross-validation and side-by-side reports on tiny synthetic faces: fold assignment (grouped, stratified, LOSO),
the fold manifest, mean ± std, pooled confusion, failing folds, --resume, and `emotune report`."""
from __future__ import annotations

import dataclasses

import argparse
import csv
import json
import re
import statistics
from collections import Counter
from pathlib import Path

import pytest

from emotune.data.sources import Sample, load_samples
from emotune.data.synthetic import make_synthetic_dataset
from emotune.errors import ConfigError
from emotune.evaluate import evaluate_dataset
from emotune.io import atomic_write_json
from emotune.protocols import cv
from emotune.protocols.cv import (add_cv_arguments, assign_folds, crossing_subjects, mean_std, read_folds_csv, run_cv,
                                  run_cv_command, write_folds_csv)
from emotune.protocols.report import add_report_arguments, render_report, run_report_command
from emotune.train import make_config

# timm's tiny test network, one thread: on a busy 2-core machine two torch threads per op are several times slower
FAST = ["--img-size", "32", "--epochs", "1", "--batch-size", "16", "--workers", "0", "--no-progress",
        "--val-fraction", "0.25", "--backbone", "test_resnet", "--threads", "1"]
FAST_CFG = {"img_size": 32, "epochs": 1, "batch_size": 16, "workers": 0, "progress": False, "val_fraction": 0.25,
            "backbone": "test_resnet", "threads": 1}


def cv_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_cv_arguments(p)
    return p.parse_args(list(argv))


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """48 images, 4 classes, 6 subjects (S001..S006), 2 images per subject and class."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("cvfaces"), per_class=12, size=32, seed=1, subjects=6)


@pytest.fixture(scope="module")
def cv_run(faces, tmp_path_factory) -> tuple[Path, int, str]:
    """One real subject-grouped, stratified 3-fold run with a final model, through the CLI hook."""
    out = tmp_path_factory.mktemp("cvrun") / "cv"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = run_cv_command(cv_args("--data", str(faces), "--folds", "3", "--group-by", "subject", "--stratify", "--final",
                                    "--out", str(out), *FAST))
    return out, rc, buf.getvalue()


def _fake(n_per_label: dict[str, int], subjects: int = 0) -> list[Sample]:
    out = []
    for label, n in n_per_label.items():
        for i in range(n):
            subj = f"S{i % subjects + 1:03d}" if subjects else None
            out.append(Sample(Path(f"/x/{label}/{subj or 'img'}_{label}_{i}.png"), label, subj))
    return out


# ---------------------------------------------------------------------------------------------- assignment only

def test_group_mode_keeps_each_subject_in_one_fold(faces):
    samples = load_samples(faces)
    for stratify in (False, True):
        plan = assign_folds(samples, 3, "subject", stratify, seed=0)
        assert plan.k == 3 and sorted(set(plan.fold_of)) == [1, 2, 3]
        assert crossing_subjects(samples, plan.fold_of) == []
        assert plan.scheme == ("StratifiedGroupKFold" if stratify else "GroupKFold")
    # without grouping, 3 folds over 6 subjects with 8 images each do mix subjects
    assert crossing_subjects(samples, assign_folds(samples, 3, None, True, seed=0).fold_of)


def test_stratified_folds_keep_class_proportions():
    samples = _fake({"happy": 60, "sad": 30, "neutral": 15})
    plan = assign_folds(samples, 3, stratify=True, seed=3)
    for f in (1, 2, 3):
        counts = Counter(s.label for s, k in zip(samples, plan.fold_of) if k == f)
        assert counts == {"happy": 20, "sad": 10, "neutral": 5}
    grouped = assign_folds(_fake({"happy": 60, "sad": 30, "neutral": 15}, subjects=15), 3, "subject", True, seed=3)
    for f in (1, 2, 3):
        counts = Counter(s.label for s, k in zip(samples, grouped.fold_of) if k == f)
        total = sum(counts.values())
        assert counts["happy"] / total == pytest.approx(60 / 105, abs=0.1)
        assert counts["neutral"] >= 3


def test_loso_gives_one_fold_per_subject(faces):
    samples = load_samples(faces)
    for folds in ("loso", 6):
        plan = assign_folds(samples, folds, "subject")
        assert plan.k == 6 and plan.scheme == "LeaveOneGroupOut"
        per_fold = {f: {s.subject for s, k in zip(samples, plan.fold_of) if k == f} for f in range(1, 7)}
        assert all(len(v) == 1 for v in per_fold.values())
    with pytest.raises(ConfigError, match="only 6 subjects"):
        assign_folds(samples, 7, "subject")


def test_assignment_is_seeded_and_the_folds_file_round_trips(faces, tmp_path):
    samples = load_samples(faces)
    a = assign_folds(samples, 3, "subject", True, seed=5)
    assert assign_folds(samples, 3, "subject", True, seed=5).fold_of == a.fold_of
    path = write_folds_csv(tmp_path / "folds.csv", samples, a.fold_of)
    with open(path, newline="") as fh:
        assert next(csv.reader(fh)) == ["path", "label", "subject", "fold"]
    back, fold_of = read_folds_csv(path)
    assert fold_of == a.fold_of
    assert [(s.path, s.label, s.subject) for s in back] == [(s.path, s.label, s.subject) for s in samples]


def test_group_by_subject_without_subjects_is_a_clear_error(tmp_path):
    plain = make_synthetic_dataset(tmp_path / "plain", per_class=3, size=32, seed=0)
    with pytest.raises(ConfigError, match="no subjects are known"):
        run_cv_command(cv_args("--data", str(plain), "--folds", "2", "--group-by", "subject", "--out", str(tmp_path / "o"), *FAST))
    with pytest.raises(ConfigError, match="no subjects"):
        assign_folds(load_samples(plain), "loso")
    assert not (tmp_path / "o" / "folds.csv").exists()


def test_mean_std_math():
    assert mean_std([0.5, 0.7, 0.9]) == pytest.approx((0.7, 0.2))
    assert mean_std([0.4]) == (0.4, 0.0)


def test_ckplus_subset_no_subject_crosses_folds(ckplus_dir, tmp_path):
    """Real CK+ file names (S010_004_00000017.png): subjects come from the S### prefix; assignment only."""
    samples = load_samples(ckplus_dir)
    assert all(s.subject and re.fullmatch(r"S\d{3}", s.subject) for s in samples)
    keep = set(sorted({s.subject for s in samples})[:24])
    subset = [s for s in samples if s.subject in keep]
    plan = assign_folds(subset, 4, "subject", stratify=True, seed=0)
    assert crossing_subjects(subset, plan.fold_of) == []
    for f in range(1, 5):
        subjects = {s.subject for s, k in zip(subset, plan.fold_of) if k == f}
        assert subjects and all(s.path.name.startswith(f"{s.subject}_") for s, k in zip(subset, plan.fold_of) if k == f)
    back, fold_of = read_folds_csv(write_folds_csv(tmp_path / "folds.csv", subset, plan.fold_of))
    assert fold_of == plan.fold_of and [s.subject for s in back] == [s.subject for s in subset]


# ---------------------------------------------------------------------------------------------- real runs

def test_cv_run_writes_folds_reports_and_final_model(cv_run, faces):
    out, rc, stdout = cv_run
    assert rc == 0
    for name in ("folds.csv", "cv.json", "cv.md", "confusion.png", "curves.png", "final/best.json", "final/summary.json"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.tmp"))
    assert len(re.findall(r"^fold \d/3 ok ", stdout, re.M)) == 3  # one progress line per fold
    samples, fold_of = read_folds_csv(out / "folds.csv")
    assert len(samples) == 48 and crossing_subjects(samples, fold_of) == []
    d = json.loads((out / "cv.json").read_text())
    assert d["kind"] == "emotune-cv/1" and d["k"] == 3 and d["folds_ok"] == 3 and d["folds_failed"] == 0 and d["complete"]
    for f in d["folds"]:
        split = list(csv.DictReader(open(out / f"fold_{f['fold']}" / "split.csv")))
        test_subj = {r["subject"] for r in split if r["split"] == "test"}
        assert test_subj.isdisjoint({r["subject"] for r in split if r["split"] == "train"})
        assert f["n_test"] == sum(r["split"] == "test" for r in split) == f["metrics"]["n"]
        fdir = out / f"fold_{f['fold']}"  # a scored fold keeps its best model, not its resume state
        assert (fdir / "best.safetensors").is_file() and (fdir / "test.json").is_file()
        assert not (fdir / "train_state.safetensors").exists() and not (fdir / "last.safetensors").exists()
    md = (out / "cv.md").read_text()
    assert "± " in md and "Pooled confusion" in md and "| 3 | ok |" in md


def test_mean_std_and_pooled_confusion_match_the_folds(cv_run):
    out, _, _ = cv_run
    d = json.loads((out / "cv.json").read_text())
    for m in ("accuracy", "balanced_accuracy", "macro_f1"):
        vals = [f["metrics"][m] for f in d["folds"]]
        assert d["mean"][m] == pytest.approx(statistics.fmean(vals))
        assert d["std"][m] == pytest.approx(statistics.stdev(vals))
    pooled = d["pooled_confusion"]
    assert sum(map(sum, pooled)) == d["n"] == 48 == d["pooled"]["n"]
    assert [sum(r) for r in pooled] == [12, 12, 12, 12]  # each class's images are tested exactly once
    summed = [[sum(f["confusion"][i][j] for f in d["folds"]) for j in range(4)] for i in range(4)]
    assert pooled == summed
    assert d["pooled"]["accuracy"] == pytest.approx(sum(pooled[i][i] for i in range(4)) / 48)


def test_folds_file_reuse_gives_the_identical_assignment(cv_run, tmp_path, monkeypatch):
    out, _, _ = cv_run
    monkeypatch.setattr(cv.runner, "train", lambda cfg: (_ for _ in ()).throw(RuntimeError("no training in this test")))
    rc = run_cv_command(cv_args("--folds-file", str(out / "folds.csv"), "--folds", "3", "--group-by", "subject",
                                "--out", str(tmp_path / "again"), *FAST))
    assert rc == 1  # every fold failed (by design here), but the assignment was written
    assert (tmp_path / "again" / "folds.csv").read_text() == (out / "folds.csv").read_text()
    with pytest.raises(ConfigError, match="--resume"):  # a finished cv folder is not overwritten
        run_cv(make_config({**FAST_CFG, "data": str(out / "folds.csv"), "out": str(out)}), 3)


def test_failing_fold_is_reported_and_resume_reruns_only_it(faces, tmp_path, monkeypatch):
    real_train = cv.runner.train
    calls: list[tuple[str, bool]] = []

    def flaky(cfg):
        calls.append((Path(cfg.out).name, cfg.resume))
        res = real_train(cfg)
        if Path(cfg.out).name == "fold_2":
            raise RuntimeError("disk on fire")  # after its epochs: the fold's training state exists
        return res

    monkeypatch.setattr(cv.runner, "train", flaky)
    cfg = make_config({**FAST_CFG, "data": str(faces), "out": str(tmp_path / "cv")})
    res = run_cv(cfg, 3, "subject", stratify=True)
    assert [f.status for f in res.folds] == ["ok", "failed", "ok"]
    assert "disk on fire" in res.folds[1].error
    d = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert d["folds_failed"] == 1 and "disk on fire" in d["folds"][1]["error"]
    assert d["mean"]["accuracy"] == pytest.approx(statistics.fmean([f.metrics["accuracy"] for f in (res.folds[0], res.folds[2])]))
    assert sum(map(sum, d["pooled_confusion"])) == res.folds[0].n_test + res.folds[2].n_test
    assert "disk on fire" in (tmp_path / "cv" / "cv.md").read_text()

    calls.clear()
    monkeypatch.setattr(cv.runner, "train", lambda c: (calls.append((Path(c.out).name, c.resume)), real_train(c))[1])
    res2 = run_cv(make_config({**FAST_CFG, "data": str(faces), "out": str(tmp_path / "cv"), "resume": True}), 3, "subject", stratify=True)
    assert calls == [("fold_2", True)]  # done folds skipped; the failed fold resumes its interrupted training
    assert [f.status for f in res2.folds] == ["ok", "ok", "ok"]
    assert [f.metrics for f in (res2.folds[0], res2.folds[2])] == [f.metrics for f in (res.folds[0], res.folds[2])]
    calls.clear()
    run_cv(make_config({**FAST_CFG, "data": str(faces), "out": str(tmp_path / "cv"), "resume": True}), 3, "subject", stratify=True)
    assert calls == []


def test_report_puts_cv_train_and_eval_runs_side_by_side(cv_run, faces, tmp_path, capsys):
    out, _, _ = cv_run
    ev = tmp_path / "eval"
    atomic_write_json(ev / "eval.json", evaluate_dataset(out / "final", faces, progress=False).to_dict())
    p = argparse.ArgumentParser()
    add_report_arguments(p)
    md_file = tmp_path / "report.md"
    assert run_report_command(p.parse_args([str(out), str(out / "final"), str(ev), "--out", str(md_file)])) == 0
    md = md_file.read_text()
    assert md == capsys.readouterr().out
    assert "| run | kind | n | accuracy | balanced accuracy | macro-F1 | backbone | data |" in md
    lines = [line for line in md.splitlines() if line.startswith(f"| {out}") or line.startswith(f"| {ev}")]
    assert len(lines) == 3
    d = json.loads((out / "cv.json").read_text())
    assert f"{d['mean']['accuracy']:.4f} ± {d['std']['accuracy']:.4f}" in lines[0] and "cv 3-fold, subject" in lines[0]
    assert "| train |" in lines[1] and "test_resnet" in lines[1] and "±" not in lines[1]
    assert "| eval | 48 |" in lines[2] and "test_resnet" in lines[2]
    rows = json.loads(render_report([out, out / "final"], "json"))
    assert [r["kind"] for r in rows] == ["cv 3-fold, subject", "train"]
    assert rows[0]["n"] == 48 and rows[0]["scores"]["macro_f1"] == pytest.approx(d["mean"]["macro_f1"])
    with pytest.raises(Exception, match="not a run folder"):
        render_report([tmp_path])


def test_cli_hooks_offer_the_cv_and_training_flags():
    p = argparse.ArgumentParser()
    add_cv_arguments(p)
    text = p.format_help()
    for flag in ("--folds", "--group-by", "--stratify", "--final", "--folds-file", "--subject-pattern", "--resume", "--out",
                 "--config", "--data", "--backbone", "--epochs", "--val-fraction"):
        assert flag in text, flag
    a = cv_args("--data", "x", "--folds", "loso", "--epochs", "2")
    assert (a.folds, a.data, a.epochs, a.group_by, a.stratify, a.final) == ("loso", "x", "2", "none", False, False)


def test_merged_sources_join_every_folds_training_side(faces, tmp_path, monkeypatch):
    """`sources:` in CV: the first source is split into folds, the others train in every fold (FER2013 + CK+ on CK+ folds)."""
    extra = make_synthetic_dataset(tmp_path / "extra", per_class=6, size=32, seed=8)
    (extra / "neutral").rename(extra / "fear")  # a class only the extra source has
    seen = []
    real_train = cv.runner.train
    monkeypatch.setattr(cv.runner, "train", lambda c: (seen.append(c), real_train(c))[1])
    cfg = make_config({**FAST_CFG, "out": str(tmp_path / "cv"), "sources": [
        {"name": "lab", "data": str(faces), "missing": ["fear"]},
        {"name": "extra", "data": str(extra), "missing": ["neutral"], "val_fraction": 0.2}]})
    res = run_cv(cfg, folds=2, group_by="subject")
    assert len(res.folds) == 2 and all(f.status == "ok" for f in res.folds), [f.error for f in res.folds]
    assert "fear" in res.labels and "neutral" in res.labels
    for c in seen:
        assert [s["name"] for s in c.sources] == ["lab", "extra"] and c.sources[0]["format"] == "manifest"
        assert c.sources[1]["data"] == str(extra)
    rows = read_folds_csv(tmp_path / "cv" / "folds.csv")[0]
    assert len(rows) == 48 and all(str(faces) in str(r.path) for r in rows)  # only the first source is cross-validated
    assert sum(f.n_test for f in res.folds) == 48

    again = run_cv(dataclasses.replace(cfg, out=str(tmp_path / "cv2")), folds_file=tmp_path / "cv" / "folds.csv")
    assert again.labels == res.labels and [f.n_test for f in again.folds] == [f.n_test for f in res.folds]


def test_report_reads_result_files_by_their_kind(tmp_path):
    """`emotune report` dispatches on the `kind` every result file carries, not on its name; older files without a kind
    are still known by name, and a result of another kind is refused by name."""
    from emotune import kinds
    from emotune.protocols.report import load_run

    scores = {"n": 10, "accuracy": 0.5, "balanced_accuracy": 0.4, "macro_f1": 0.3, "model": "nowhere", "data": "d"}
    renamed = tmp_path / "renamed_eval.json"
    renamed.write_text(json.dumps({"kind": kinds.EVAL, **scores}))
    row = load_run(renamed)
    assert row.kind == "eval" and row.scores["accuracy"] == 0.5 and row.n == 10
    legacy = tmp_path / "old" / "eval.json"
    legacy.parent.mkdir()
    legacy.write_text(json.dumps(scores))
    assert load_run(legacy.parent).kind == "eval"
    other = tmp_path / "cascade.json"
    other.write_text(json.dumps({"kind": kinds.CASCADE, "stages": []}))
    with pytest.raises(Exception, match="not a cv, eval or train result"):
        load_run(other)
