"""Issue 13 hardening of training, the demo and the protocols: each test fails on the code before the fix."""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import yaml

from emotune import cli
from emotune.data.synthetic import make_synthetic_dataset
from emotune.errors import ConfigError
from emotune.train import make_config, train
from emotune.train import engine

BASE = {"backbone": "mobilenetv2", "img_size": 32, "batch_size": 16, "workers": 0, "progress": False, "val_fraction": 0.25}


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("faces"), per_class=12, size=36, seed=2)


def read_log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("emotune: error: ") and "Traceback" not in err, err
    return lines[0]


class Stop(Exception):
    """Raised from a patched function to end a run after its first completed epoch (a crash, in-process)."""


def stop_after_first_epoch(monkeypatch) -> None:
    real = engine.plot_curves

    def plot(run, history):  # runs after the epoch's train state is saved: the commit point of a resume
        real(run, history)
        if len(history) == 1:
            raise Stop

    monkeypatch.setattr(engine, "plot_curves", plot)


# ---------------------------------------------------------------------------------------------- 1: demo --out


def test_demo_train_never_removes_a_folder_it_did_not_make(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    rc, _, err = run_cli(capsys, "demo", "--train", "--shared", str(tmp_path / "no_shared"), "--out", str(out))
    assert rc == 2 and "marker" in one_error_line(err)
    assert (out / "thesis.tex").read_text() == "years of work"


def test_demo_train_replaces_only_its_own_marked_folder(tmp_path, monkeypatch):
    from emotune import demo

    out = tmp_path / "demo"
    seen = {}

    def fake_train(cfg):
        seen["files"] = sorted(p.name for p in out.iterdir())
        raise Stop

    monkeypatch.setattr(demo, "train", fake_train)
    with pytest.raises(Stop):
        demo.run_train_demo(tmp_path / "no_shared", out)
    assert (out / demo.MARKER).is_file()
    (out / "old_result.txt").write_text("from the last demo")
    with pytest.raises(Stop):
        demo.run_train_demo(tmp_path / "no_shared", out)
    assert "old_result.txt" not in seen["files"] and demo.MARKER in seen["files"]


# ---------------------------------------------------------------------------------------------- 2, 3: checked before work


@pytest.mark.parametrize("flags, says", [
    (["--backbone", "resnet18.nope"], "a1_in1k"),
    (["--backbone", "resnet18_nope_net"], "mobilenetv2"),
    (["--pretrained", "nope"], "ra_in1k"),
])
def test_bad_backbone_or_tag_is_one_line_and_leaves_no_run_folder(tmp_path, faces, capsys, flags, says):
    run = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--data", str(faces), "--out", str(run), "--workers", "0", "--no-progress", *flags)
    assert rc == 2
    line = one_error_line(err)
    assert says in line
    assert not run.exists()


def test_out_naming_a_file_is_refused_before_work(tmp_path, faces, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    rc, _, err = run_cli(capsys, "train", "--data", str(faces), "--out", str(f), "--workers", "0", "--no-progress")
    assert rc == 2 and "not a folder" in one_error_line(err)
    assert f.read_text() == "keep me"


# ---------------------------------------------------------------------------------------------- 4: cascade


def test_cascade_records_an_unexpected_failure_and_marks_later_stages_not_run(tmp_path, faces, monkeypatch):
    import emotune.train as tr
    from emotune.protocols.cascade import add_cascade_arguments, run_cascade_command

    def oom(cfg):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(tr, "train", oom)
    spec = tmp_path / "cascade.yaml"
    out = tmp_path / "cas"
    spec.write_text(yaml.safe_dump({**BASE, "out": str(out), "stages": [
        {"name": "big", "data": str(faces), "epochs": 1}, {"name": "target", "data": str(faces), "epochs": 1}]}))
    import argparse

    p = argparse.ArgumentParser()
    add_cascade_arguments(p)
    assert run_cascade_command(p.parse_args(["--config", str(spec)])) == 1
    report = json.loads((out / "cascade.json").read_text())
    assert [s["status"] for s in report["stages"]] == ["failed", "not run"]
    assert report["stages"][0]["error"].startswith("RuntimeError: CUDA out of memory")
    assert "not run" in (out / "cascade.md").read_text()
    afile = tmp_path / "a_file"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):  # --out naming a file: refused before any stage runs
        run_cascade_command(p.parse_args(["--config", str(spec), "--out", str(afile)]))


@pytest.mark.parametrize("name", ["../escape", "/abs/path", "a/b", "..", "", "a\\b"])
def test_cascade_stage_names_cannot_leave_the_output_folder(tmp_path, name):
    from emotune.protocols.cascade import stage_configs

    with pytest.raises(ConfigError, match="cannot name a folder"):
        stage_configs({"stages": [{"name": name, "data": "x"}]}, tmp_path)
    ok = stage_configs({"stages": [{"name": "fer2013-v1.2_a", "data": "x"}]}, tmp_path)
    assert Path(ok[0][1]["out"]) == tmp_path / "1_fer2013-v1.2_a"


# ---------------------------------------------------------------------------------------------- 5, 6: resume and config


def test_resume_refuses_a_changed_config_unless_allowed_and_keeps_the_history(tmp_path, faces, monkeypatch):
    run = tmp_path / "run"
    opts = {**BASE, "data": str(faces), "out": str(run), "epochs": 3, "lr": 1e-3}
    stop_after_first_epoch(monkeypatch)
    with pytest.raises(Stop):
        train(make_config(opts))
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"lr 0\.001 -> 0\.01.*allow-config-change"):
        train(make_config({**opts, "lr": 1e-2, "resume": True}))
    with pytest.raises(ConfigError, match="cannot change backbone"):
        train(make_config({**opts, "backbone": "resnet18", "resume": True, "allow_config_change": True}))
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 1e-3  # refusals change nothing
    res = train(make_config({**opts, "lr": 1e-2, "epochs": 2, "resume": True, "allow_config_change": True}))
    assert res.epochs_run == 2
    expected = [{"from_epoch": 2, "changes": {"lr": {"old": 1e-3, "new": 1e-2}, "epochs": {"old": 3, "new": 2}}}]
    assert json.loads((run / "config_history.json").read_text()) == expected
    assert json.loads((run / "summary.json").read_text())["config_history"] == expected
    assert json.loads((run / "last.json").read_text())["training"]["config_history"] == expected
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 1e-2
    rows = read_log(run)
    assert all(float(r["lr_start"]) > 0 and float(r["lr_end"]) > 0 for r in rows)
    # epoch 2 runs under the new schedule: the last update of a 2-epoch cosine cycle sits near the floor of 1e-2 * ...
    assert float(rows[1]["lr_start"]) == pytest.approx(1e-2, rel=1e-6)  # the peak, right after one warm-up epoch


def test_resume_reads_the_runs_own_config(tmp_path, faces, monkeypatch, capsys):
    run = tmp_path / "run"
    stop_after_first_epoch(monkeypatch)
    with pytest.raises(Stop):
        cli.main(["train", "--data", str(faces), "--out", str(run), "--epochs", "2", "--img-size", "32", "--batch-size", "16",
                  "--workers", "0", "--no-progress", "--val-fraction", "0.25", "--lr", "0.003"])
    monkeypatch.undo()
    capsys.readouterr()
    rc, _, err = run_cli(capsys, "train", "--out", str(run), "--resume", "--lr", "0.5")
    assert rc == 2 and "lr 0.003 -> 0.5" in one_error_line(err)
    rc, out, err = run_cli(capsys, "train", "--out", str(run), "--resume", "--no-progress")
    assert rc == 0, err
    assert [int(r["epoch"]) for r in read_log(run)] == [1, 2]
    assert not (run / "config_history.json").exists()


# ---------------------------------------------------------------------------------------------- 7: exact resume with workers


def test_resume_with_loader_workers_matches_the_uninterrupted_run(tmp_path, faces, monkeypatch):
    opts = {**BASE, "data": str(faces), "epochs": 3, "workers": 2, "lr": 3e-3, "seed": 5}
    train(make_config({**opts, "out": str(tmp_path / "ref")}))
    stop_after_first_epoch(monkeypatch)
    with pytest.raises(Stop):
        train(make_config({**opts, "out": str(tmp_path / "cut")}))
    monkeypatch.undo()
    assert len(read_log(tmp_path / "cut")) == 1
    train(make_config({**opts, "out": str(tmp_path / "cut"), "resume": True}))
    ref, cut = read_log(tmp_path / "ref"), read_log(tmp_path / "cut")
    assert [r["epoch"] for r in cut] == ["1", "2", "3"]
    for a, b in zip(ref, cut):
        for key in ("train_loss", "train_accuracy", "val_loss", "lr_start", "lr_end"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-6), (a["epoch"], key)


# ---------------------------------------------------------------------------------------------- 8: skipped images on screen


def test_train_names_each_skipped_image_on_stderr(tmp_path, faces, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(faces, data)
    (data / "happy" / "broken.png").write_bytes(b"not an image at all")
    (data / "sad" / "empty.jpg").write_bytes(b"")
    train(make_config({**BASE, "data": str(data), "out": str(tmp_path / "run"), "epochs": 1}))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("skipped ")]
    assert len(lines) == 2
    assert any("broken.png: " in ln for ln in lines) and any("empty.jpg: " in ln and "0 bytes" in ln for ln in lines)


def test_skipped_lines_are_capped_and_named_once_across_folds(capsys):
    from emotune.data.dataset import Skipped

    many = [Skipped(f"/d/img{i}.png", "not an image") for i in range(25)]
    seen: set[str] = set()
    engine.print_skipped(many, seen)
    engine.print_skipped(many[:3] + [Skipped("/d/new.png", "empty file")], seen)  # the next fold: only the new one
    lines = capsys.readouterr().err.splitlines()
    assert lines[:20] == [f"skipped /d/img{i}.png: not an image" for i in range(20)]
    assert lines[20:] == ["... and 5 more skipped image(s)", "skipped /d/new.png: empty file"]


# ---------------------------------------------------------------------------------------------- 9: scikit-learn warnings


def test_sklearn_warnings_become_one_note(capsys):
    from emotune.data import splits
    from emotune.data.sources import Sample
    from emotune.protocols.cv import assign_folds, metrics_from_confusion

    splits._SAID.clear()
    samples = [Sample(path=Path(f"/x/{i}.png"), label=lab) for i, lab in enumerate(["happy"] * 8 + ["sad"] * 8 + ["angry"])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in range(3):
            assign_folds(samples, 4, stratify=True, seed=seed)
        metrics_from_confusion([[2, 1, 0], [0, 3, 0], [0, 0, 0]], ["happy", "sad", "angry"])
    assert not [w for w in caught if "sklearn" in w.filename or "least populated" in str(w.message)]
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("note: ")]
    assert len(notes) == len(set(notes)) >= 1
    assert sum("fewer than the 4 folds" in n for n in notes) == 1
