"""The benchmark scripts' own logic: paired fold comparisons, train-once/test-once runs and their side-by-side tables."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from emotune.data.synthetic import make_synthetic_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import ckplus_protocols  # noqa: E402
import common  # noqa: E402


def _cv(scores: list[float | None]) -> dict:
    return {"folds": [{"fold": i + 1, "status": "failed" if s is None else "ok", "metrics": {"accuracy": s}}
                      for i, s in enumerate(scores)]}


def test_paired_differences_use_only_folds_both_finished():
    a = _cv([0.90, 0.80, 0.85, None])
    b = _cv([0.95, 0.80, 0.80, 0.99])
    c = ckplus_protocols.paired(a, b)
    assert c["folds"] == 3 and (c["wins"], c["ties"], c["losses"]) == (1, 1, 1)
    assert c["mean_diff"] == pytest.approx(0.0) and c["p_wilcoxon"] is None  # too few folds for a test


def test_paired_wilcoxon_on_ten_folds():
    a = _cv([0.80 + 0.01 * i for i in range(10)])
    better = _cv([0.85 + 0.01 * i + 0.001 * (i % 3) for i in range(10)])
    c = ckplus_protocols.paired(a, better)
    assert c["wins"] == 10 and c["mean_diff"] > 0.05 and 0 < c["p_wilcoxon"] < 0.01
    md = ckplus_protocols.render([ckplus_protocols.row("a", {"title": "(a)", "argv": [], "out": "x"}, None)], {"b": c})
    assert "| (a) | 0/- |" in md and "| b | 10 |" in md and "10 / 0 / 0" in md


def test_train_and_test_trains_once_and_scores_test_once(tmp_path, monkeypatch):
    for split, seed in (("train", 1), ("val", 2), ("test", 3)):
        make_synthetic_dataset(tmp_path / "fer" / split, per_class=6, size=32, seed=seed)
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(tmp_path / "fer" / "train"), "val_data": str(tmp_path / "fer" / "val"),
                                   "backbone": "test_resnet", "img_size": 32, "epochs": 1, "batch_size": 8, "workers": 0,
                                   "threads": 1}))
    rows = {"linear": common.train_and_test(str(cfg), tmp_path / "plain")}
    assert rows["linear"]["test"]["n"] == 24 and (tmp_path / "plain" / "test" / "eval.json").is_file()

    import emotune.evaluate
    import emotune.train

    monkeypatch.setattr(emotune.train, "train", lambda c: pytest.fail("a finished run was trained again"))
    monkeypatch.setattr(emotune.evaluate, "evaluate_dataset", lambda *a, **k: pytest.fail("the test split was scored twice"))
    again = common.train_and_test(str(cfg), tmp_path / "plain")
    assert again["test"] == rows["linear"]["test"]
    md = common.comparison_markdown({**rows, "other": again}, "head", "verdict")
    assert md[0].startswith("| head |") and "verdict" in md and sum(line.startswith("| other |") for line in md) == 2

    # a finished model without its run folder's summary: epoch and val figures from the card, the same cached test score
    import shutil

    kept = tmp_path / "kept"
    kept.mkdir()
    for name in ("best.json", "best.safetensors"):
        shutil.copy(tmp_path / "plain" / name, kept / name)
    shutil.copytree(tmp_path / "plain" / "test", kept / "test")
    row = common.finished_model_row(kept, tmp_path / "fer" / "test")
    assert row["best_epoch"] == rows["linear"]["best_epoch"] and row["test"] == rows["linear"]["test"]
    assert row["val"]["val_accuracy"] == pytest.approx(rows["linear"]["val"]["val_accuracy"], abs=1e-4)
    assert common.comparison_markdown({"card": row}, "start", "v")[2].startswith("| card | 1 |")
