"""The bundling step that turns a training run into the package's default model, and the bundled model itself."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from emotune.data.synthetic import make_synthetic_dataset
from emotune.inference import Recognizer
from emotune.inference.recognizer import default_model_path
from emotune.errors import CheckpointError
from emotune.models import load_checkpoint, read_card
from emotune.models.bundled import bundled_models, bundled_path, resolve_model
from emotune.train import make_config, train

ROOT = Path(__file__).resolve().parents[1]


def bundle_main():
    spec = importlib.util.spec_from_file_location("bundle_default_model", ROOT / "scripts" / "bundle_default_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def tiny_run(tmp_path: Path, monkeypatch, per_class: int) -> Path:
    """A one-epoch grey 32 px run on synthetic faces: something to bundle."""
    monkeypatch.setenv("EMOTUNE_CACHE", str(tmp_path / "cache"))
    data = make_synthetic_dataset(tmp_path / "d", per_class=per_class, size=32, seed=3)
    return train(make_config({"data": str(data), "backbone": "mobilenetv2", "img_size": 32, "epochs": 1, "batch_size": 16,
                              "workers": 0, "progress": False, "val_fraction": 0.25, "channels": "grayscale",
                              "out": str(tmp_path / "run")})).run_dir


def test_bundle_copies_the_best_checkpoint_with_test_metrics_and_source_size(tmp_path, monkeypatch):
    run = tiny_run(tmp_path, monkeypatch, per_class=8)
    labels = read_card(run)[0].labels
    report = {"data": "test/", "tta": False, "accuracy": 0.5, "balanced_accuracy": 0.4, "macro_f1": 0.3, "n": 10,
              "per_class": [{"label": c, "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2} for c in labels]}
    (tmp_path / "eval.json").write_text(json.dumps(report))
    assert read_card(run)[0].source_size == 32  # training recorded its faces' size
    bundle_main()(["--run", str(run), "--test-report", str(tmp_path / "eval.json"), "--dest", str(tmp_path / "pkg"),
                   "--source-size", "48", "--report", f"ferplus_test={tmp_path / 'eval.json'}", "--note", "as run"])
    model, card = load_checkpoint(tmp_path / "pkg" / "default.json")  # sha256-checked
    assert card.training["note"] == "as run"
    assert card.metrics["ferplus_test"] == {k: report[k] for k in ("data", "tta", "accuracy", "balanced_accuracy", "macro_f1", "n")}
    assert card.source_size == 48 and card.weights_file == "default.safetensors"
    bundle_main()(["--run", str(run), "--dest", str(tmp_path / "pkg"), "--name", "scene"])
    _, scene = load_checkpoint(tmp_path / "pkg" / "scene.json")
    assert scene.source_size == 32 and "Twitter I" in scene.license and scene.weights_file == "scene.safetensors"
    assert card.metrics["test"]["accuracy"] == 0.5 and set(card.metrics["test_per_class_f1"]) == set(labels)
    assert card.training["recipe"] == "configs/default_model.yaml" and "research" in card.license
    rec = Recognizer(tmp_path / "pkg" / "default.json", detector="none", backend="torch", device="cpu")
    probs = rec.classify([np.full((48, 48, 3), 128, np.uint8)])
    assert probs.shape == (1, len(labels)) and np.isclose(probs.sum(), 1, atol=1e-5)


def test_the_bundled_default_model_fits_the_budget():
    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"this build has no bundled default model ({path} absent)")
    card, _ = read_card(path)
    weights = path.parent / card.weights_file
    assert weights.stat().st_size <= 25 * 1024 * 1024
    assert card.labels == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert card.source_size == 48 and card.sha256


def render_section(tmp_path, monkeypatch, report: dict, **card_fields) -> tuple[object, str]:
    """scripts/model_section.py's render() on a two-class card and report, from a folder holding a fake weights file."""
    spec = importlib.util.spec_from_file_location("model_section", ROOT / "scripts" / "model_section.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from emotune.models import ModelCard

    labels = ["happy", "sad"]
    card = ModelCard("mobilenetv2", labels, 64, [0.5], [0.5], "grayscale", 1, weights_file="default.safetensors", **card_fields)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src/emotune/weights").mkdir(parents=True)
    (tmp_path / "src/emotune/weights/default.safetensors").write_bytes(b"x" * 2048)
    report = {"labels": labels, "balanced_accuracy": 0.65, "macro_f1": 0.6, "n": 10, "confusion": [[4, 1], [2, 3]],
              "per_class": [{"label": c, "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 5} for c in labels], **report}
    return mod, mod.render(report, card, "test machine")


def test_readme_section_is_rendered_from_the_test_report(tmp_path, monkeypatch):
    mod, text = render_section(tmp_path, monkeypatch, {"accuracy": 0.7012, "tta": False}, metrics={"epoch": 7})
    assert text.startswith(mod.START) and text.endswith(mod.END)
    assert "**0.7012**" in text and "| happy | 4 | 1 |" in text and "best epoch (7)" in text and "test machine" in text
    assert "without TTA" in text and "--tta" not in text


def test_readme_section_names_every_stage_and_the_tta_setting(tmp_path, monkeypatch):
    _, text = render_section(tmp_path, monkeypatch, {"accuracy": 0.7, "tta": True}, metrics={"epoch": 3},
                             training={"run": "runs/stage2", "recipes": ["configs/a.yaml", "configs/b.yaml"]})
    assert "`configs/a.yaml` then `configs/b.yaml` (2 stages" in text
    assert "`emotune train --config configs/a.yaml`, then `emotune train --config configs/b.yaml`" in text
    assert "--model runs/stage2 --data ../shared/data/fer2013/test --tta --out runs/stage2/test" in text
    assert "with flip TTA" in text


def test_the_bundled_scene_model_reads_a_whole_photo(tmp_path, monkeypatch):
    """The package carries a scene model: sentiment2 classes plus valence/arousal on [-1, 1], a scene card (centre crop,
    no face detection), bound to its weights, under 25 MB; `--scene` on a photo gives one whole-image row."""
    monkeypatch.setenv("EMOTUNE_CACHE", str(tmp_path / "cache"))
    from emotune.inference.recognizer import Recognizer, default_scene_model_path

    path = default_scene_model_path()
    _, card = load_checkpoint(path)
    assert card.input_kind == "scene" and card.labels == ["positive", "negative"]
    assert card.target_names == ["valence", "arousal"] and card.resize_mode == "center_crop"
    assert path.with_suffix(".safetensors").stat().st_size < 25 * 2**20
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    rec = Recognizer(path, scene=True, backend="torch", device="cpu")
    row = rec.predict_scene(photo)
    assert abs(sum(row.probs.values()) - 1) < 1e-5 and set(row.targets) == {"valence", "arousal"}
    assert all(-1 <= v <= 1 for v in row.targets.values())


@pytest.mark.parametrize("name", bundled_models())
def test_every_bundled_model_resolves_by_name_and_loads_bound_to_its_weights(name):
    path = resolve_model(name)
    assert path == bundled_path(name) and path.is_file()
    _, card = load_checkpoint(path)  # sha256 and bound fields checked
    assert (path.parent / card.weights_file).is_file() and card.weights_file.endswith(".safetensors")


def test_model_specs_resolve_to_the_default_a_bundled_name_or_the_path_given(tmp_path, monkeypatch):
    assert resolve_model(None) == resolve_model("") == resolve_model("default") == default_model_path()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="not a bundled model"):
        resolve_model("no_such_model")
    assert resolve_model("runs/x") == Path("runs/x")  # a path is left for the loader to check and name
    if "scene" in bundled_models():
        (tmp_path / "scene").mkdir()  # an existing folder wins over the bundled name it shadows
        assert resolve_model("scene") == Path("scene")


def test_emotune_models_lists_every_bundled_model(capsys):
    from emotune import cli

    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.split("Bundled models")[1].splitlines()[2:] if line.strip()}
    assert set(rows) == set(bundled_models()) and "default" in rows
    from emotune.models.bundled import bundled_path, int8_companion

    for name, cells in rows.items():  # the "on CPU" column: int8 where the model ships a current int8 companion
        assert cells[-2] == ("int8" if int8_companion(bundled_path(name)) else "fp32")
    assert rows["default"][-2] == "int8"


def test_bundling_refuses_to_replace_weights_another_card_shares(tmp_path, monkeypatch):
    run = tiny_run(tmp_path, monkeypatch, per_class=6)
    pkg = tmp_path / "pkg"
    bundle_main()(["--run", str(run), "--dest", str(pkg)])
    alias = json.loads((pkg / "default.json").read_text())  # a second name for the same tensors, as fer2013 is
    (pkg / "fer2013.json").write_text(json.dumps(alias))
    with pytest.raises(SystemExit, match="fer2013.json uses default.safetensors"):
        bundle_main()(["--run", str(run), "--dest", str(pkg)])


def test_readme_section_names_each_source_of_a_merged_model(tmp_path, monkeypatch):
    sources = {"ckplus": {"n_train": 795, "weight": 1}, "taiwanese": {"n_train": 751, "weight": 1},
               "fer2013": {"n_train": 28709, "weight": 2}}
    _, text = render_section(tmp_path, monkeypatch, {"accuracy": 0.7, "tta": False}, metrics={"epoch": 2},
                             training={"run": "runs/final", "recipes": ["configs/final.yaml"], "pretrained": "fer2013.json",
                                       "data": {"train": "sources", "sources": sources}})
    assert "fine-tuned from `fer2013.json` on ckplus (795 faces, 25% of the draws), taiwanese (751 faces, 25% of the draws), " \
           "fer2013 (28,709 faces, 50% of the draws)" in text and "merged validation split" in text
