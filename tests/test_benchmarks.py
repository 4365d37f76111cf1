"""The benchmark scripts' own logic: paired fold comparisons, train-once/test-once runs and their side-by-side tables."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from emotune.data.synthetic import make_synthetic_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import ckplus_protocols  # noqa: E402
import common  # noqa: E402


def _cv(scores: list[float | None]) -> dict[int, float]:
    cv = {"folds": [{"fold": i + 1, "status": "failed" if s is None else "ok", "metrics": {"accuracy": s}}
                    for i, s in enumerate(scores)]}
    return ckplus_protocols.fold_scores(cv)


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


def test_a_protocol_without_its_run_folder_keeps_its_earlier_row_and_is_paired_from_it(tmp_path):
    earlier = {"rows": [{"key": "a", "title": "(a)", "command": "emotune cv ...", "run": "runs/ck_cv_imagenet",
                         "status": "complete", "folds_ok": 3, "k": 3, "mean": dict.fromkeys(ckplus_protocols.METRICS, 0.9),
                         "std": dict.fromkeys(ckplus_protocols.METRICS, 0.1),
                         "per_fold_accuracy": {"1": 0.8, "2": 0.9, "3": 1.0}}],
               "environment": {"date": "2026-11-23T10:00:00+00:00"}}
    (tmp_path / "old.json").write_text(json.dumps(earlier))
    ps = ckplus_protocols.protocols(tmp_path / "runs", "fer64")
    assert ps["b96"]["argv"][2:7] == ckplus_protocols.FOLD_ARGS  # no folds.csv here: (a)'s own fold arguments
    rows = ckplus_protocols.with_earlier_rows([ckplus_protocols.row(k, ps[k], None) for k in ("a", "b96")],
                                              ckplus_protocols.earlier_rows(tmp_path / "old.json"))
    assert rows[0]["mean"]["accuracy"] == 0.9 and rows[0]["from_report"] == "2026-11-23"
    assert "run of 2026-11-23" in ckplus_protocols.render(rows, {})
    assert rows[1]["status"] == "not run"  # nothing earlier for b96
    assert ckplus_protocols.row_scores(rows[0]) == {1: 0.8, 2: 0.9, 3: 1.0}
    (tmp_path / "runs" / "ck_cv_imagenet").mkdir(parents=True)
    (tmp_path / "runs" / "ck_cv_imagenet" / "folds.csv").write_text("path,label,subject,fold\n")
    assert "--folds-file" in ckplus_protocols.protocols(tmp_path / "runs", "fer64")["b96"]["argv"]


def test_train_and_test_trains_once_and_scores_test_once(tmp_path, monkeypatch):
    for split, seed in (("train", 1), ("val", 2), ("test", 3)):
        make_synthetic_dataset(tmp_path / "fer" / split, per_class=6, size=32, seed=seed)
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(tmp_path / "fer" / "train"), "val_data": str(tmp_path / "fer" / "val"),
                                   "backbone": "test_resnet", "img_size": 32, "epochs": 1, "batch_size": 8, "workers": 0,
                                   "threads": 1}))
    rows = {"linear": common.train_and_test(str(cfg), tmp_path / "plain")}
    assert rows["linear"]["test"]["n"] == 24 and (tmp_path / "plain" / "test" / "eval.json").is_file()
    assert (tmp_path / "plain" / "test" / "predictions.csv").is_file()

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

    # per-image test predictions, kept with the report; a model scored before they were kept is predicted again
    monkeypatch.undo()
    preds = common.predictions_on_test(kept, tmp_path / "fer" / "test")
    assert len(preds) == 24 and (preds["label"] == preds["pred"]).mean() == pytest.approx(row["test"]["accuracy"])
    (kept / "test" / "predictions.csv").unlink()
    assert common.predictions_on_test(kept, tmp_path / "fer" / "test")[["file", "pred"]].equals(preds[["file", "pred"]])
    report = json.loads((kept / "test" / "eval.json").read_text())
    (kept / "test" / "eval.json").write_text(json.dumps({**report, "accuracy": report["accuracy"] + 0.01}))
    with pytest.raises(RuntimeError, match="differ from the kept report"):
        common.predictions_on_test(kept, tmp_path / "fer" / "test")


def test_loso_levers_pairs_each_lever_and_the_baseline_on_the_same_photos(tmp_path):
    import loso_levers

    truth = ["happy", "sad"] * 10
    groups = [f"S{i // 2}" for i in range(20)]

    def row(model: str, left_out: str, preds: list[str]) -> dict:
        return {"model": model, "left_out": left_out, "photos": [
            {"id": f"{left_out}{i}", "group": g, "true": t, "pred": p} for i, (g, t, p) in enumerate(zip(groups, truth, preds))]}

    def write(name: str, rows: list[dict]) -> Path:
        (tmp_path / name).write_text(json.dumps({"baseline": "wild", "rows": rows}))
        return tmp_path / name

    base = write("base.json", [row("recipe", "lab", truth[:18] + ["happy", "happy"]), row("wild only", "lab", ["happy"] * 20),
                               row("recipe", "tw", truth)])
    lever = write("lever.json", [row("recipe", "lab", truth), row("recipe", "tw", ["sad"] * 20)])
    res = loso_levers.compare(base, [("x", lever)], 200)
    by = {(r["lever"], r["left_out"]): r for r in res["rows"]}
    assert set(by) == {("base: recipe vs wild only", "lab"), ("x", "lab"), ("x", "tw")}
    assert by[("base: recipe vs wild only", "lab")]["accuracy"]["diff"] == pytest.approx(0.45)
    assert by[("x", "lab")]["accuracy"]["diff"] == pytest.approx(0.05) and by[("x", "tw")]["accuracy"]["diff"] == pytest.approx(-0.5)
    assert loso_levers.verdicts(res) == {"base: recipe vs wild only": "kept", "x": "not kept"}
    assert "| x | tw | 20 | 10 |" in loso_levers.markdown(res, "cmd", "machine")

    assert res["base_config"] == "configs/loso_faces_cpu.yaml"  # named in the report's first line
    assert "configs/other.yaml" in loso_levers.markdown(loso_levers.compare(base, [], 50, "configs/other.yaml"), "c", "m")


def test_loso_wise_alphas_and_the_interpolated_fold_model(tmp_path):
    """WiSE-FT on a fold: theta = alpha * fold + (1 - alpha) * start, the fold model's card kept; bad alphas are one-line
    errors."""
    import loso_wise
    from safetensors.torch import load_file

    from emotune.errors import BadInputError
    from emotune.models.bundled import bundled_path

    assert loso_wise.parse_alphas("0.25, 0.5") == [0.25, 0.5]
    for bad in ("0", "1", "x", ""):
        with pytest.raises(BadInputError, match="--alphas"):
            loso_wise.parse_alphas(bad)
    fold, start = bundled_path("default"), bundled_path("fer2013")
    out = loso_wise.mix(start, fold, tmp_path / "mixed", 0.25, ensemble=False)
    card = json.loads(out.read_text())
    assert [m["weight"] for m in card["training"]["averaged_from"]] == [0.25, 0.75]
    a, b, m = (load_file(str(p.with_suffix(".safetensors"))) for p in (fold, start, out))
    key = next(k for k, v in a.items() if v.is_floating_point() and v.numel() > 100)
    assert (a[key] - b[key]).abs().max() > 0  # the two models differ, so the check below means something
    assert ((m[key] - (0.25 * a[key] + 0.75 * b[key])).abs().max()) < 1e-5
    assert loso_wise.mix(start, fold, tmp_path / "mixed", 0.25, ensemble=False) == out  # made once, then reused

def test_paired_predictions_script_compares_two_tables_by_file(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("paired_predictions", Path(__file__).resolve().parents[1] / "scripts" / "paired_predictions.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [("a.png", "happy"), ("b.png", "sad"), ("c.png", "sad"), ("d.png", "happy")]

    def table(name: str, preds: list[str]) -> str:
        lines = ["file,label,pred,happy,sad"] + [f"{f},{t},{p},{0.9 if p == 'happy' else 0.1},{0.1 if p == 'happy' else 0.9}"
                                                for (f, t), p in zip(rows, preds)]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        return str(tmp_path / name)

    a = table("a.csv", ["happy", "happy", "happy", "happy"])  # 2 of 4 right
    b = table("b.csv", ["happy", "sad", "sad", "happy"])  # 4 of 4
    assert mod.main([a, b]) == 0
    out = capsys.readouterr().out
    assert "+50.0 points" in out and "2 are right only with second and 0 only with first" in out
    with pytest.raises(SystemExit):
        mod.main([str(tmp_path / "missing.csv"), b])
