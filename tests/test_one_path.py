"""One path per concern: the same preprocessing and TTA for `emotune evaluate` and `Recognizer.classify`, `pick_device`
outside the training engine, one table renderer, eval.json's `kind`, and no matplotlib side effects at import."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emotune import cli
from emotune.data.synthetic import draw_face
from emotune.inference.recognizer import Recognizer, default_model_path
from emotune.models.card import read_card

LABELS = read_card(default_model_path())[0].labels


@pytest.fixture(autouse=True)
def emotune_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EMOTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _crops() -> list[np.ndarray]:
    """Face-like crops as the model meets them: 48 px grey (FER2013's own size), colour, and other sizes that go
    through the card's source_size (48) before its input_size (96)."""
    rng = np.random.default_rng(0)
    out = [np.asarray(draw_face(lab, 48, rng).convert("RGB")) for lab in ("happy", "sad", "neutral", "surprise")]
    colour = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    colour[..., 0] = np.clip(colour[..., 0].astype(int) + 60, 0, 255)
    out.append(colour)
    out += [np.asarray(draw_face("happy", s, rng).convert("RGB")) for s in (40, 60, 96, 130)]
    return out


@pytest.fixture(scope="module")
def crop_folder(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("crops")
    arrays = {}
    for i, arr in enumerate(_crops()):
        label = LABELS[i % len(LABELS)]
        path = root / label / f"crop{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
        arrays[str(path)] = arr
    return root, arrays


def _evaluate(capsys, data: Path, out: Path, *extra: str) -> tuple[dict, pd.DataFrame]:
    rc = cli.main(["evaluate", "--data", str(data), "--out", str(out), "--format", "json", "--no-progress",
                   "--device", "cpu", *extra])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out), pd.read_csv(out / "predictions.csv")


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("tta", [False, True])
def test_evaluate_and_classify_give_the_same_probabilities(crop_folder, tmp_path, capsys, backend, tta):
    """The bundled model: `emotune evaluate` on crops saved as files and `Recognizer.classify` on the same arrays
    agree to 1e-5 (predictions.csv keeps 6 decimals), with and without flip TTA, on both backends."""
    root, arrays = crop_folder
    rep, preds = _evaluate(capsys, root, tmp_path / "rep", *(["--tta"] if tta else []))
    assert rep["tta"] is tta and len(preds) == len(arrays)
    rec = Recognizer(None, detector="none", device="cpu", backend=backend, tta=tta, batch_size=4, precision="fp32")
    assert rec.backend.name == backend
    got = rec.classify([arrays[f] for f in preds["file"]])
    np.testing.assert_allclose(got, preds[LABELS].to_numpy(), atol=1e-5)
    assert [LABELS[i] for i in got.argmax(1)] == list(preds["pred"])



def test_the_int8_default_and_evaluate_of_its_file_agree(crop_folder, tmp_path, capsys):
    """What CPU predict runs by default (the int8 companion) is scored by `emotune evaluate --model` on that file through
    the same Preprocess: the published int8 figures are the default's."""
    from emotune.models.bundled import bundled_path, int8_companion

    root, arrays = crop_folder
    q = int8_companion(bundled_path("default"))
    _, preds = _evaluate(capsys, root, tmp_path / "rep", "--model", str(q))
    rec = Recognizer(None, detector="none", device="cpu", batch_size=4)
    assert rec.precision == "int8"
    np.testing.assert_allclose(rec.classify([arrays[f] for f in preds["file"]]), preds[LABELS].to_numpy(), atol=1e-5)


@pytest.mark.parametrize("tta", [False, True])
def test_evaluate_scores_an_exported_onnx_like_its_checkpoint(crop_folder, tmp_path, capsys, tta):
    """`emotune evaluate --model X.onnx` (how an int8 export is judged before it becomes a default) runs the same
    crops through the same Preprocess as the checkpoint: the fp32 export's probabilities agree with PyTorch's."""
    root, _ = crop_folder
    onnx = tmp_path / "m.onnx"
    assert cli.main(["export", "-o", str(onnx)]) == 0
    capsys.readouterr()
    flag = ["--tta"] if tta else []
    rep_t, p_t = _evaluate(capsys, root, tmp_path / "t", *flag)
    rep_o, p_o = _evaluate(capsys, root, tmp_path / "o", "--model", str(onnx), *flag)
    np.testing.assert_allclose(p_o[LABELS].to_numpy(), p_t[LABELS].to_numpy(), atol=1e-4)
    assert rep_o["accuracy"] == rep_t["accuracy"] and rep_o["n"] == rep_t["n"]
    assert rep_o["loss"] == pytest.approx(rep_t["loss"], abs=1e-3)

def test_preprocess_resamples_through_source_size():
    """A 130 px crop goes 130 -> 48 (source_size) -> 96 like the training faces; a 48 px one only 48 -> 96; an
    input-size crop goes through 48 too (one rule for every image: Recognizer.crop hands over source-size crops)."""
    import torch
    from torchvision.transforms.v2 import functional as F

    from emotune.data.transforms import Preprocess

    card = read_card(default_model_path())[0]
    pre = Preprocess.from_card(card)
    assert (pre.source_size, pre.input_size, pre.channels, pre.in_chans) == (48, 96, "grayscale", 1)
    big = np.asarray(draw_face("happy", 130, np.random.default_rng(1)))
    t = torch.from_numpy(big)[None]
    want = F.resize(F.resize(t, [48, 48], antialias=True), [96, 96], antialias=True).float() / 255
    np.testing.assert_allclose(pre(big)[0].numpy(), ((want - 0.485) / 0.229)[0].numpy(), atol=1e-5)
    direct = ((F.resize(t, [96, 96], antialias=True).float() / 255 - 0.485) / 0.229)[0].numpy()
    assert np.abs(pre(big)[0].numpy() - direct).mean() > 0.01  # the source-size step is not skipped
    at_input = np.asarray(draw_face("sad", 96, np.random.default_rng(2)))
    t96 = torch.from_numpy(at_input)[None]
    via48 = F.resize(F.resize(t96, [48, 48], antialias=True), [96, 96], antialias=True).float() / 255
    np.testing.assert_allclose(pre(at_input)[0].numpy(), ((via48 - 0.485) / 0.229)[0].numpy(), atol=1e-5)
    assert pre.batch([]).shape == (0, 1, 96, 96)


def test_tta_averages_probabilities_not_logits(tmp_path):
    """evaluate's loop and the Recognizer share flip_tta: the mean of the two softmaxes."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from emotune.data.transforms import flip_tta
    from emotune.evaluate import predict_probs

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))
    x = torch.randn(6, 2, 4, 4) * 3
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    probs, _, loss = predict_probs(model, DataLoader(TensorDataset(x, y), batch_size=4), torch.device("cpu"), tta=True)
    with torch.no_grad():
        want = (torch.softmax(model(x), 1) + torch.softmax(model(torch.flip(x, dims=[3])), 1)) / 2
        logit_mean = torch.softmax((model(x) + model(torch.flip(x, dims=[3]))) / 2, 1)
    np.testing.assert_allclose(probs, want.numpy(), atol=1e-6)
    assert not np.allclose(probs, logit_mean.numpy(), atol=1e-3)
    assert loss == pytest.approx(float(torch.nn.functional.nll_loss(torch.log(want), y)), rel=1e-5)
    np.testing.assert_allclose(flip_tta(lambda a: a * 2, np.arange(4.0).reshape(1, 1, 1, 4)), [[[[3.0, 3.0, 3.0, 3.0]]]])


@pytest.mark.shared
def test_fer2013_test_accuracy_is_the_same_via_evaluate_and_classify(fer2013_dir, tmp_path, capsys):
    """~200 real FER2013 test faces (48 px): `emotune evaluate` and `Recognizer.classify` score the same accuracy
    (before, classify enlarged crops with INTER_AREA: 0.674 vs 0.704 on the whole test split)."""
    rep, preds = _evaluate(capsys, fer2013_dir / "test", tmp_path / "rep", "--max-samples", "210")
    assert rep["n"] == len(preds) >= 200
    rec = Recognizer(None, detector="none", device="cpu", backend="onnx", precision="fp32")
    crops = [np.asarray(Image.open(f).convert("RGB")) for f in preds["file"]]
    probs = rec.classify(crops)
    acc = float(np.mean([LABELS[i] for i in probs.argmax(1)] == preds["label"].to_numpy()))
    assert acc == pytest.approx(rep["accuracy"], abs=1e-12)
    np.testing.assert_allclose(probs, preds[LABELS].to_numpy(), atol=1e-5)


def test_eval_json_has_a_kind(crop_folder, tmp_path, capsys):
    from emotune.evaluate import EVAL_KIND

    rep, _ = _evaluate(capsys, crop_folder[0], tmp_path / "rep")
    assert rep["kind"] == EVAL_KIND == "emotune-eval/1"
    assert json.loads((tmp_path / "rep" / "eval.json").read_text())["kind"] == EVAL_KIND


def test_pick_device_lives_outside_the_training_engine():
    """evaluate no longer reaches into train.engine (the import circle evaluate <-> engine is gone)."""
    code = ("import sys, emotune.evaluate, emotune.device; from emotune.device import pick_device; "
            "assert 'emotune.train.engine' not in sys.modules, 'evaluate imported the training engine'; "
            "print(pick_device('cpu'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "cpu", res.stderr
    import emotune.train.engine as engine
    from emotune.device import pick_device
    assert engine.pick_device is pick_device


def test_importing_and_plotting_leave_matplotlib_alone(tmp_path):
    """No matplotlib.use() at import or when a confusion figure is drawn: the caller's backend and rcParams stay."""
    code = f"""
import matplotlib, sys
matplotlib.use("svg")
before = dict(matplotlib.rcParams)
import emotune.evaluate as ev
assert matplotlib.get_backend() == "svg" and dict(matplotlib.rcParams) == before
m = ev.compute_metrics([0, 1, 1], [0, 1, 0], ["a", "b"])
ev.plot_confusion(m, {str(tmp_path / 'cm.png')!r})
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert dict(matplotlib.rcParams) == before
assert "matplotlib.pyplot" not in sys.modules
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


def test_render_table_markdown_and_text():
    from emotune.tables import confusion_table, render_table

    md = render_table(["name", "value"], [["a|b", 1], ["c", None]])
    assert md.splitlines() == ["| name | value |", "|---|---|", "| a\\|b | 1 |", "| c |  |"]
    text = render_table(["name", "n", "note"], [["yunet", 12, "bundled"], ["x", 3, ""]], fmt="text", align="<><")
    assert text.splitlines() == ["name    n  note", "yunet  12  bundled", "x       3"]
    assert confusion_table(["a", "b"], [[1, 0], [2, 3]]).splitlines()[2:] == ["| a | 1 | 0 |", "| b | 2 | 3 |"]
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        render_table(["a", "b"], [["x"]])
    with pytest.raises(ValueError, match="'md' or 'text'"):
        render_table(["a"], [], fmt="html")


def test_photo_path_crops_at_source_size_and_matches_classify():
    """`predict` on a photo hands Recognizer.classify a source-size crop (48 px for the bundled model), so a face is
    resampled once to the training faces' size and once to the input size, as `evaluate` does: predict's
    probabilities equal classify's on that crop. (Before, crop resized to the input size first and preprocess then
    skipped its own resampling, so photos took a path evaluate never takes.)"""
    from emotune.faces import Face

    rng = np.random.default_rng(5)
    photo = np.asarray(draw_face("surprise", 150, rng).convert("RGB"))
    rec = Recognizer(detector="none", backend="torch", device="cpu")
    crop = rec.crop(photo, Face(box=(0.0, 0.0, 150.0, 150.0), score=1.0))
    assert crop.shape == (48, 48, 3)
    (face,) = rec.predict(photo)
    np.testing.assert_allclose([face.probs[k] for k in rec.labels], rec.classify([crop])[0], atol=1e-6)


def test_training_curves_and_video_timelines_leave_matplotlib_alone(tmp_path):
    """Every emotune figure (learning curves, video timelines) draws on its own Agg figure: no backend switch, no
    pyplot, whatever the importing program chose."""
    code = f"""
import matplotlib, sys
matplotlib.use("svg")
import pandas as pd
from pathlib import Path
from emotune.train.engine import plot_curves
from emotune.inference.output import plot_timeline
run = Path({str(tmp_path)!r})
hist = [dict(epoch=e, train_loss=1.0 / e, val_loss=1.2 / e, train_accuracy=0.5, val_accuracy=0.4, val_macro_f1=0.3) for e in (1, 2)]
plot_curves(run, hist)
df = pd.DataFrame(dict(label=["a", "b"], track=[0, 0], time=[0.0, 0.1], a=[0.9, 0.2], b=[0.1, 0.8]))
plot_timeline(df, ["a", "b"], run / "t.png")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    assert (tmp_path / "curves.png").read_bytes()[:4] == (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
