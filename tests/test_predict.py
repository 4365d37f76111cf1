"""Prediction: the Recognizer API (images, folders, videos), backends and ONNX export, video decoding and
sampling, tracking, outputs, and `emotune predict|export|detectors` in-process.

Models are tiny random-init timm networks (32 px) written as checkpoints with model cards in a module fixture; the
bundled default model is used by one test only, skipped when this build has none. ONNX exports go to a temporary
EMOTUNE_CACHE. Real faces come from ../shared (those tests skip with a reason when it is absent); the bad files
(corrupt, truncated, CMYK, EXIF-rotated, 16-bit, RGBA, animated, 1x1, decompression bomb, odd names) and broken
videos are made here. Videos are sampled (every 6th/8th frame) so the file runs in well under a minute.
"""
from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from emotune import cli
from emotune.errors import BadInputError, CheckpointError, ConfigError
from emotune.faces import Face
from emotune.inference import Recognizer, collect_inputs, load_backend
from emotune.inference.backend import OnnxBackend, TorchBackend, cache_dir
from emotune.inference.output import TableSink, annotate, plot_timeline, records, render, table_text
from emotune.inference.recognizer import BASE_COLUMNS, FaceResult, _Item, default_model_path
from emotune.inference.tracking import IoUTracker, iou_matrix
from emotune.inference.video import VideoInfo, VideoWriter, frame_step, iter_frames, open_video
from emotune.models import ModelCard, create_model, save_checkpoint
from emotune.taxonomy import BASIC7

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
IMAGES = SHARED / "images"
VIDEOS = SHARED / "videos"
LABELS = list(BASIC7)
COLUMNS = BASE_COLUMNS + LABELS + ["label", "landmarks", "error"]
SIZE = 32

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"needs shared data at {path} (absent on this machine)")
    return path


# --------------------------------------------------------------------------------------------- fixtures





def _tiny_checkpoint(folder: Path, in_chans: int, seed: int) -> Path:
    torch.manual_seed(seed)
    model = create_model("test_efficientnet", num_classes=len(LABELS), pretrained=None, img_size=SIZE, in_chans=in_chans)
    with torch.no_grad():  # a sharper head than the random init, so that probabilities differ between faces
        model.get_classifier().weight.mul_(20)
    card = ModelCard(backbone="test_efficientnet", labels=LABELS, input_size=SIZE, mean=[0.5] * in_chans, std=[0.25] * in_chans,
                     channels="grayscale" if in_chans == 1 else "rgb", in_chans=in_chans)
    return save_checkpoint(folder / ("gray" if in_chans == 1 else "rgb"), model.eval(), card)


@pytest.fixture(scope="module")
def gray_card(tmp_path_factory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("models"), 1, 0)


@pytest.fixture(scope="module")
def rgb_card(tmp_path_factory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("models"), 3, 1)


@pytest.fixture(scope="module")
def rec(gray_card, emotune_cache) -> Recognizer:
    """The grayscale model on the default path: onnxruntime on CPU, YuNet."""
    return Recognizer(gray_card, device="cpu", threads=1)


@pytest.fixture(scope="module")
def rec_torch(gray_card) -> Recognizer:
    return Recognizer(gray_card, device="cpu", backend="torch")


@pytest.fixture(scope="module")
def rgb_recs(rgb_card, emotune_cache) -> tuple[Recognizer, Recognizer]:
    return Recognizer(rgb_card, device="cpu", backend="onnx", threads=1), Recognizer(rgb_card, device="cpu", backend="torch")


def _grace_jpeg() -> bytes:
    buf = io.BytesIO()
    with Image.open(shared("images/grace_hopper.jpg")) as im:
        im.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _bomb_png() -> bytes:
    """A valid 1x1 PNG whose header says 20000 x 20000 (a decompression bomb, refused before decoding)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    ihdr = b[12:29]
    ihdr[4:12] = struct.pack(">II", 20000, 20000)
    b[12:29] = ihdr
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(b)


GOOD_IMAGES = {"anim.gif", "cmyk.jpg", "exif_rotated.jpg", "good.jpg", "good.png", "rgba.png", "sixteen.png", "grâce hopper ü.jpg"}
BAD_IMAGES = {"bomb.png": "too large", "corrupt.png": "corrupt", "empty.jpg": "empty", "text.jpg": "not an image",
              "truncated.jpg": "truncated"}


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory) -> Path:
    """Every kind of odd image file a user has; eight of them hold Grace Hopper's face, one is a 1x1 image."""
    jpg = _grace_jpeg()
    d = tmp_path_factory.mktemp("odd")
    (d / "sub dir").mkdir()
    grace = Image.open(io.BytesIO(jpg))
    grace.load()
    (d / "good.jpg").write_bytes(jpg)
    (d / "sub dir" / "grâce hopper ü.jpg").write_bytes(jpg)  # spaces and non-ASCII in the path
    grace.save(d / "sub dir" / "good.png")  # same stem as good.jpg: annotated names must not collide
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("hello, I am not a JPEG\n")
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    png = io.BytesIO()
    grace.save(png, "PNG")
    png = bytearray(png.getvalue())
    png[len(png) // 2: len(png) // 2 + 200] = bytes(200)
    (d / "corrupt.png").write_bytes(bytes(png))
    rocket = Image.open(shared("images/rocket.jpg")).convert("RGB").resize(grace.size)
    grace.save(d / "anim.gif", save_all=True, append_images=[rocket], duration=100, loop=0)  # the first frame is used
    grace.convert("CMYK").save(d / "cmyk.jpg", "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    grace.rotate(90, expand=True).save(d / "exif_rotated.jpg", "JPEG", exif=exif.tobytes())
    Image.fromarray(np.asarray(grace.convert("L")).astype(np.uint16) * 257).save(d / "sixteen.png")
    rgba = grace.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(d / "rgba.png")
    Image.new("RGB", (1, 1), (200, 100, 50)).save(d / "one.png")
    (d / "bomb.png").write_bytes(_bomb_png())
    (d / ".hidden.jpg").write_bytes(jpg)  # hidden files are not collected from folders
    (d / "notes.txt").write_text("not collected: unknown extension in a folder")
    assert Image.open(d / "sixteen.png").mode.startswith("I")
    return d


@pytest.fixture(scope="module")
def odd_df(rec, odd_folder) -> pd.DataFrame:
    return rec.predict_folder(odd_folder)


def _write_video(path: Path, n: int = 30, fourcc: str = "mp4v", size=(160, 188), fps: float = 10.0) -> Path:
    """A short video of Grace Hopper's face sliding sideways."""
    with Image.open(shared("images/grace_hopper.jpg")) as im:
        face = np.asarray(im.convert("RGB").resize(size))
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert w.isOpened()
    for i in range(n):
        w.write(cv2.cvtColor(np.roll(face, i, axis=1), cv2.COLOR_RGB2BGR))
    w.release()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """A good synthetic clip with an odd name, one with garbage in its middle, and truncated ones."""
    d = tmp_path_factory.mktemp("videos")
    good = _write_video(d / "clip ü.mp4")
    data = good.read_bytes()
    rng = np.random.default_rng(1)
    third = len(data) // 3
    out = {"good": good, "corrupt": d / "corrupt.mp4", "truncated": d / "truncated.mp4", "truncated_avi": d / "truncated.avi",
           "text": d / "text.mp4", "empty": d / "empty.mp4"}
    out["corrupt"].write_bytes(data[:third] + rng.integers(0, 256, third, dtype=np.uint8).tobytes() + data[2 * third:])
    out["truncated"].write_bytes(data[: len(data) // 2])  # mp4 from OpenCV: the index is at the end, so it cannot open
    avi = _write_video(d / "full.avi", fourcc="MJPG").read_bytes()
    out["truncated_avi"].write_bytes(avi[: len(avi) // 2])  # opens, then stops half way
    out["text"].write_text("not a video")
    out["empty"].write_bytes(b"")
    return out


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


# --------------------------------------------------------------------------------------------- backends and models


def test_auto_backend_on_cpu_is_onnx_cached_in_emotune_cache(rec, gray_card, emotune_cache):
    assert isinstance(rec.backend, OnnxBackend)
    assert cache_dir() == emotune_cache
    files = sorted((emotune_cache / "onnx").glob("test_efficientnet-*.onnx"))
    assert files and all(f.with_suffix(".json").is_file() for f in files)
    before = {f: f.stat().st_mtime_ns for f in files}
    again = Recognizer(gray_card, device="cpu")  # the second load reuses the export
    assert isinstance(again.backend, OnnxBackend)
    assert {f: f.stat().st_mtime_ns for f in (emotune_cache / "onnx").glob("test_efficientnet-*.onnx")} == before
    assert rec.labels == LABELS and rec.card.in_chans == 1
    assert isinstance(Recognizer(gray_card, device="cpu", backend="torch").backend, TorchBackend)


def test_auto_backend_falls_back_to_torch_when_the_onnx_export_fails(gray_card, monkeypatch):
    import emotune.inference.backend as backend_mod

    def unsupported(model, card):
        raise RuntimeError("Exporting the operator 'aten::foo' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(backend_mod, "cached_onnx", unsupported)
    assert isinstance(Recognizer(gray_card, device="cpu").backend, TorchBackend)


def test_bad_recognizer_settings_are_config_errors(gray_card, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="batch_size"):
        Recognizer(gray_card, batch_size=0)
    with pytest.raises(ConfigError, match="margin"):
        Recognizer(gray_card, margin=5.0)
    with pytest.raises(ConfigError, match="backend"):
        load_backend(gray_card, backend="tensorrt")
    with pytest.raises(ConfigError, match="unknown detector"):
        Recognizer(gray_card, detector="nope", device="cpu", backend="torch")
    with pytest.raises(CheckpointError, match="not found"):
        Recognizer(tmp_path / "nothing.json")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            Recognizer(gray_card, device="cuda")
    import emotune.models.bundled as bundled_mod

    monkeypatch.setattr(bundled_mod, "bundled_dir", lambda: tmp_path / "weights")  # a slim build without weights
    with pytest.raises(CheckpointError, match="no bundled default model"):
        load_backend(None)


def test_preprocess_matches_the_training_transform(rec, rgb_recs):
    """Grey: ITU-R 601 luma as PIL's "L", then the card's mean/std; RGB: channels in RGB order."""
    from emotune.data.transforms import eval_transform

    crops = [np.random.default_rng(i).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for i in range(3)]
    x = rec.preprocess(crops)
    assert x.shape == (3, 1, SIZE, SIZE) and x.dtype == np.float32 and x.flags.c_contiguous
    tf = eval_transform(SIZE, rec.card.mean, rec.card.std)
    want = np.stack([tf(Image.fromarray(c).convert("L")).numpy() for c in crops])
    np.testing.assert_allclose(x, want, atol=1.01 / 255 / rec.card.std[0])  # PIL rounds luma to integers

    rgb = rgb_recs[0]
    x = rgb.preprocess(crops)
    assert x.shape == (3, 3, SIZE, SIZE)
    tf = eval_transform(SIZE, rgb.card.mean, rgb.card.std)
    np.testing.assert_allclose(x, np.stack([tf(Image.fromarray(c)).numpy() for c in crops]), atol=1e-5)
    red = np.zeros((SIZE, SIZE, 3), np.uint8)
    red[..., 0] = 255
    x = rgb.preprocess([red])[0]
    assert x[0].min() == pytest.approx(2.0) and x[1].max() == pytest.approx(-2.0)  # (1-0.5)/0.25 and (0-0.5)/0.25


def test_classify_returns_probabilities_in_any_batching(rec):
    crops = [np.random.default_rng(i).integers(0, 256, (40 + i, 40 + i, 3), dtype=np.uint8) for i in range(5)]
    p = rec.classify(crops)  # sizes other than the model's are resized
    assert p.shape == (5, len(LABELS)) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert (p >= 0).all()
    assert rec.classify([]).shape == (0, len(LABELS))
    old = rec.batch_size
    try:
        rec.batch_size = 2
        np.testing.assert_allclose(rec.classify(crops), p, atol=1e-6)
    finally:
        rec.batch_size = old


def test_source_size_resamples_the_crop_first(rec):
    """A card with source_size (FER2013: 48 px) makes photos as blurry as the training faces: the crop comes at that
    size and preprocessing takes it to the input size, which is unchanged."""
    rgb = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    face = Face((20.0, 20.0, 160.0, 160.0), 1.0)
    old = rec.card.source_size
    try:
        rec.card.source_size = 0
        sharp_crop = rec.crop(rgb, face)
        sharp = rec.preprocess([sharp_crop])[0, 0]
        rec.card.source_size = 8
        soft_crop = rec.crop(rgb, face)
        soft = rec.preprocess([soft_crop])[0, 0]
    finally:
        rec.card.source_size = old
    assert sharp_crop.shape == (SIZE, SIZE, 3) and soft_crop.shape == (8, 8, 3)
    assert sharp.shape == soft.shape == (SIZE, SIZE)
    energy = lambda a: float(np.abs(np.diff(a.astype(float), axis=1)).mean())  # noqa: E731
    assert energy(soft) < 0.6 * energy(sharp)


@pytest.mark.shared
@pytest.mark.parametrize("which", ["gray", "rgb"])
def test_onnx_and_torch_backends_agree_on_real_faces(which, rec, rec_torch, rgb_recs):
    onnx_rec, torch_rec = (rec, rec_torch) if which == "gray" else rgb_recs
    assert isinstance(onnx_rec.backend, OnnxBackend) and isinstance(torch_rec.backend, TorchBackend)
    img = shared("images/pyfeat/multi_face.jpg")
    a, b = onnx_rec.predict(img), torch_rec.predict(img)
    assert len(a) == len(b) == 5
    pa = np.array([[f.probs[c] for c in LABELS] for f in a])
    pb = np.array([[f.probs[c] for c in LABELS] for f in b])
    assert np.abs(pa - pb).max() < 1e-4
    assert pa.std(0).max() > 1e-3  # the faces do get different probabilities: the comparison means something
    assert [f.label for f in a] == [f.label for f in b]


def test_cli_export_writes_onnx_with_card_and_parity(gray_card, rgb_card, tmp_path, capsys):
    for card in (gray_card, rgb_card):
        out = tmp_path / f"{card.stem}.onnx"
        rc, stdout, _ = run_cli(capsys, "export", "--model", card, "--format", "onnx", "--output", out, "--check-samples", 4)
        assert rc == 0
        assert out.is_file() and out.with_suffix(".json").is_file()
        diff = float(stdout.split("max |p_onnx - p_torch| = ")[1].split()[0])
        assert diff < 1e-4
        exported = json.loads(out.with_suffix(".json").read_text())
        assert exported["labels"] == LABELS and exported["weights_file"] == out.name
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert json.loads(meta["emotune_card"])["in_chans"] == (1 if card.stem == "gray" else 3)
    # wrong suffix, missing model: usage errors, exit 2
    assert run_cli(capsys, "export", "--model", gray_card, "--output", tmp_path / "x.pt")[0] == 2
    assert run_cli(capsys, "export", "--model", tmp_path / "missing.json", "--output", tmp_path / "y.onnx")[0] == 2
    # an ONNX file whose card would replace a checkpoint's card (its own, or another one's): refused, card intact
    for victim in (gray_card, rgb_card):
        before = victim.read_bytes()
        rc, _, err = run_cli(capsys, "export", "--model", gray_card, "--output", victim.with_suffix(".onnx"))
        assert rc == 2 and f"would replace the card of {victim.stem}.safetensors" in err and victim.read_bytes() == before
    # exporting again over an earlier export is fine: that card describes the ONNX file itself
    out = tmp_path / "gray.onnx"
    assert run_cli(capsys, "export", "--model", gray_card, "--output", out, "--check-samples", 2)[0] == 0


@pytest.mark.shared
def test_an_exported_onnx_file_is_a_model(gray_card, rec_torch, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert run_cli(capsys, "export", "--model", gray_card, "--output", out, "--check-samples", 2)[0] == 0
    from_file = Recognizer(out, device="cpu")
    assert isinstance(from_file.backend, OnnxBackend) and from_file.labels == LABELS
    img = shared("images/grace_hopper.jpg")
    (a,), (b,) = from_file.predict(img), rec_torch.predict(img)
    assert max(abs(a.probs[c] - b.probs[c]) for c in LABELS) < 1e-4
    with pytest.raises(ConfigError, match="onnx backend only"):
        Recognizer(out, backend="torch")
    out.write_bytes(out.read_bytes() + b"\0")  # tampered: the card's sha256 no longer matches
    with pytest.raises(CheckpointError, match="sha256"):
        Recognizer(out)


# --------------------------------------------------------------------------------------------- single images


def _check_result(f: FaceResult, w: int, h: int):
    assert list(f.probs) == LABELS
    assert math.isclose(sum(f.probs.values()), 1.0, abs_tol=1e-4)
    assert f.label == max(f.probs, key=f.probs.get)
    x, y, bw, bh = f.box
    assert 0 <= x and 0 <= y and bw > 0 and bh > 0 and x + bw <= w + 1e-3 and y + bh <= h + 1e-3
    assert 0.6 <= f.score <= 1.0
    assert len(f.landmarks) == 5 and all(len(p) == 2 for p in f.landmarks)
    assert all(x <= px <= x + bw and y <= py <= y + bh for px, py in f.landmarks)


@pytest.mark.shared
def test_predict_one_face_from_path_pil_and_array(rec):
    path = shared("images/grace_hopper.jpg")
    (f,) = rec.predict(path)
    _check_result(f, 512, 600)
    assert f.frame is None and f.time is None and f.track is None
    with Image.open(path) as im:
        pil = im.convert("RGB")
    (g,) = rec.predict(pil)
    (a,) = rec.predict(np.asarray(pil))
    (grey,) = rec.predict(np.asarray(pil.convert("L")))  # HxW arrays work too
    for other in (g, a):
        assert other.box == f.box and other.probs == f.probs
    assert abs(grey.box[0] - f.box[0]) < 10
    d = f.to_dict()
    assert json.loads(json.dumps(d))["label"] == f.label and len(d["landmarks"]) == 5


@pytest.mark.shared
def test_predict_finds_five_people_and_no_face_in_a_rocket(rec):
    faces = rec.predict(shared("images/pyfeat/multi_face.jpg"))
    assert len(faces) == 5
    assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)
    with Image.open(shared("images/pyfeat/multi_face.jpg")) as im:
        w, h = im.size
    for f in faces:
        _check_result(f, w, h)
    assert rec.predict(shared("images/rocket.jpg")) == []


def test_predict_on_bad_input_raises_a_clear_error(rec, tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        rec.predict(tmp_path / "missing.jpg")
    with pytest.raises(BadInputError, match="not an image"):
        rec.predict(123)
    with pytest.raises(BadInputError, match="shape"):
        rec.predict(np.zeros((4, 4, 7), np.uint8))
    assert rec.predict(np.zeros((1, 1, 3), np.uint8)) == []


@pytest.mark.shared
def test_scene_mode_and_haar_detector(gray_card):
    scene = Recognizer(gray_card, device="cpu", backend="torch", detector="none")  # scene=True refuses face models
    with Image.open(shared("images/rocket.jpg")) as im:
        w, h = im.size
    (f,) = scene.predict(shared("images/rocket.jpg"))
    assert f.box == (0.0, 0.0, float(w), float(h)) and f.landmarks is None
    assert math.isclose(sum(f.probs.values()), 1, abs_tol=1e-4)
    haar = Recognizer(gray_card, device="cpu", backend="torch", detector="haar", min_score=0.0)
    (f,) = haar.predict(shared("images/grace_hopper.jpg"))
    assert f.landmarks is None
    (row,) = haar.rows(_Item("x", faces=[Face(f.box, f.score)], probs=np.array([list(f.probs.values())])))
    assert row["landmarks"] is None and row["label"] == f.label


@pytest.mark.shared
def test_bundled_default_model_predicts(emotune_cache):
    if not default_model_path().is_file():
        pytest.skip(f"this build has no bundled default model ({default_model_path()} absent)")
    rec = Recognizer(device="cpu", threads=1)
    (f,) = rec.predict(shared("images/grace_hopper.jpg"))
    _check_result(f, 512, 600)
    assert rec.labels == list(rec.card.labels) and len(rec.labels) >= 7


@pytest.mark.shared
def test_bundled_default_model_onnx_matches_torch(emotune_cache):
    """Parity on the model users get: the shipped network, grey, at its own input size, on real faces."""
    if not default_model_path().is_file():
        pytest.skip(f"this build has no bundled default model ({default_model_path()} absent)")
    onnx_rec = Recognizer(device="cpu", threads=1, precision="fp32")
    torch_rec = Recognizer(device="cpu", threads=1, backend="torch")
    assert isinstance(onnx_rec.backend, OnnxBackend) and isinstance(torch_rec.backend, TorchBackend)
    img = shared("images/pyfeat/multi_face.jpg")
    a, b = onnx_rec.predict(img), torch_rec.predict(img)
    assert len(a) == len(b) >= 4
    labels = onnx_rec.labels
    pa = np.array([[f.probs[c] for c in labels] for f in a])
    pb = np.array([[f.probs[c] for c in labels] for f in b])
    assert np.abs(pa - pb).max() < 1e-4
    assert pa.std(0).max() > 1e-3  # the faces do get different probabilities: the comparison means something
    # the int8 companion that CPU runs by default: the same faces, the same labels, probabilities close to fp32
    q = Recognizer(device="cpu", threads=1).predict(img)
    assert [f.label for f in q] == [f.label for f in a]
    assert np.abs(np.array([[f.probs[c] for c in labels] for f in q]) - pa).max() < 0.05


# --------------------------------------------------------------------------------------------- folders and bad files


@pytest.mark.shared
def test_predict_folder_gives_a_row_per_file_and_never_raises(odd_df, odd_folder):
    df = odd_df
    assert list(df.columns) == COLUMNS
    names = [Path(f).name for f in df["file"]]
    assert sorted(set(names)) == sorted(GOOD_IMAGES | set(BAD_IMAGES) | {"one.png"})  # no .hidden.jpg, no notes.txt
    assert len(df) == len(names) == len(set(names))  # one face each, or one empty row
    by = {Path(r["file"]).name: r for r in records(df)}
    for name, problem in BAD_IMAGES.items():
        r = by[name]
        assert r["error"] and problem in r["error"].lower(), (name, r["error"])
        assert r["label"] is None and r["x"] is None and all(r[c] is None for c in LABELS)
    for name in GOOD_IMAGES:
        r = by[name]
        assert r["error"] is None and r["label"] in LABELS, name
        assert math.isclose(sum(r[c] for c in LABELS), 1, abs_tol=1e-3)
        assert len(r["landmarks"]) == 5
    assert by["one.png"]["error"] is None and by["one.png"]["label"] is None  # a 1x1 image: no face, not an error
    # every decodable variant is the same photo upright: the same face box (EXIF rotation applied, CMYK converted...)
    ref = np.array([by["good.jpg"][k] for k in "xywh"])
    for name in GOOD_IMAGES:
        assert np.abs(np.array([by[name][k] for k in "xywh"]) - ref).max() < 8, name
    assert df["frame"].isna().all() and df["track"].isna().all()
    assert str(df["frame"].dtype) == "Int64" and str(df["track"].dtype) == "Int64"


# --------------------------------------------------------------------------------------------- collecting inputs


def test_collect_inputs_folders_globs_and_missing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("a/1.jpg", "a/2.PNG", "a/b/3.jpeg", "a/b/clip.MP4", "a/.hidden.jpg", "a/notes.txt", "x.mov", "y.dat"):
        (tmp_path / p).write_bytes(b"x")
    a = tmp_path / "a"
    got = collect_inputs([a])
    assert got.images == [a / "1.jpg", a / "2.PNG", a / "b" / "3.jpeg"] and got.videos == [a / "b" / "clip.MP4"]
    assert got.missing == []
    flat = collect_inputs([a], recursive=False)
    assert flat.images == [a / "1.jpg", a / "2.PNG"] and flat.videos == []
    globbed = collect_inputs([str(tmp_path / "a" / "**" / "*.jp*g"), str(tmp_path / "*.mov"), str(tmp_path / "nothing*.png")])
    assert globbed.images == [a / "1.jpg", a / "b" / "3.jpeg"] and globbed.videos == [tmp_path / "x.mov"]
    assert len(globbed.missing) == 1 and "no file matches" in globbed.missing[0]
    # explicit files whatever their extension (a bad one gets an error row later); duplicates once; missing reported
    mixed = collect_inputs([tmp_path / "y.dat", a / "1.jpg", a, tmp_path / "gone.jpg"])
    assert mixed.images[:2] == [tmp_path / "y.dat", a / "1.jpg"] and mixed.images.count(a / "1.jpg") == 1
    assert mixed.missing == [f"{tmp_path / 'gone.jpg'}: file not found"]


# --------------------------------------------------------------------------------------------- video: decoding, sampling


def test_frame_step():
    assert frame_step(30, 1) == 1 and frame_step(30, 5) == 5 and frame_step(30, 0) == 1
    assert frame_step(30, 7, 10) == 3  # fps overrides every
    assert frame_step(29.97, 1, 1) == 30
    assert frame_step(24, 1, 100) == 1  # cannot sample faster than the video
    assert frame_step(25, 1, 2) == 12


class _FakeCap:
    """A VideoCapture stand-in: None entries are frames that fail to decode; reading past the end fails."""

    def __init__(self, frames):
        self.frames, self.pos, self.reads, self.grabs, self.released = frames, 0, 0, 0, False

    def _next(self):
        f = self.frames[self.pos] if self.pos < len(self.frames) else None
        self.pos += 1
        return f

    def read(self):
        self.reads += 1
        f = self._next()
        return (f is not None), (None if f is None else f.copy())

    def grab(self):
        self.grabs += 1
        return self._next() is not None

    def release(self):
        self.released = True


def _bgr(i: int) -> np.ndarray:
    f = np.zeros((4, 4, 3), np.uint8)
    f[..., 0] = i  # blue channel carries the index: RGB output has it in channel 2
    return f


def test_iter_frames_samples_skips_broken_frames_and_reports_truncation():
    frames = [_bgr(i) for i in range(12)]
    cap = _FakeCap(frames)
    info = VideoInfo("fake", 30.0, 12, 4, 4)
    got = list(iter_frames(cap, info, step=3))
    assert [i for i, _ in got] == [0, 3, 6, 9]
    assert [int(f[0, 0, 2]) for _, f in got] == [0, 3, 6, 9]  # BGR -> RGB
    assert cap.reads >= 4 and cap.grabs >= 8 and cap.released  # unsampled frames are only grabbed
    assert info.decoded_frames == 4 and info.broken_frames == 0 and info.problems == []

    broken = [_bgr(i) if i not in (2, 3, 7) else None for i in range(10)]
    info = VideoInfo("fake", 30.0, 10, 4, 4)
    assert [i for i, _ in iter_frames(_FakeCap(broken), info)] == [0, 1, 4, 5, 6, 8, 9]  # indices stay true
    assert info.broken_frames == 3 and info.problems == []

    # the container promised 100 frames, 30 came: reported, however short the video
    info = VideoInfo("fake", 30.0, 100, 4, 4)
    assert len(list(iter_frames(_FakeCap([_bgr(0)] * 30), info, max_failures=5))) == 30
    assert info.problems and "29" in info.problems[0] and "100" in info.problems[0]
    # a container that over-reports its length by a few frames is not a problem
    info = VideoInfo("fake", 30.0, 98, 4, 4)
    assert len(list(iter_frames(_FakeCap([_bgr(0)] * 95), info))) == 95
    assert info.problems == [] and info.broken_frames == 0


def test_open_video_refuses_clearly(videos, tmp_path):
    for key, problem in (("empty", "empty"), ("text", "cannot open"), ("truncated", "cannot open")):
        with pytest.raises(BadInputError, match=problem):
            open_video(videos[key])
    with pytest.raises(BadInputError, match="not found"):
        open_video(tmp_path / "missing.mp4")
    cap, info = open_video(videos["good"])
    cap.release()
    assert (info.width, info.height, info.frames) == (160, 188, 30) and info.fps == pytest.approx(10)


def test_broken_videos_decode_what_they_can(videos):
    cap, info = open_video(videos["corrupt"])
    got = [i for i, _ in iter_frames(cap, info)]
    assert 0 < len(got) < 30 and info.broken_frames > 0 and got == sorted(got)
    cap, info = open_video(videos["truncated_avi"])
    got = [i for i, _ in iter_frames(cap, info)]
    assert 0 < len(got) < 30 and info.problems and "truncated" in info.problems[0]


def test_video_writer_renames_into_place_or_cleans_up(tmp_path):
    w = VideoWriter(tmp_path / "out" / "v.mp4", 10, (64, 48))
    for i in range(5):
        w.write(np.full((48, 64, 3), i * 40, np.uint8))
    assert not (tmp_path / "out" / "v.mp4").exists()
    w.close()
    cap = cv2.VideoCapture(str(tmp_path / "out" / "v.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()
    w = VideoWriter(tmp_path / "out" / "bad.mp4", 10, (64, 48))
    w.write(np.zeros((48, 64, 3), np.uint8))
    w.close(ok=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["v.mp4"]


# --------------------------------------------------------------------------------------------- tracking


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [50, 50, 1, 1]], float)
    m = iou_matrix(a, b)
    np.testing.assert_allclose(m, [[1, 1 / 3, 0], [0, 0, 0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)


def test_tracker_keeps_ids_through_motion_order_and_short_gaps():
    t = IoUTracker(iou_threshold=0.3, max_age=2)
    A, B = (0.0, 0.0, 50.0, 50.0), (200.0, 0.0, 50.0, 50.0)
    assert t.update([A, B]) == [0, 1]
    moved = lambda b, dx: (b[0] + dx, b[1], b[2], b[3])  # noqa: E731
    assert t.update([moved(B, 5), moved(A, 5)]) == [1, 0]  # matched by overlap, not by list order
    assert t.update([moved(A, 10)]) == [0]  # B missed once
    assert t.update([]) == []  # both missed
    assert t.update([moved(A, 12), moved(B, 5)]) == [0, 1]  # B back after 2 misses (= max_age): same id
    assert t.update([(400.0, 400.0, 50.0, 50.0)]) == [2]  # a new face gets a new id
    for _ in range(3):
        t.update([])
    assert t.update([moved(A, 12)]) == [3]  # A gone for 3 > max_age frames: a new id
    assert t.update([]) == []


def test_tracker_gives_two_overlapping_boxes_two_ids():
    t = IoUTracker()
    assert t.update([(0.0, 0.0, 50.0, 50.0), (10.0, 0.0, 50.0, 50.0)]) == [0, 1]
    assert t.update([(11.0, 0.0, 50.0, 50.0), (1.0, 0.0, 50.0, 50.0)]) == [1, 0]


# --------------------------------------------------------------------------------------------- real videos


@pytest.fixture(scope="module")
def single_face_df(rec) -> tuple[pd.DataFrame, list]:
    info: list = []
    df = rec.frame_of([r for item in rec.iter_video(shared("videos/single_face.mp4"), fps=5, info_out=info)
                       for r in rec.rows(item)])
    return df, info


@pytest.mark.shared
def test_predict_video_single_face_rows_times_and_stable_track(single_face_df):
    df, (info,) = single_face_df
    assert list(df.columns) == COLUMNS
    assert info.fps == pytest.approx(30) and info.problems == [] and info.broken_frames == 0
    assert df["frame"].tolist() == list(range(0, 72, 6))  # fps=5 on a 30 fps video: every 6th frame
    np.testing.assert_allclose(df["time"], df["frame"].astype(float) / 30, atol=1e-4)
    assert df["label"].notna().all() and df["error"].isna().all()
    assert df["track"].nunique() == 1  # one face, one id throughout
    np.testing.assert_allclose(df[LABELS].sum(1), 1, atol=1e-3)
    assert ((df["x"] >= 0) & (df["y"] >= 0) & (df["x"] + df["w"] <= 640.5) & (df["y"] + df["h"] <= 360.5)).all()


@pytest.mark.shared
def test_predict_video_with_face_lost_and_found(rec):
    df = rec.predict_video(shared("videos/face_noface.mov"), every=8)
    assert df["frame"].tolist() == list(range(0, 169, 8))
    has_face = df["label"].notna()
    assert 0.2 < has_face.mean() < 0.7  # a face in ~44% of the frames
    assert df["error"].isna().all()  # face-less frames are empty rows, not errors
    empty = df[~has_face]
    assert empty[["x", "y", "w", "h", "score", "track"] + LABELS].isna().all().all()
    assert df.loc[has_face, "track"].notna().all()


@pytest.mark.shared
def test_predict_video_without_faces(rec):
    df = rec.predict_video(shared("videos/no_face.mp4"), every=12)
    assert len(df) == 8 and df["label"].isna().all() and df["error"].isna().all()


def test_predict_video_on_broken_files(rec, videos):
    df = rec.predict_video(videos["corrupt"])  # garbage in the middle: the readable frames, no exception
    assert 0 < len(df) < 30 and df["frame"].is_monotonic_increasing
    with pytest.raises(BadInputError, match="cannot open"):
        rec.predict_video(videos["truncated"])


def test_predict_folder_takes_videos_too_and_reports_broken_ones(rec, videos, tmp_path):
    import shutil

    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copy(shared("images/grace_hopper.jpg"), d / "photo.jpg")
    shutil.copy(videos["good"], d / "clip.mp4")
    shutil.copy(videos["truncated"], d / "broken.mp4")
    (d / "empty.avi").write_bytes(b"")
    df = rec.predict_folder(d, every=10)
    by_file = {Path(f).name: g for f, g in df.groupby("file")}
    assert set(by_file) == {"photo.jpg", "clip.mp4", "broken.mp4", "empty.avi"}
    assert len(by_file["empty.avi"]) == 1 and by_file["empty.avi"]["error"].iloc[0]
    assert by_file["photo.jpg"]["frame"].isna().all() and by_file["photo.jpg"]["label"].notna().all()
    clip = by_file["clip.mp4"]
    assert list(clip["frame"]) == [0, 10, 20] and clip["time"].notna().all() and clip["track"].notna().all()
    assert len(by_file["broken.mp4"]) == 1 and "cannot open" in by_file["broken.mp4"]["error"].iloc[0]
    assert list(rec.predict_folder(d, videos=False)["file"].map(lambda f: Path(f).name)) == ["photo.jpg"]


@pytest.mark.shared
@pytest.mark.parametrize("ext,fourcc", [(".mkv", "MJPG"), (".webm", "VP80"), (".mov", "mp4v"), (".avi", "MJPG")])
def test_every_advertised_container_is_read(rec, tmp_path, ext, fourcc):
    clip = _write_video(tmp_path / f"clip{ext}", n=6, fourcc=fourcc)
    assert collect_inputs([tmp_path]).videos == [clip]
    df = rec.predict_video(clip)
    assert df["frame"].tolist() == list(range(6)) and df["label"].notna().all() and df["track"].nunique() == 1


@pytest.mark.shared
def test_cli_webcam_runs_until_the_stream_ends_or_ctrl_c(gray_card, videos, tmp_path, capsys, monkeypatch):
    """--webcam INDEX: OpenCV's capture of a camera, here replaced by a clip; Ctrl-C ends the session and keeps the rows."""
    real = cv2.VideoCapture

    class Camera:
        def __init__(self, source, stop_after: int = 0):
            assert source == 0
            self.cap, self.reads, self.stop_after = real(str(videos["good"])), 0, stop_after

        def _tick(self):
            self.reads += 1
            if self.stop_after and self.reads > self.stop_after:
                raise KeyboardInterrupt

        def read(self):
            self._tick()
            return self.cap.read()

        def grab(self):
            self._tick()
            return self.cap.grab()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", Camera)
    out = tmp_path / "cam.jsonl"
    rc, _, _ = run_cli(capsys, "predict", "--webcam", "0", "--model", gray_card, "--every", "5", "-o", out, "--no-progress")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rc == 0 and [r["frame"] for r in rows] == [0, 5, 10, 15, 20, 25] and rows[0]["file"] == "webcam 0"
    monkeypatch.setattr(cv2, "VideoCapture", lambda source: Camera(source, stop_after=12))
    rc, _, _ = run_cli(capsys, "predict", "--webcam", "0", "--model", gray_card, "--every", "5", "-o", out, "--no-progress")
    assert rc == 0 and [json.loads(line)["frame"] for line in out.read_text().splitlines()] == [0, 5, 10]


def test_batched_streams_frames_without_faces(rec):
    consumed = 0

    def items():
        nonlocal consumed
        for i in range(500):
            consumed += 1
            yield _Item("v", rgb=np.zeros((8, 8, 3), np.uint8), frame=i)

    next(rec._batched(items()))
    assert consumed <= rec.batch_size


# --------------------------------------------------------------------------------------------- outputs


def _toy_rows(rec) -> list[dict]:
    probs = np.full((1, 7), 0.01, np.float32)
    probs[0, 3] = 0.94
    face = Face((10.0, 12.0, 30.0, 40.0), 0.9, np.arange(10, dtype=np.float32).reshape(5, 2) + 15)
    item = _Item("dir/a.jpg", faces=[face], probs=probs, frame=3, time=0.1, tracks=[7])
    return rec.rows(item) + rec.rows(_Item("b.jpg", frame=4, time=0.2)) + rec.rows(_Item("c.jpg", error="empty file (0 bytes)"))


def _toy_df(rec) -> pd.DataFrame:
    return rec.frame_of(_toy_rows(rec))


def test_render_csv_json_jsonl_and_table(rec):
    df = _toy_df(rec)
    csv = render(df, "csv", LABELS)
    assert csv.splitlines()[0].split(",") == COLUMNS
    back = pd.read_csv(io.StringIO(csv))
    assert back["label"].tolist()[0] == "happy" and back["track"].tolist()[0] == 7
    recs = json.loads(render(df, "json", LABELS))
    assert recs == [json.loads(line) for line in render(df, "jsonl", LABELS).splitlines()]
    a, b, c = recs
    assert a["frame"] == 3 and a["track"] == 7 and a["label"] == "happy" and a["happy"] == pytest.approx(0.94)
    assert a["landmarks"] == [[15.0, 16.0], [17.0, 18.0], [19.0, 20.0], [21.0, 22.0], [23.0, 24.0]]
    assert b["label"] is None and b["error"] is None and b["x"] is None and b["frame"] == 4
    assert c["error"] == "empty file (0 bytes)" and c["frame"] is None
    text = table_text(df, LABELS)
    lines = text.splitlines()
    assert len(lines) == 4 and "track" in lines[0]
    assert "happy" in lines[1] and "10,12,30,40" in lines[1]
    assert "no face found" in lines[2] and "error: empty file" in lines[3]


def test_table_sink_streams_what_render_writes_and_appears_whole(rec, tmp_path):
    rows, df = _toy_rows(rec), _toy_df(rec)
    for fmt in ("csv", "json", "jsonl"):
        path = tmp_path / f"r.{fmt}"
        sink = TableSink(rec.frame_of, LABELS, fmt, path, video=True)
        for r in rows:
            sink.add([r])
        (tmp,) = tmp_path.glob(f".r.{fmt}.*.tmp")
        assert not path.exists()  # written as it comes, under a temp name
        sink.close()
        assert path.read_text() == render(df, fmt, LABELS) and not tmp.exists()
        assert (sink.rows, sink.faces) == (3, 1)
    out = io.StringIO()
    sink = TableSink(rec.frame_of, LABELS, "table", stream=out, video=True)
    sink.add(rows[:1])
    assert "track" in out.getvalue() and "happy" in out.getvalue()  # a terminal sees the first face at once
    sink.add(rows[1:])
    sink.close()
    assert out.getvalue() == table_text(df, LABELS)
    sink = TableSink(rec.frame_of, LABELS, "csv", tmp_path / "x.csv")
    sink.add(rows)
    sink.abort()  # interrupted: no result file, no temp file
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.glob(".x.csv*"))
    empty = TableSink(rec.frame_of, LABELS, "json", tmp_path / "e.json")
    empty.close()
    assert json.loads((tmp_path / "e.json").read_text()) == []


def test_table_sink_failed_commit_and_sigterm_leave_nothing_behind(rec, tmp_path):
    import os
    import signal

    from emotune.predict import _sigterm_as_exit

    (tmp_path / "out.csv").mkdir()  # --output names a folder: the final rename fails
    sink = TableSink(rec.frame_of, LABELS, "csv", tmp_path / "out.csv")
    sink.add(_toy_rows(rec))
    with pytest.raises(OSError):
        sink.close()
    sink.abort()
    assert not list(tmp_path.glob(".out.csv*"))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info, _sigterm_as_exit():
        os.kill(os.getpid(), signal.SIGTERM)  # `timeout` or `docker stop`: clean-up code runs, as on Ctrl-C
    assert info.value.code == 128 + signal.SIGTERM and signal.getsignal(signal.SIGTERM) is before


def test_table_sink_memory_stays_flat(rec, tmp_path):
    """A long video or webcam session: memory must not grow with the number of frames written."""
    import gc
    import tracemalloc

    rows = _toy_rows(rec)[:1]
    sink = TableSink(rec.frame_of, LABELS, "csv", tmp_path / "long.csv", video=True)
    tracemalloc.start()
    try:
        for _ in range(200):
            sink.add(rows)
        gc.collect()  # pandas leaves reference cycles: count what is still reachable
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            sink.add(rows)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    sink.close()
    assert sink.rows == 2200 and len((tmp_path / "long.csv").read_text().splitlines()) == 2201
    assert grown < 100_000, f"memory grew by {grown} bytes over 2000 frames"  # keeping the rows takes about 1 MB


def test_annotate_draws_on_a_copy():
    rgb = np.full((120, 160, 3), 128, np.uint8)
    f = FaceResult((40.0, 30.0, 50.0, 60.0), 0.9, {c: (0.94 if c == "happy" else 0.01) for c in LABELS}, "happy",
                   [[55.0, 50.0], [75.0, 50.0], [65.0, 60.0], [57.0, 75.0], [73.0, 75.0]], track=2)
    out = annotate(rgb, [f], LABELS)
    assert out.shape == rgb.shape and (rgb == 128).all()  # the input is untouched
    assert (out[30, 40:90] != 128).any(axis=-1).all()  # the top edge of the box is drawn
    assert (out[50, 55] != 128).any()  # a landmark
    assert (annotate(rgb, [], LABELS) == rgb).all()


def test_timeline_png(rec, tmp_path):
    df = _toy_df(rec)
    assert plot_timeline(df[df["label"].isna()], LABELS, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    path = plot_timeline(df, LABELS, tmp_path / "t.png", "title")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 500


# --------------------------------------------------------------------------------------------- CLI


@pytest.mark.shared
def test_cli_predict_images_and_video_to_csv_with_annotations(gray_card, odd_folder, tmp_path, capsys):
    video = shared("videos/single_face.mp4")
    out, ann = tmp_path / "res.csv", tmp_path / "ann dir"
    rc, stdout, stderr = run_cli(capsys, "predict", odd_folder, video, tmp_path / "missing.jpg", "--model", gray_card,
                                 "--every", 6, "--output", out, "--annotate", ann, "--no-progress")
    assert rc == 0, stderr
    assert stdout == ""
    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS
    vid = df[df["file"] == str(video)]
    img = df[df["file"] != str(video)]
    assert vid["frame"].tolist() == list(range(0, 72, 6)) and vid["track"].nunique() == 1 and vid["label"].notna().all()
    assert img["frame"].isna().all() and len(img) == len(GOOD_IMAGES) + len(BAD_IMAGES) + 1
    assert img["error"].notna().sum() == len(BAD_IMAGES)
    for name in BAD_IMAGES:
        assert f"skipped {odd_folder / name}" in stderr
    assert "missing.jpg: file not found" in stderr
    assert f"{len(BAD_IMAGES)} input(s) could not be processed" in stderr
    # annotated images (colliding stems made unique), the annotated video and its timeline
    produced = sorted(p.name for p in ann.iterdir())
    jpgs = [p for p in produced if p.endswith(".jpg")]
    assert "good_emotune.jpg" in produced and "good_emotune_1.jpg" in produced
    assert len(jpgs) == len(GOOD_IMAGES) + 1  # the 1x1 image too (nothing drawn)
    with Image.open(ann / "good_emotune.jpg") as im:
        assert im.size == (512, 600)
    cap = cv2.VideoCapture(str(ann / "single_face_emotune.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (640, 360)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5, abs=0.01)
    cap.release()
    with Image.open(ann / "single_face_timeline.png") as im:
        assert im.format == "PNG"
    assert not [p for p in produced if ".partial" in p]


@pytest.mark.shared
def test_cli_predict_json_jsonl_table_on_stdout(gray_card, capsys):
    grace, rocket = shared("images/grace_hopper.jpg"), shared("images/rocket.jpg")
    rc, stdout, _ = run_cli(capsys, "predict", grace, rocket, "--model", gray_card, "--format", "json", "--no-progress")
    assert rc == 0
    a, b = json.loads(stdout)
    assert set(a) == set(COLUMNS) and a["label"] in LABELS and len(a["landmarks"]) == 5 and a["frame"] is None
    assert b["file"] == str(rocket) and b["label"] is None and b["error"] is None
    rc, stdout, _ = run_cli(capsys, "predict", grace, "--model", gray_card, "--format", "jsonl", "--no-progress")
    (line,) = stdout.splitlines()
    assert json.loads(line)["label"] == a["label"]
    rc, stdout, _ = run_cli(capsys, "predict", grace, rocket, "--model", gray_card, "--no-progress")
    assert rc == 0 and "grace_hopper.jpg" in stdout and a["label"] in stdout and "no face found" in stdout


def test_cli_predict_on_broken_videos(gray_card, videos, tmp_path, capsys):
    out = tmp_path / "v.jsonl"
    rc, _, stderr = run_cli(capsys, "predict", videos["corrupt"], videos["truncated"], videos["truncated_avi"], videos["good"],
                            "--model", gray_card, "--output", out, "--no-progress")
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_file: dict[str, list] = {}
    for r in rows:
        by_file.setdefault(Path(r["file"]).name, []).append(r)
    assert len(by_file["truncated.mp4"]) == 1 and "cannot open" in by_file["truncated.mp4"][0]["error"]
    assert 0 < len(by_file["corrupt.mp4"]) < 30 and all(r["error"] is None for r in by_file["corrupt.mp4"])
    assert len(by_file["clip ü.mp4"]) == 30 and sum(r["label"] is not None for r in by_file["clip ü.mp4"]) >= 20
    assert "unreadable frame(s) skipped" in stderr and "truncated.mp4: cannot open" in stderr
    assert "truncated.avi" in stderr and "truncated or unreadable" in stderr
    assert "1 input(s) could not be processed, 3 could" in stderr
    # a broken video alone: nothing processed, exit 1
    rc, stdout, stderr = run_cli(capsys, "predict", videos["truncated"], videos["empty"], "--model", gray_card, "--no-progress")
    assert rc == 1 and "empty file" in stderr and "error: " in stdout


def test_cli_predict_exit_codes(gray_card, odd_folder, tmp_path, capsys):
    bad = [odd_folder / n for n in BAD_IMAGES]
    rc, stdout, stderr = run_cli(capsys, "predict", *bad, "--model", gray_card, "--format", "csv", "--no-progress")
    assert rc == 1  # nothing could be processed
    df = pd.read_csv(io.StringIO(stdout))
    assert list(df.columns) == COLUMNS and df["error"].notna().all() and len(df) == len(BAD_IMAGES)
    assert f"{len(BAD_IMAGES)} input(s) could not be processed, 0 could" in stderr
    good = odd_folder / "one.png"
    usage = [
        (["predict", "--model", gray_card], "at least one"),
        (["predict", tmp_path / "missing.jpg", "--model", gray_card], "nothing to process"),
        (["predict", good, "--model", gray_card, "--output", tmp_path / "r.txt"], "--format"),
        (["predict", good, "--model", tmp_path / "nope"], "not found"),
        (["predict", good, "--model", gray_card, "--detector", "nope"], "unknown detector"),
        (["predict", good, "--model", gray_card, "--margin", "9"], "margin"),
        (["predict", good, "--model", gray_card, "--batch-size", "0"], "batch_size"),
    ]
    for argv, message in usage:
        rc, _, stderr = run_cli(capsys, *argv)
        assert rc == 2 and "emotune: error:" in stderr and message in stderr, (argv, stderr)
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict", str(good), "--format", "xml"])
    assert exc.value.code == 2
    assert not (tmp_path / "r.txt").exists()


def test_cli_detectors_lists_every_detector(capsys):
    rc, stdout, _ = run_cli(capsys, "detectors")
    assert rc == 0
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "landmarks", "model"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:]}
    assert rows["yunet"] == ["yes", "bundled"] and rows["haar"] == ["no", "bundled"]
    assert rows["mediapipe"] == ["yes", "required"] and "none" in rows


@pytest.mark.slow
def test_cli_subprocess_smoke():
    """The command line in a fresh interpreter (one call: every command's parser imports the training stack)."""
    res = subprocess.run([sys.executable, "-m", "emotune.cli", "detectors"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "yunet" in res.stdout and res.stderr == ""


def test_flip_tta_is_the_mean_of_a_face_and_its_mirror(gray_card):
    plain = Recognizer(gray_card, backend="torch", device="cpu")
    tta = Recognizer(gray_card, backend="torch", device="cpu", tta=True)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    mirrored = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
    expected = (plain.classify(crops) + plain.classify(mirrored)) / 2
    np.testing.assert_allclose(tta.classify(crops), expected, atol=1e-6)
    np.testing.assert_allclose(tta.classify(mirrored), tta.classify(crops), atol=1e-6)  # mirror-invariant
    assert not np.allclose(plain.classify(crops), plain.classify(mirrored), atol=1e-4)  # the model itself is not
