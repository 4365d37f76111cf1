"""Scene prediction end to end: `emotune predict --scene` with a tiny scene model trained here, faces and the whole
image in one run (`--scene-model`, a `kind` column), the Python API, `--annotate`'s corner, the clear refusals, and the
scene fields of `emotune serve`. Synthetic whole images only: brightness encodes valence, a dark left band "positive"."""
from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emotune import cli
from emotune.data.targets import from_unit

SCENE_COLUMNS = ["positive", "negative", "valence", "arousal"]


def _scene_image(val: float, positive: bool, rng, size=(40, 56)) -> np.ndarray:
    img = np.full((*size, 3), int(127 + 110 * val), np.uint8)
    if positive:
        img[:, :12] = 0
    else:
        img[:, -12:] = 255
    return np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene_run(tmp_path_factory) -> Path:
    """A multi-task scene model (positive/negative + valence/arousal on 1-7), trained for a few seconds."""
    from emotune.train import make_config, train

    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        val = float(rng.uniform(-1, 1))
        label = "positive" if i % 2 else "negative"
        Image.fromarray(_scene_image(val, label == "positive", rng)).save(root / f"img{i:03d}.png")
        rows.append({"path": f"img{i:03d}.png", "label": label, "valence_mean": round(from_unit(val, (1, 7)), 4),
                     "arousal_mean": round(from_unit(-val * 0.5, (1, 7)), 4)})
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = make_config({"backbone": "resnet10t", "img_size": 32, "batch_size": 16, "workers": 0, "progress": False,
                       "val_fraction": 0.25, "lr": 3e-3, "erasing": 0.0, "rotation": 0.0, "threads": 1, "epochs": 6,
                       "data": str(root / "manifest.csv"), "out": str(root / "run"), "targets": ["valence_mean", "arousal_mean"],
                       "target_scale": "1,7", "input_kind": "scene"})
    cfg.labels = "auto"
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def face_run(tmp_path_factory) -> Path:
    """A face model (untrained) for the refusals."""
    from emotune.models import ModelCard, create_model, save_checkpoint

    d = tmp_path_factory.mktemp("face_model")
    card = ModelCard(backbone="resnet10t", labels=["happy", "sad"], input_size=32, mean=[0.5] * 3, std=[0.5] * 3)
    save_checkpoint(d / "face", create_model("resnet10t", 2, None, img_size=32), card)
    return d / "face.json"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """A bright and a dark synthetic scene (no face), and a photo with one face (Grace Hopper)."""
    from matplotlib import cbook

    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    out = {"bright": d / "bright.png", "dark": d / "dark.png", "grace": d / "grace.jpg"}
    Image.fromarray(_scene_image(0.9, True, rng, (80, 120))).save(out["bright"])
    Image.fromarray(_scene_image(-0.9, False, rng, (80, 120))).save(out["dark"])
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        im.convert("RGB").save(out["grace"], quality=92)
    return out


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------------------------ --scene end to end
def test_cli_predict_scene_end_to_end(scene_run, photos, tmp_path, capsys, caplog):
    out = tmp_path / "scene.csv"
    rc, _, err = run_cli(capsys, "predict", photos["bright"], photos["dark"], "--scene", "--model", scene_run, "-o", out,
                         "--annotate", tmp_path / "ann", "--no-progress")
    assert rc == 0, err
    df = pd.read_csv(out)
    assert list(df["kind"]) == ["scene", "scene"] and set(SCENE_COLUMNS) <= set(df.columns)
    assert np.allclose(df[["positive", "negative"]].sum(axis=1), 1, atol=1e-4)
    assert df[["valence", "arousal"]].abs().le(1).all().all()
    bright, dark = df.set_index(df["file"].map(lambda f: Path(f).stem)).loc[["bright", "dark"]].to_dict("records")
    assert bright["valence"] > dark["valence"] and bright["arousal"] < dark["arousal"]  # it learnt brightness
    assert (bright["w"], bright["h"]) == (120, 80)
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == ["bright_emotune.jpg", "dark_emotune.jpg"]
    # the same run as JSON, and a scene model without --scene: scene mode with a note, the same values
    rc, text, err = run_cli(capsys, "predict", photos["bright"], "--model", scene_run, "--format", "json", "--no-progress")
    assert rc == 0 and "is a scene model: reading whole images" in caplog.text  # the note (stderr via logging)
    (rec,) = json.loads(text)
    assert rec["kind"] == "scene" and abs(rec["valence"] - bright["valence"]) < 1e-4


# ------------------------------------------------------------------------------------------------ faces and scene together
def test_faces_and_scene_in_one_run(scene_run, photos, tmp_path, capsys):
    out = tmp_path / "both.csv"
    rc, _, err = run_cli(capsys, "predict", photos["grace"], photos["dark"], "--scene-model", scene_run, "-o", out,
                         "--no-progress")
    assert rc == 0, err
    assert "1 face(s) in 2 input(s)" in err  # scene rows are not faces
    df = pd.read_csv(out)
    assert list(df.columns[:3]) == ["file", "kind", "frame"]
    df["stem"] = df["file"].map(lambda f: Path(f).stem)
    assert list(zip(df["stem"], df["kind"])) == [("grace", "face"), ("grace", "scene"), ("dark", "face"), ("dark", "scene")]
    face = df[(df["stem"] == "grace") & (df["kind"] == "face")].iloc[0]
    scene = df[(df["stem"] == "grace") & (df["kind"] == "scene")].iloc[0]
    assert face["label"] in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral") and face["w"] < 512
    assert pd.isna(face["positive"]) and pd.isna(face["valence"])
    assert scene["label"] in ("positive", "negative") and (scene["x"], scene["w"], scene["h"]) == (0, 512, 600)
    assert abs(scene["positive"] + scene["negative"] - 1) < 1e-4 and -1 <= scene["valence"] <= 1
    assert pd.isna(scene["happy"])
    no_face = df[(df["stem"] == "dark") & (df["kind"] == "face")].iloc[0]
    assert pd.isna(no_face["label"])  # the face-less image keeps its "no face" row, and gets its scene row
    # JSONL and the terminal table
    rc, text, _ = run_cli(capsys, "predict", photos["grace"], "--scene-model", scene_run, "--format", "jsonl", "--no-progress")
    recs = [json.loads(line) for line in text.splitlines()]
    assert [r["kind"] for r in recs] == ["face", "scene"] and recs[1]["valence"] is not None and recs[0]["valence"] is None
    rc, text, _ = run_cli(capsys, "predict", photos["grace"], "--scene-model", scene_run, "--no-progress")
    lines = text.splitlines()
    assert len(lines) == 3 and "whole image" in lines[2] and "valence" in lines[2] and "positive" not in lines[1]
    # --annotate: the scene values in the top-left corner
    rc, _, _ = run_cli(capsys, "predict", photos["grace"], "--scene-model", scene_run, "--annotate", tmp_path / "a",
                       "--no-progress", "-o", tmp_path / "x.csv")
    rc, _, _ = run_cli(capsys, "predict", photos["grace"], "--annotate", tmp_path / "b", "--no-progress", "-o", tmp_path / "y.csv")
    a = np.asarray(Image.open(tmp_path / "a" / "grace_emotune.jpg")).astype(int)
    b = np.asarray(Image.open(tmp_path / "b" / "grace_emotune.jpg")).astype(int)
    assert np.abs(a[:12, :60] - b[:12, :60]).mean() > 20 and np.abs(a[300:, 300:] - b[300:, 300:]).mean() < 2


def test_python_api_scene_beside_faces(scene_run, photos):
    from emotune.inference.recognizer import Recognizer

    rec = Recognizer(scene_model=scene_run, device="cpu")
    df = rec.predict_images([photos["grace"], photos["bright"]])
    assert list(df["kind"]) == ["face", "scene", "face", "scene"] and set(SCENE_COLUMNS) <= set(df.columns)
    assert df["valence"].dtype.kind == "f" and df.loc[df["kind"] == "scene", "valence"].notna().all()
    whole = rec.predict_scene(photos["bright"])
    assert whole.box == (0.0, 0.0, 120.0, 80.0) and set(whole.targets) == {"valence", "arousal"}
    row = df[(df["kind"] == "scene") & df["file"].str.endswith("bright.png")].iloc[0]
    assert abs(whole.targets["valence"] - row["valence"]) < 1e-4  # one preprocessing path, batched or not
    assert len(rec.predict(photos["grace"])) == 1  # predict() still gives the faces only
    folder = rec.predict_folder(photos["grace"].parent)
    assert (folder["kind"] == "scene").sum() == 3
    plain = Recognizer(device="cpu")
    assert "kind" not in plain.predict_images([photos["grace"]]).columns  # face-only tables are unchanged
    with pytest.raises(Exception, match="no scene model"):
        plain.predict_scene(photos["grace"])


# ------------------------------------------------------------------------------------------------ refusals
def test_scene_refusals_are_one_line(scene_run, face_run, photos, capsys, monkeypatch, tmp_path):
    from emotune.inference import recognizer

    monkeypatch.setattr(recognizer, "default_scene_model_path", lambda: tmp_path / "absent" / "scene.json")
    cases = [
        (["--with-scene"], "no bundled scene model"),
        (["--scene"], "default model is a face model"),  # the default face model is not a scene model
        (["--scene", "--model", face_run], "not a scene model"),
        (["--scene-model", face_run], "not a scene model"),
        (["--scene", "--scene-model", scene_run], "choose one"),
        (["--model", scene_run, "--scene-model", scene_run], "already reads whole images"),
    ]
    for extra, problem in cases:
        rc, _, err = run_cli(capsys, "predict", photos["bright"], "--no-progress", *extra)
        lines = [ln for ln in err.splitlines() if ln.startswith("emotune: error")]
        assert rc == 2 and len(lines) == 1 and problem in lines[0], (extra, err)
    _, _, err = run_cli(capsys, "predict", photos["bright"], "--scene", "--model", face_run, "--no-progress")
    assert "--scene-model" in err and "--model" in err


# ------------------------------------------------------------------------------------------------ emotune serve
@pytest.fixture(scope="module")
def serve_client(scene_run):
    pytest.importorskip("fastapi", reason="emotune serve needs the serve extra")
    from fastapi.testclient import TestClient

    from emotune.serve import ServeConfig, create_app

    config = ServeConfig(scene_model=str(scene_run), device="cpu")
    with TestClient(create_app(config)) as c:
        yield c


def test_serve_scene_fields(serve_client, photos):
    jpg = photos["grace"].read_bytes()
    body = serve_client.post("/v1/analyze", files={"file": ("g.jpg", jpg, "image/jpeg")}).json()
    assert len(body["faces"]) == 1 and "targets" not in body["faces"][0]
    s = body["scene_emotion"]
    assert s["label"] in ("positive", "negative") and set(s["probs"]) == {"positive", "negative"}
    assert set(s["targets"]) == {"valence", "arousal"} and all(-1 <= v <= 1 for v in s["targets"].values())
    assert abs(sum(s["probs"].values()) - 1) < 1e-3 and body["scene"] is False
    scene = serve_client.post("/v1/analyze", json={"image": base64.b64encode(jpg).decode(), "scene": True}).json()
    assert scene["scene"] is True and scene["faces"] == [] and scene["scene_emotion"]["probs"] == s["probs"]
    models = serve_client.get("/v1/models").json()
    assert models["scene_model"]["labels"] == ["positive", "negative"] and models["scene_model"]["targets"] == ["valence", "arousal"]


def test_serve_scene_model_as_the_model_and_face_server_refuses(scene_run, face_run, photos):
    pytest.importorskip("fastapi", reason="emotune serve needs the serve extra")
    from fastapi.testclient import TestClient

    from emotune.serve import ServeConfig, create_app

    buf = io.BytesIO()
    Image.open(photos["bright"]).save(buf, format="PNG")
    with TestClient(create_app(ServeConfig(model=str(scene_run), device="cpu"))) as c:
        body = c.post("/v1/analyze", content=buf.getvalue(), headers={"content-type": "image/png"}).json()
    assert body["scene"] is True and body["faces"] == [] and set(body["scene_emotion"]["targets"]) == {"valence", "arousal"}
    with TestClient(create_app(ServeConfig(model=str(face_run), device="cpu"))) as c:
        r = c.post("/v1/analyze", content=buf.getvalue(), headers={"content-type": "image/png"}, params={})
        assert r.status_code == 200 and "scene_emotion" not in r.json()
        r = c.post("/v1/analyze", json={"image": base64.b64encode(buf.getvalue()).decode(), "scene": True})
        assert r.status_code == 400 and "scene model" in r.json()["error"] and "--scene-model" in r.json()["error"]
