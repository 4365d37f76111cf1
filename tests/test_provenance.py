"""Provenance of checkpoints: cards bound to their weights, a strict card schema, the face framing in the card, and
an acyclic emotune.models package.

Checkpoints use timm's tiny `test_resnet` (0.4 M parameters) at 32 px, so the file runs in seconds on a CPU.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import logging
import os
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from emotune.errors import CheckpointError
from emotune.faces import FER2013_FRAMING, Face, Framing, crop_face
from emotune.models import CARD_FORMAT, ModelCard, create_model, load_checkpoint, read_card, save_checkpoint, upgrade_checkpoint
from emotune.models.card import BOUND_FIELDS, META_CARD

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "emotune" / "models"
LABELS = ["neutral", "happy", "angry"]
SIZE = 32
OTHER_POINTS = [[0.35, 0.42], [0.65, 0.42], [0.5, 0.6], [0.38, 0.74], [0.62, 0.74]]  # a looser, lower framing


def small_model(k: int = len(LABELS)) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("test_resnet", num_classes=k, img_size=SIZE).eval()


def small_card(**kw) -> ModelCard:
    return ModelCard(**{"backbone": "test_resnet", "labels": list(LABELS), "input_size": SIZE, "mean": [0.5, 0.5, 0.5],
                        "std": [0.25, 0.25, 0.25], "training": {"data": "unit test"}, "metrics": {"accuracy": 0.5}, **kw})


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "best", small_model(), small_card())


def edit_card(path: Path, **changes) -> Path:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


# --------------------------------------------------------------------------------------------- 1. binding


def test_the_weights_carry_the_bound_card_fields(saved):
    with safe_open(str(saved.with_suffix(".safetensors")), framework="pt") as fh:
        meta = fh.metadata()
    bound = json.loads(meta[META_CARD])
    card = json.loads(saved.read_text())
    assert meta["format"] == CARD_FORMAT == card["format"] == "emotune-model/2"
    assert set(bound) == set(BOUND_FIELDS) and all(bound[k] == card[k] for k in BOUND_FIELDS)
    assert not {"metrics", "training", "license", "sha256", "created"} & set(bound)


@pytest.mark.parametrize(("field", "value"), [
    ("labels", ["happy", "neutral", "angry"]),  # same names, another order: every prediction renamed
    ("mean", [0.4, 0.5, 0.5]), ("std", [0.5, 0.5, 0.5]), ("source_size", 48), ("input_size", 64),
    ("channels", "bgr"), ("backbone", "resnet18"), ("head", {"type": "fusion_concat", "levels": [-2]}),
    ("framing", {**FER2013_FRAMING.to_dict(), "box_scale": 1.3}),
])
def test_an_edited_card_is_refused_naming_the_card_and_field(saved, field, value):
    edit_card(saved, **{field: value})
    for load in (read_card, load_checkpoint):
        with pytest.raises(CheckpointError) as exc:
            load(saved)
        msg = str(exc.value)
        assert str(saved) in msg and field in msg.split("differ")[0], msg


def test_provenance_fields_may_change_after_training(saved):
    edit_card(saved, metrics={"test": {"accuracy": 0.9}}, training={"run": "elsewhere"}, license="mit",
              created="2020-01-01T00:00:00+00:00")
    model, card = load_checkpoint(saved)
    assert card.metrics["test"]["accuracy"] == 0.9 and card.license == "mit"


def test_a_tampered_card_is_caught_on_the_cached_onnx_path(saved, tmp_path, monkeypatch):
    """The CPU path runs a cached ONNX export and never rebuilds the PyTorch model: the card must be checked there too."""
    from emotune.inference import load_backend

    monkeypatch.setenv("EMOTUNE_CACHE", str(tmp_path / "cache"))
    card, _ = load_backend(saved, "cpu", "onnx")
    assert card.labels == LABELS and list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    edit_card(saved, labels=list(reversed(LABELS)))
    with pytest.raises(CheckpointError, match="labels"):
        load_backend(saved, "cpu", "onnx")
    # an exported .onnx and the card beside it are bound the same way (the ONNX file embeds the card)
    edit_card(saved, labels=LABELS)
    onnx_path = next((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert load_backend(onnx_path, "cpu", "onnx")[0].labels == LABELS
    edit_card(onnx_path.with_suffix(".json"), mean=[0.0, 0.0, 0.0])
    with pytest.raises(CheckpointError, match="mean"):
        load_backend(onnx_path, "cpu", "onnx")


def write_format1(tmp_path: Path, name: str = "old") -> Path:
    """A checkpoint as emotune wrote it before cards were bound: safetensors metadata {format}, card format 1."""
    import hashlib

    weights = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in small_model().state_dict().items()}, str(weights),
              metadata={"format": "emotune-model/1"})
    card = {k: v for k, v in small_card().to_dict().items() if k != "framing"}
    card.update(format="emotune-model/1", weights_file=weights.name, sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    return tmp_path / f"{name}.json"


def test_an_older_unbound_checkpoint_loads_with_one_warning(tmp_path, caplog):
    path = write_format1(tmp_path)
    with caplog.at_level(logging.WARNING, logger="emotune"):
        model, card = load_checkpoint(path)
        load_checkpoint(path)
    warnings = [r for r in caplog.records if "not bound" in r.getMessage()]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()
    assert card.format == "emotune-model/1" and card.framing == FER2013_FRAMING.to_dict()


def test_upgrade_binds_an_old_checkpoint_without_changing_its_tensors(tmp_path):
    path = write_format1(tmp_path)
    before = load_file(str(tmp_path / "old.safetensors"))
    upgrade_checkpoint(path)
    after = load_file(str(tmp_path / "old.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    _, card = load_checkpoint(path)  # sha256 updated in the card
    assert card.format == CARD_FORMAT
    edit_card(path, labels=list(reversed(LABELS)))
    with pytest.raises(CheckpointError, match="labels"):
        read_card(path)


def test_a_format2_card_with_unbound_weights_is_refused(saved, tmp_path):
    weights = saved.with_suffix(".safetensors")
    save_file(load_file(str(weights)), str(weights), metadata={"format": "emotune-model/1"})  # binding stripped
    with pytest.raises(CheckpointError, match="no model card bound"):
        read_card(saved)


def test_every_checkpoint_writer_binds(tmp_path):
    """Averaging and ensembling go through save_checkpoint: their outputs are bound like a training run's."""
    from emotune.models.average import average_checkpoints, ensemble_checkpoints

    a = save_checkpoint(tmp_path / "a", small_model(), small_card())
    b = save_checkpoint(tmp_path / "b", small_model(), small_card())
    for out in (average_checkpoints([a, b], tmp_path / "avg"), ensemble_checkpoints([a, b], tmp_path / "ens", [3, 1])):
        with safe_open(str(out.with_suffix(".safetensors")), framework="pt") as fh:
            bound = json.loads(fh.metadata()[META_CARD])
        assert bound["head"] == read_card(out)[0].head
    edit_card(tmp_path / "ens.json", head={**read_card(tmp_path / "ens.json")[0].head, "weights": [0.5, 0.5]})
    with pytest.raises(CheckpointError, match=r"head\.weights"):
        load_checkpoint(tmp_path / "ens.json")


def test_the_bundled_default_model_is_bound():
    from emotune.inference.recognizer import default_model_path

    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"this build has no bundled default model ({path} absent)")
    card, _ = read_card(path)
    with safe_open(str(path.parent / card.weights_file), framework="pt") as fh:
        bound = json.loads(fh.metadata()[META_CARD])
    assert card.format == CARD_FORMAT and bound["labels"] == card.labels and bound["source_size"] == 48
    load_checkpoint(path)  # sha256 of the re-bound file


def test_the_bundle_script_writes_bound_files_with_the_same_tensors(tmp_path):
    spec = importlib.util.spec_from_file_location("bundle_default_model", ROOT / "scripts" / "bundle_default_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    save_checkpoint(tmp_path / "run" / "best", small_model(), small_card())
    mod.main(["--run", str(tmp_path / "run"), "--dest", str(tmp_path / "pkg"), "--source-size", "48"])
    _, card = load_checkpoint(tmp_path / "pkg" / "default.json")
    assert card.source_size == 48  # changed by the bundle step, and bound
    src, dst = load_file(str(tmp_path / "run" / "best.safetensors")), load_file(str(tmp_path / "pkg" / "default.safetensors"))
    assert src.keys() == dst.keys() and all(torch.equal(src[k], dst[k]) for k in src)
    edit_card(tmp_path / "pkg" / "default.json", source_size=0)
    with pytest.raises(CheckpointError, match="source_size"):
        read_card(tmp_path / "pkg" / "default.json")


# --------------------------------------------------------------------------------------------- 2. card schema


def test_unknown_card_keys_are_refused_for_this_and_older_formats(saved):
    edit_card(saved, lables=LABELS)
    with pytest.raises(CheckpointError, match=r"unknown model card keys \['lables'\] for format emotune-model/2"):
        read_card(saved)
    with pytest.raises(CheckpointError, match=r"\['lables'\] for format emotune-model/1"):
        ModelCard.from_dict({**small_card().to_dict(), "format": "emotune-model/1", "lables": LABELS})


def test_a_newer_card_format_is_read_with_a_warning_only_when_every_key_is_known(caplog):
    card = small_card().to_dict()
    with caplog.at_level(logging.WARNING, logger="emotune"):
        assert ModelCard.from_dict({**card, "format": "emotune-model/3"}, "new.json").labels == LABELS
    assert any("newer" in r.getMessage() and "new.json" in r.getMessage() for r in caplog.records)
    with pytest.raises(CheckpointError, match=r"newer emotune.*\['calibration'\].*upgrade"):
        ModelCard.from_dict({**card, "format": "emotune-model/3", "calibration": {"t": 1.5}}, "new.json")
    with pytest.raises(CheckpointError, match="unknown model card format"):
        ModelCard.from_dict({**card, "format": "someone-else/1"})


# --------------------------------------------------------------------------------------------- 3. framing


def _old_crop_face(rgb, face, size, margin=1.0, align=True):
    """faces/align.py's crop_face before framing lived in the card (FER2013 constants), verbatim."""
    import cv2

    template = np.array([[0.31, 0.378], [0.69, 0.378], [0.50, 0.594], [0.35, 0.756], [0.65, 0.756]], np.float32)
    m = None
    if align and face.landmarks is not None:
        dst = (0.5 + (template - 0.5) / margin) * size
        m, _ = cv2.estimateAffinePartial2D(np.asarray(face.landmarks, np.float32), dst, method=cv2.LMEDS)
        if m is None or not np.all(np.isfinite(m)):
            m = None
    if m is None:
        x, y, w, h = face.box
        side = max(w, h) * 1.04 * margin
        s = size / max(side, 1e-6)
        cx, cy = x + w / 2, y + h / 2
        m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float32)
    zoom = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    k = int(min(4, max(1, np.floor(1 / max(zoom, 1e-6)))))
    if k > 1:
        m = m * np.float32(k)
        m[:, 2] += (k - 1) / 2
    big = cv2.warpAffine(rgb, m, (size * k, size * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return big if k == 1 else cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


def _scene():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    lm = np.array([[160, 170], [240, 172], [200, 215], [168, 255], [232, 256]], np.float32)
    return rgb, Face((120.0, 110.0, 160.0, 190.0), 0.99, lm)


@pytest.mark.parametrize(("size", "margin", "landmarks"), [(48, 1.0, True), (96, 1.3, True), (48, 1.0, False), (64, 0.8, False)])
def test_the_default_framing_reproduces_the_old_crop_exactly(size, margin, landmarks):
    rgb, face = _scene()
    face = face if landmarks else Face(face.box, face.score)
    old = _old_crop_face(rgb, face, size, margin)
    for framing in (None, FER2013_FRAMING, small_card().framing, json.loads(json.dumps(FER2013_FRAMING.to_dict()))):
        assert np.array_equal(crop_face(rgb, face, size, margin, framing=framing), old)


def _recognizer(card: ModelCard, margin: float = 1.0, align: bool = True):
    from emotune.inference import Recognizer

    rec = Recognizer.__new__(Recognizer)  # no model or detector needed to crop
    rec.card, rec.scene, rec.margin, rec.align = card, False, margin, align
    return rec


def test_the_cards_framing_decides_the_crop():
    rgb, face = _scene()
    other = {"template": "tighter", "points": OTHER_POINTS, "box_scale": 1.25, "margin": 1.1, "align": True}
    fer, mine = small_card(), small_card(framing=other)
    for f in (face, Face(face.box, face.score)):  # aligned, and a box crop
        a, b = _recognizer(fer).crop(rgb, f), _recognizer(mine).crop(rgb, f)
        assert a.shape == b.shape == (SIZE, SIZE, 3) and np.abs(a.astype(int) - b).mean() > 5
        assert np.array_equal(a, _old_crop_face(rgb, f, SIZE))
        # the Recognizer's margin multiplies the card's
        assert np.array_equal(_recognizer(mine, margin=1.5).crop(rgb, f),
                              crop_face(rgb, f, SIZE, framing={**other, "margin": 1.1 * 1.5}))
    no_align = small_card(framing={**other, "align": False})
    assert np.array_equal(_recognizer(no_align).crop(rgb, face), crop_face(rgb, Face(face.box, face.score), SIZE, framing=other))


def test_framing_round_trips_and_bad_framing_is_refused(tmp_path):
    other = {"template": "tighter", "points": OTHER_POINTS, "box_scale": 1.25, "margin": 1.0, "align": True}
    path = save_checkpoint(tmp_path / "m", small_model(), small_card(framing=other))
    assert Framing.from_dict(read_card(path)[0].framing) == Framing.from_dict(other)
    assert ModelCard.from_dict({**small_card().to_dict(), "framing": {"template": "fer2013"}}).framing == FER2013_FRAMING.to_dict()
    for bad, msg in (({"points": OTHER_POINTS[:4]}, "5 \\[x, y\\] pairs"), ({"template": "mine"}, "give its 'points'"),
                     ({"box_scale": 0}, "box_scale"), ({"align": "yes"}, "align"), ({"zoom": 2}, "unknown keys")):
        with pytest.raises(CheckpointError, match=msg):
            ModelCard.from_dict({**small_card().to_dict(), "framing": bad}, "m.json")


# --------------------------------------------------------------------------------------------- 4. import layering


def _model_imports() -> dict[str, set[str]]:
    """emotune.models module -> the emotune.models modules it imports anywhere (top level or inside functions)."""
    names = {p.stem for p in MODELS.glob("*.py") if p.stem != "__init__"}
    graph = {}
    for name in names:
        deps = set()
        for node in ast.walk(ast.parse((MODELS / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:  # from .x import y / from . import x
                    deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
                elif node.level == 0 and (node.module or "").startswith("emotune.models"):
                    rest = node.module.split(".")[2:]
                    deps |= {rest[0]} if rest else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[2] for a in node.names if a.name.startswith("emotune.models.")}
        graph[name] = deps & names
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for d in graph[todo.pop()] - seen:
            seen.add(d)
            todo.append(d)
    return seen


def test_the_models_package_has_no_import_cycle():
    graph = _model_imports()
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle in emotune.models: {exc.args[1]}")
    assert {"registry", "card", "factory", "transfer", "ensemble", "weights"} <= set(order)
    assert graph["registry"] == set() and graph["ensemble"] == set()  # the registry is a plain table
    assert "factory" not in _reach(graph, "card") and "registry" not in _reach(graph, "card")  # cards only read/write


def test_every_models_module_imports_first_in_a_fresh_interpreter():
    """Each module imported on its own (the package __init__, which fixes one order, replaced by a bare package)."""
    mods = sorted(p.stem for p in MODELS.glob("*.py") if p.stem != "__init__")
    code = ("import importlib, sys, types\n"
            f"for m in {mods!r}:\n"
            "    for k in [k for k in sys.modules if k.startswith('emotune')]:\n"
            "        del sys.modules[k]\n"
            "    importlib.import_module('emotune')\n"
            "    pkg = types.ModuleType('emotune.models')\n"
            f"    pkg.__path__ = [{str(MODELS)!r}]\n"
            "    sys.modules['emotune.models'] = pkg\n"
            "    importlib.import_module('emotune.models.' + m)\n"
            "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
