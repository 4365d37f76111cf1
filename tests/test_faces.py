"""Face detectors (registry, the shared rescale/clip/filter rule, YuNet and Haar on real photos) and alignment.

Real faces come from ../shared/images (tests that need them skip with a reason when it is absent); alignment is
checked on synthetic images whose landmarks are known to a fraction of a pixel. No model is trained or loaded here
except the bundled YuNet ONNX file and OpenCV's own Haar cascade.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from emotune.errors import ConfigError
from emotune.faces import (DEFAULT_DETECTOR, FER_TEMPLATE, Detector, DetectorConfig, Face, create_detector, crop_face,
                           get_detector_config, list_detectors, register_detector)
from emotune.faces.align import BOX_SCALE, alignment_matrix, box_matrix
from emotune.faces.detectors import _DETECTORS, bundled_yunet

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
IMAGES = SHARED / "images"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def shared_rgb(name: str) -> np.ndarray:
    path = IMAGES / name
    if not path.is_file():
        pytest.skip(f"needs shared data at {path} (absent on this machine)")
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def yunet() -> Detector:
    return create_detector("yunet")


def inside(box, w: int, h: int) -> bool:
    x, y, bw, bh = box
    return x >= 0 and y >= 0 and bw > 0 and bh > 0 and x + bw <= w + 1e-3 and y + bh <= h + 1e-3


# --------------------------------------------------------------------------------------------- registry


def test_registry_lists_every_detector_with_its_needs():
    assert DEFAULT_DETECTOR == "yunet"
    assert set(list_detectors()) >= {"yunet", "haar", "mediapipe", "none"}
    assert get_detector_config("yunet").landmarks and not get_detector_config("yunet").needs_file
    assert not get_detector_config("haar").landmarks
    assert get_detector_config("mediapipe").needs_file and get_detector_config("mediapipe").landmarks
    assert bundled_yunet().is_file() and bundled_yunet().stat().st_size > 100_000


def test_unknown_detector_and_bad_model_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown detector 'nope'.*yunet"):
        create_detector("nope")
    with pytest.raises(ConfigError, match="not found"):
        create_detector("yunet", tmp_path / "missing.onnx")
    text = tmp_path / "fake.onnx"
    text.write_text("not an onnx graph")
    with pytest.raises(ConfigError, match="cannot load"):
        create_detector("yunet", text)
    with pytest.raises(ConfigError, match="detector-model"):
        create_detector("mediapipe")  # needs a .tflite file: a clear message, not an ImportError or a crash
    with pytest.raises(ConfigError, match="not found"):
        create_detector("mediapipe", tmp_path / "missing.tflite")


class _Fixed(Detector):
    """Returns the same faces (in the coordinates of the image it is given) whatever the image."""

    name = "fixed"

    def __init__(self, faces, **kw):
        super().__init__(**kw)
        self.faces = faces
        self.seen: list[tuple[int, int]] = []

    def _detect(self, rgb):
        self.seen.append(rgb.shape[:2])
        return [Face(f.box, f.score, None if f.landmarks is None else f.landmarks.copy()) for f in self.faces]


def test_register_detector_makes_it_available():
    register_detector(DetectorConfig("fixed-test", lambda model=None, **kw: _Fixed([], **kw), "test only", False))
    try:
        assert "fixed-test" in list_detectors()
        assert isinstance(create_detector("fixed-test"), _Fixed)
    finally:
        _DETECTORS.pop("fixed-test", None)


def test_detect_rescales_clips_filters_and_sorts():
    lm = np.array([[30, 30], [50, 30], [40, 40], [32, 50], [48, 50]], np.float32)
    faces = [
        Face((200.0, 10.0, 40.0, 40.0), 0.9, None),         # right-most: comes last
        Face((20.0, 20.0, 40.0, 40.0), 0.95, lm),           # left-most, with landmarks
        Face((-10.0, 150.0, 40.0, 60.0), 0.8, None),         # sticks out left and bottom: clipped
        Face((100.0, 100.0, 4.0, 4.0), 0.99, None),          # too small after rescaling (8 px < min_face 12)
        Face((120.0, 20.0, 40.0, 40.0), 0.5, None),          # below the score threshold
    ]
    det = _Fixed(faces, score_threshold=0.6, max_side=320, min_face=12)
    rgb = np.zeros((400, 640, 3), np.uint8)  # longest side 640 -> detection at half size (200 x 320)
    out = det.detect(rgb)
    assert det.seen == [(200, 320)]
    assert [f.score for f in out] == [0.8, 0.95, 0.9]  # sorted by x; small and weak ones dropped
    clipped, with_lm, right = out
    assert clipped.box == (0.0, 300.0, 60.0, 100.0)  # (-20, 300, 80, 120) clipped to the 640 x 400 image
    assert with_lm.box == (40.0, 40.0, 80.0, 80.0)
    np.testing.assert_allclose(with_lm.landmarks, lm * 2)
    assert right.box == (400.0, 20.0, 80.0, 80.0)
    assert all(inside(f.box, 640, 400) for f in out)
    assert clipped.area == 6000.0 and Face((0, 0, -1, 5), 1.0).area == 0.0


def test_max_side_zero_means_full_resolution_and_whole_image_detector():
    det = _Fixed([Face((1.0, 2.0, 30.0, 30.0), 1.0)], max_side=0)
    assert det.detect(np.zeros((1000, 700, 3), np.uint8))[0].box == (1.0, 2.0, 30.0, 30.0)
    assert det.seen == [(1000, 700)]
    whole = create_detector("none")
    (f,) = whole.detect(np.zeros((48, 40, 3), np.uint8))
    assert f.box == (0.0, 0.0, 40.0, 48.0) and f.score == 1.0 and f.landmarks is None


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 2, 3), (1, 500, 3), (3000, 2, 3), (12, 12, 3)])
@pytest.mark.parametrize("name", ["yunet", "haar"])
def test_degenerate_images_give_no_face_not_an_exception(name, shape):
    assert create_detector(name).detect(np.zeros(shape, np.uint8)) == []


# --------------------------------------------------------------------------------------------- real photos


@pytest.mark.shared
def test_yunet_finds_one_face_with_sane_landmarks(yunet):
    for name in ("grace_hopper.jpg", "astronaut.png"):
        rgb = shared_rgb(name)
        h, w = rgb.shape[:2]
        (face,) = yunet.detect(rgb)
        assert 0.6 <= face.score <= 1.0
        assert inside(face.box, w, h)
        assert 0.15 * w < face.box[2] < 0.6 * w
        lm = face.landmarks
        assert lm.shape == (5, 2) and lm.dtype == np.float32
        x, y, bw, bh = face.box
        assert np.all((lm[:, 0] > x) & (lm[:, 0] < x + bw) & (lm[:, 1] > y) & (lm[:, 1] < y + bh))
        eye_r, eye_l, nose, mouth_r, mouth_l = lm
        assert eye_r[0] < nose[0] < eye_l[0]  # image left to right
        assert mouth_r[0] < mouth_l[0]
        assert max(eye_r[1], eye_l[1]) < nose[1] < min(mouth_r[1], mouth_l[1])  # eyes above nose above mouth


@pytest.mark.shared
@pytest.mark.parametrize("name", ["rocket.jpg", "chelsea.png", "coffee.png"])
def test_yunet_finds_no_human_face(yunet, name):
    assert yunet.detect(shared_rgb(name)) == []


@pytest.mark.shared
def test_yunet_finds_five_people_left_to_right(yunet):
    rgb = shared_rgb("pyfeat/multi_face.jpg")
    faces = yunet.detect(rgb)
    assert len(faces) == 5
    xs = [f.box[0] for f in faces]
    assert xs == sorted(xs)
    assert all(inside(f.box, rgb.shape[1], rgb.shape[0]) and f.landmarks.shape == (5, 2) for f in faces)


@pytest.mark.shared
def test_yunet_boxes_scale_with_the_image(yunet):
    """A 4x larger photo is shrunk to max_side for detection and the box is mapped back to full resolution."""
    rgb = shared_rgb("grace_hopper.jpg")
    (small,) = yunet.detect(rgb)
    big = cv2.resize(rgb, (rgb.shape[1] * 4, rgb.shape[0] * 4), interpolation=cv2.INTER_LINEAR)
    (large,) = yunet.detect(big)
    np.testing.assert_allclose(np.array(large.box) / 4, small.box, atol=6)
    np.testing.assert_allclose(large.landmarks / 4, small.landmarks, atol=6)


@pytest.mark.shared
def test_yunet_min_score_filters(yunet):
    rgb = shared_rgb("grace_hopper.jpg")
    (face,) = yunet.detect(rgb)
    strict = create_detector("yunet", score_threshold=min(0.999, face.score + 0.01))
    assert strict.detect(rgb) == []


@pytest.mark.shared
def test_haar_finds_the_face_without_landmarks(yunet):
    rgb = shared_rgb("grace_hopper.jpg")
    faces = create_detector("haar").detect(rgb)
    assert len(faces) == 1
    (f,) = faces
    assert f.landmarks is None and 0.0 < f.score < 1.0
    # the same face YuNet finds: the centres are close
    (y,) = yunet.detect(rgb)
    c = np.array([f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2])
    cy = np.array([y.box[0] + y.box[2] / 2, y.box[1] + y.box[3] / 2])
    assert np.linalg.norm(c - cy) < 0.25 * y.box[2]


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw, ih = max(0.0, min(ax + aw, bx + bw) - max(ax, bx)), max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih / (aw * ah + bw * bh - iw * ih)


def test_detections_cli_prints_json_lines_and_goes_past_bad_files(tmp_path, capsys):
    import json

    from emotune.faces.__main__ import main

    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "blank.png")
    (tmp_path / "bad.jpg").write_text("not an image")
    assert main([str(tmp_path / "blank.png"), str(tmp_path / "bad.jpg")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == {"file": str(tmp_path / "blank.png"), "height": 48, "width": 64, "faces": []}
    assert rows[1]["file"] == str(tmp_path / "bad.jpg") and "bad.jpg" in rows[1]["error"]
    assert main([str(tmp_path / "bad.jpg")]) == 1  # nothing processed
    assert main(["--detector", "mediapipe", str(tmp_path / "blank.png")]) == 2  # needs a model file: a clear error
    assert "--detector-model" in capsys.readouterr().err


MP_VENV = Path(os.environ.get("EMOTUNE_MP_VENV", Path(__file__).resolve().parents[1] / ".venv-mp"))
MP_MODEL = SHARED / "weights" / "face" / "mediapipe_0.10.21_face_detection_full_range_sparse.tflite"


@pytest.mark.shared
def test_mediapipe_finds_the_faces_yunet_finds(yunet):
    """The MediaPipe option end to end, in its side environment (requirements/mediapipe.txt; `make mediapipe-env`):
    the people in the shared photos and no face in the others, each box on a YuNet face, five landmarks in the box."""
    import json
    import subprocess

    if not (MP_VENV / ".installed").is_file():  # the stamp `make mediapipe-env` writes once every package is in
        pytest.skip(f"needs the MediaPipe side environment {MP_VENV} (make mediapipe-env; "
                    "mediapipe's opencv-contrib-python clashes with emotune's OpenCV)")
    if not MP_MODEL.is_file():
        pytest.skip(f"needs the MediaPipe model file {MP_MODEL} (absent on this machine)")
    names = {"grace_hopper.jpg": 1, "astronaut.png": 1, "pyfeat/multi_face.jpg": 5, "rocket.jpg": 0, "chelsea.png": 0,
             "coffee.png": 0}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run([str(MP_VENV / "bin" / "python"), "-m", "emotune.faces", "--detector", "mediapipe", "--detector-model", str(MP_MODEL),
                          *(str(IMAGES / n) for n in names)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["file"] for r in rows] == [str(IMAGES / n) for n in names]
    for row, (name, expected) in zip(rows, names.items()):
        faces = row["faces"]
        assert len(faces) == expected, f"{name}: {len(faces)} faces, expected {expected}"
        ours = yunet.detect(shared_rgb(name))
        for f in faces:
            assert 0.5 <= f["score"] <= 1.0 and inside(f["box"], row["width"], row["height"])
            assert max((_iou(f["box"], y.box) for y in ours), default=0.0) > 0.4, f"{name}: a MediaPipe box on no YuNet face"
            lm = np.array(f["landmarks"])
            x, y, w, h = f["box"]
            assert lm.shape == (5, 2) and np.all((lm[:, 0] > x) & (lm[:, 0] < x + w) & (lm[:, 1] > y) & (lm[:, 1] < y + h))
            assert lm[0, 0] < lm[2, 0] < lm[1, 0]  # right eye, nose, left eye: image left to right


# --------------------------------------------------------------------------------------------- alignment


def _similarity(scale: float, degrees: float, centre) -> np.ndarray:
    """Template landmarks placed in an image by a known similarity transform."""
    th = np.deg2rad(degrees)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) * scale
    return ((FER_TEMPLATE - 0.5) @ rot.T + np.asarray(centre, float)).astype(np.float32)


def _blob(centre, shape=(400, 400), sigma=3.0) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    g = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat((g * 255).round().astype(np.uint8)[..., None], 3, 2)


def _centroid(img: np.ndarray) -> np.ndarray:
    g = img[..., 0].astype(float)
    g = np.where(g > g.max() * 0.05, g, 0.0)
    yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]]
    return np.array([(g * xx).sum() / g.sum(), (g * yy).sum() / g.sum()])


def test_alignment_matrix_maps_landmarks_onto_the_template():
    lm = _similarity(150, 25, (210, 190))
    for size, margin in ((48, 1.0), (64, 1.6)):
        m = alignment_matrix(lm, size, margin)
        mapped = lm @ m[:, :2].T + m[:, 2]
        np.testing.assert_allclose(mapped, (0.5 + (FER_TEMPLATE - 0.5) / margin) * size, atol=1e-3)
    with pytest.raises(ValueError, match="degenerate"):
        alignment_matrix(np.full((5, 2), 100, np.float32), 48)


@pytest.mark.parametrize("scale,size,margin", [
    (40.0, 48, 1.0),    # face smaller than the crop: a plain warp
    (150.0, 48, 1.0),   # ~3x larger: warped at 3x and area-averaged down
    (300.0, 64, 1.5),   # 4x supersampling, zoomed out
])
def test_aligned_crop_puts_landmarks_at_the_template_positions(scale, size, margin):
    """Warp images with one blob at each landmark: each blob lands on its template position (sub-pixel)."""
    lm = _similarity(scale, 20, (200, 210))
    face = Face((0.0, 0.0, 1.0, 1.0), 1.0, lm)  # a useless box: alignment must use the landmarks
    for i in range(5):
        crop = crop_face(_blob(lm[i], sigma=3.0 * scale / 150), face, size, margin)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        want = (0.5 + (FER_TEMPLATE[i] - 0.5) / margin) * size
        np.testing.assert_allclose(_centroid(crop), want, atol=0.15)


def test_crop_without_landmarks_or_alignment_uses_the_box():
    img = _blob((130, 90), shape=(300, 260), sigma=4.0)
    box = (100.0, 50.0, 60.0, 80.0)  # centre (130, 90)
    size = 48
    m = box_matrix(box, size)
    np.testing.assert_allclose(m[:, :2], np.eye(2) * size / (80 * BOX_SCALE), rtol=1e-5)
    np.testing.assert_allclose(m @ np.array([130, 90, 1.0]), [size / 2, size / 2], atol=1e-4)
    for face, align in ((Face(box, 1.0, None), True), (Face(box, 1.0, _similarity(150, 30, (50, 50))), False)):
        crop = crop_face(img, face, size, align=align)
        np.testing.assert_allclose(_centroid(crop), [size / 2, size / 2], atol=0.2)
    # degenerate landmarks fall back to the box instead of raising
    crop = crop_face(img, Face(box, 1.0, np.zeros((5, 2), np.float32)), size)
    np.testing.assert_allclose(_centroid(crop), [size / 2, size / 2], atol=0.2)


def test_margin_zooms_out():
    img = _blob((150, 150), shape=(300, 300), sigma=20.0)
    box = (100.0, 100.0, 100.0, 100.0)
    tight = crop_face(img, Face(box, 1.0), 48, margin=1.0)
    loose = crop_face(img, Face(box, 1.0), 48, margin=2.0)
    # the same blob covers fewer pixels when zoomed out
    assert (loose[..., 0] > 128).sum() < 0.5 * (tight[..., 0] > 128).sum()


def test_large_faces_are_area_averaged_not_aliased():
    """A 1-pixel checkerboard shrunk ~6x must come out as flat grey, not moire."""
    board = ((np.indices((600, 600)).sum(0) % 2) * 255).astype(np.uint8)
    rgb = np.repeat(board[..., None], 3, 2)
    crop = crop_face(rgb, Face((100.0, 100.0, 300.0, 300.0), 1.0), 48, align=False)
    assert abs(float(crop.mean()) - 127.5) < 8
    assert float(crop.std()) < 25


@pytest.mark.shared
def test_real_face_crop_is_aligned(yunet):
    rgb = shared_rgb("grace_hopper.jpg")
    (face,) = yunet.detect(rgb)
    crop = crop_face(rgb, face, 48)
    assert crop.shape == (48, 48, 3)
    # the landmarks mapped by the same transform sit near the template (a least-squares fit of 5 points)
    m = alignment_matrix(face.landmarks, 48)
    mapped = face.landmarks @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - FER_TEMPLATE * 48).max() < 4
    # the eyes are level in the aligned crop even if the head is tilted
    assert abs(mapped[0, 1] - mapped[1, 1]) < 2
