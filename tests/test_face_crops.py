"""`emotune faces crop` and the labels.csv (Taiwanese) format: crops framed exactly as predict frames faces, the
observers' votes as soft targets, and clear errors for bad labels, votes and missing subjects."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotune.cli import main
from emotune.data.formats_faces import load_taiwanese, require_subjects
from emotune.data.merge import load_merged, parse_sources
from emotune.data.sources import detect_format, load_samples
from emotune.data.synthetic import draw_face, make_synthetic_dataset
from emotune.errors import BadInputError, ConfigError, LabelError
from emotune.faces import Face
from emotune.faces.detectors import Detector, DetectorConfig, register_detector

SHARED_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "images"


class _Landmarked(Detector):
    """A test detector: every photo has a big face at (60, 40) and a small one at (230, 20), each with 5 landmarks
    where the synthetic photo draws them, so the aligned path (not just the box crop) is exercised."""

    name = "test_landmarked"

    def __init__(self, model=None, score_threshold: float = 0.6, max_side: int = 640, min_face: int = 12):
        super().__init__(score_threshold, max_side, min_face)

    def _detect(self, rgb):
        h, w = rgb.shape[:2]
        if rgb.mean() > 250:  # a blank photo has no face
            return []
        out = []
        for x0, y0, side in ((60, 40, 120), (230, 20, 50)):
            if x0 + side > w:
                continue
            p = np.array([[0.34, 0.40], [0.66, 0.40], [0.50, 0.55], [0.37, 0.70], [0.63, 0.70]], np.float32) * side + [x0, y0]
            out.append(Face((float(x0), float(y0), float(side), float(side)), 0.9, p.astype(np.float32)))
        return out


register_detector(DetectorConfig("test_landmarked", _Landmarked, "test only: fixed faces with landmarks", True))


def synthetic_photo(seed: int, label: str = "happy") -> Image.Image:
    rng = np.random.default_rng(seed)
    bg = (rng.random((200, 300, 3)) * 255).astype(np.uint8)
    photo = Image.fromarray(bg)
    photo.paste(draw_face(label, 120, rng).convert("RGB"), (60, 40))
    photo.paste(draw_face("sad", 50, rng).convert("RGB"), (230, 20))
    return photo


def predict_crop(path: Path, detector: str) -> np.ndarray:
    """The largest face's crop through predict's own path (Recognizer: read, detect, crop)."""
    from emotune.inference.recognizer import Recognizer, _Item

    rec = Recognizer(None, detector=detector, backend="torch", device="cpu")
    item = rec._detect(_Item(str(path), rgb=rec._to_rgb(path)))
    assert item.faces, f"predict found no face in {path}"
    i = max(range(len(item.faces)), key=lambda k: item.faces[k].area)
    return item.crops[i]


def test_faces_crop_gives_predicts_crop_pixel_for_pixel_on_a_synthetic_photo(tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "happy").mkdir(parents=True)
    (photos / "sad").mkdir()
    synthetic_photo(1).save(photos / "happy" / "S001_a.png")
    synthetic_photo(2, "sad").save(photos / "sad" / "S002_b.jpg", quality=95)
    Image.new("RGB", (200, 200), (255, 255, 255)).save(photos / "sad" / "S003_blank.png")
    (photos / "sad" / "S004_broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "crops"
    assert main(["faces", "crop", "--data", str(photos), "--out", str(out), "--detector", "test_landmarked", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "no_face" in err and "S003_blank.png" in err and "unreadable" in err and "S004_broken.jpg" in err
    for src, crop in ((photos / "happy" / "S001_a.png", out / "happy" / "S001_a.png"),
                      (photos / "sad" / "S002_b.jpg", out / "sad" / "S002_b.png")):
        got = np.asarray(Image.open(crop).convert("RGB"))
        want = predict_crop(src, "test_landmarked")
        assert got.shape == (48, 48, 3) == want.shape  # the bundled card's source_size
        assert np.array_equal(got, want)
    rows = {Path(r["source"]).name: r for r in csv.DictReader(open(out / "crop_report.csv"))}
    assert rows["S001_a.png"]["status"] == "several_faces" and rows["S001_a.png"]["faces"] == "2"
    assert rows["S001_a.png"]["w"] == "120.0"  # the largest face was taken
    assert rows["S003_blank.png"]["status"] == "no_face" and rows["S004_broken.jpg"]["status"] == "unreadable"
    report = json.loads((out / "crop_report.json").read_text())
    assert report["complete"] and report["crops"] == 2 and report["settings"]["size"] == 48
    # the crops are a class-folder dataset again, subjects kept in the names
    samples = load_samples(out)
    assert sorted((s.label, s.subject) for s in samples) == [("happy", "S001"), ("sad", "S002")]


def test_faces_crop_resumes_and_refuses_other_settings(tmp_path, capsys):
    photos = make_photo_folder(tmp_path)
    out = tmp_path / "crops"
    args = ["faces", "crop", "--data", str(photos), "--out", str(out), "--detector", "test_landmarked", "--no-progress"]
    assert main(args) == 0
    crop = out / "happy" / "S001_a.png"
    before = crop.stat().st_mtime_ns
    assert main(args) == 0
    assert crop.stat().st_mtime_ns == before  # skipped, not rewritten
    assert "several_faces 1" in capsys.readouterr().out  # the first run's report row, kept
    assert main([*args, "--size", "64"]) == 2
    assert "holds crops made with other settings (size 48 -> 64)" in capsys.readouterr().err
    assert main(["faces", "crop", "--data", str(photos), "--out", str(photos / "x"), "--no-progress"]) == 2
    assert "outside the photo dataset" in capsys.readouterr().err


def make_photo_folder(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    (photos / "happy").mkdir(parents=True)
    synthetic_photo(1).save(photos / "happy" / "S001_a.png")
    return photos


def test_faces_crop_on_real_photos_matches_predict(tmp_path):
    names = [n for n in ("grace_hopper.jpg", "astronaut.png") if (SHARED_IMAGES / n).is_file()]
    if not names:
        pytest.skip(f"needs photos in {SHARED_IMAGES}")
    photos = tmp_path / "photos" / "neutral"
    photos.mkdir(parents=True)
    for n in names:
        shutil.copy(SHARED_IMAGES / n, photos / n)
    out = tmp_path / "crops"
    assert main(["faces", "crop", "--data", str(photos.parent), "--out", str(out), "--no-progress"]) == 0
    for n in names:
        got = np.asarray(Image.open(out / "neutral" / Path(n).with_suffix(".png")).convert("RGB"))
        assert np.array_equal(got, predict_crop(photos / n, "yunet")), n


def test_faces_crop_of_a_manifest_carries_its_columns(tmp_path):
    photos = make_photo_folder(tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,subject,age\nphotos/happy/S001_a.png,happy,p7,31\n")
    out = tmp_path / "crops"
    assert main(["faces", "crop", "--data", str(manifest), "--out", str(out), "--detector", "test_landmarked", "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert rows == [{"path": "images/photos/happy/S001_a.png", "label": "happy", "subject": "p7", "age": "31",
                     "source_path": str(photos / "happy" / "S001_a.png")}]
    (s,) = load_samples(out / "manifest.csv")
    assert s.subject == "p7" and s.path.is_file()


# ---------------------------------------------------------------------------------------------- the labels.csv format

def make_taiwanese(root: Path, votes: list[list[str]] | None = None, labels_header: str = "file,subject,label") -> Path:
    """A tiny copy of the Taiwanese layout: 4 photos, 2 performers."""
    (root / "images").mkdir(parents=True)
    rows = [("0101a02.jpg", "01", "neutral"), ("0111b01.jpg", "01", "happy"), ("0221f03.jpg", "02", "fear"),
            ("0221b02.jpg", "02", "happy")]
    for i, (f, _, lab) in enumerate(rows):
        synthetic_photo(10 + i, "neutral" if lab in ("neutral", "fear") else "happy").save(root / "images" / f)
    cols = labels_header.split(",")
    lines = [labels_header] + [",".join({"file": f, "subject": s, "label": lab}[c] for c in cols) for f, s, lab in rows]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    votes = votes or [["0.1", "0", "0", "0", "0", "0", "0.9"], ["0.8", "0", "0", "0", "0", "0.1", "0.1"],
                      ["0", "0", "0.4", "0.2", "0", "0.6", "0"], ["1.0", "0", "0", "0", "0", "0", "0.1"]]
    head = "file,observer_count,vote_happy,vote_angry,vote_sad,vote_fear,vote_disgust,vote_surprise,vote_neutral,vote_centropy"
    (root / "votes.csv").write_text("\n".join([head] + [",".join([f, "100", *v, "0.5"]) for (f, _, _), v in zip(rows, votes)]) + "\n")
    return root


def test_taiwanese_format_subjects_and_vote_soft_labels(tmp_path):
    root = make_taiwanese(tmp_path / "tw")
    assert detect_format(root) == "taiwanese"
    hard = load_samples(root)
    assert [(s.label, s.subject, s.soft) for s in hard][:2] == [("neutral", "01", None), ("happy", "01", None)]
    soft = load_samples(root, soft_labels="votes")
    fear = soft[2]
    assert fear.label == "fear"  # the posed label stays the hard one...
    assert fear.soft == pytest.approx({"sad": 1 / 3, "fear": 1 / 6, "surprise": 1 / 2})  # ...the observers' votes, normalised
    assert sum(soft[3].soft.values()) == pytest.approx(1.0) and soft[3].soft["neutral"] == pytest.approx(0.1 / 1.1)


def test_taiwanese_bad_input_names_the_file_and_row(tmp_path):
    zero = make_taiwanese(tmp_path / "zero", votes=[["0"] * 7, ["1"] + ["0"] * 6, ["1"] + ["0"] * 6, ["1"] + ["0"] * 6])
    with pytest.raises(BadInputError, match=r"votes\.csv:2: the votes .* sum to 0"):
        load_samples(zero, soft_labels="votes")
    bad = make_taiwanese(tmp_path / "bad", votes=[["x"] + ["0"] * 6] + [["1"] + ["0"] * 6] * 3)
    with pytest.raises(BadInputError, match=r"votes\.csv:2: vote column vote_happy: 'x' is not a number"):
        load_samples(bad, soft_labels="votes")
    with pytest.raises(BadInputError, match="soft_labels 'majority'"):
        load_samples(zero, soft_labels="majority")
    unknown = make_taiwanese(tmp_path / "unknown")
    text = (unknown / "labels.csv").read_text().replace("fear", "bored")
    (unknown / "labels.csv").write_text(text)
    with pytest.raises(LabelError, match=r"labels\.csv:4: unknown emotion label 'bored'"):
        load_samples(unknown)
    nosubj = make_taiwanese(tmp_path / "nosubj", labels_header="file,label")
    samples = load_taiwanese(nosubj)
    with pytest.raises(BadInputError, match=r"labels\.csv:2: no subject .* grouping by subject needs one"):
        require_subjects(samples)


def test_taiwanese_crops_keep_the_layout_and_merge_with_soft_votes(tmp_path):
    root = make_taiwanese(tmp_path / "tw")
    out = tmp_path / "tw_crops"
    assert main(["faces", "crop", "--data", str(root), "--out", str(out), "--detector", "test_landmarked", "--no-progress"]) == 0
    assert detect_format(out) == "taiwanese"
    crops = load_samples(out, soft_labels="votes")
    assert [s.path.name for s in crops] == ["0101a02.png", "0111b01.png", "0221f03.png", "0221b02.png"]
    assert crops[2].soft == pytest.approx({"sad": 1 / 3, "fear": 1 / 6, "surprise": 1 / 2})
    lab = make_synthetic_dataset(tmp_path / "lab", per_class=4, size=32, seed=3, labels=("happy", "sad", "surprise"))
    specs = parse_sources([{"name": "tw", "data": str(out), "soft_labels": "votes", "val_fraction": 0, "missing": ["sad", "surprise"]},
                           {"name": "lab", "data": str(lab), "val_fraction": 0, "missing": ["neutral", "fear"]}])
    m = load_merged(specs, "auto", seed=0)
    assert m.labels == ("fear", "happy", "neutral", "sad", "surprise")
    assert all(s.soft for s in m.train if s.dataset == "tw") and not any(s.soft for s in m.train if s.dataset == "lab")
    # a source label outside the model's labels: the error names the source and an example file/row
    with pytest.raises(ConfigError, match=r"source 'tw' has labels \['fear'\] outside .*labels\.csv:4"):
        load_merged(specs, "happy,neutral,sad,surprise", seed=0)
