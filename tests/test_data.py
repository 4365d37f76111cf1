"""Label taxonomy, dataset formats, subject-aware splits and sample validation."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emotune.data.dataset import EmotionDataset, filter_labels, prepare_samples, soft_vector
from emotune.data.images import read_image
from emotune.data.sources import (
    Sample, detect_format, ferplus_target, load_fer2013_csv, load_ferplus, load_folder, load_manifest, load_samples,
)
from emotune.data.splits import holdout_split, stratified_subset
from emotune.data.synthetic import make_synthetic_dataset
from emotune.errors import BadInputError, LabelError
from emotune.taxonomy import BASIC7, BASIC8, FER2013_CODES, canonical_label, resolve_labels

# ============================================================== taxonomy


@pytest.mark.parametrize("name, canon", [
    ("anger", "angry"), ("happiness", "happy"), ("sadness", "sad"), ("surprised", "surprise"),
    ("contempt", "contempt"), ("Contemptuous", "contempt"), (" Happy ", "happy"), ("FEARFUL", "fear"),
    ("neutral", "neutral"), ("disgusted", "disgust"),
])
def test_synonyms(name, canon):
    assert canonical_label(name) == canon


def test_unknown_label_names_where():
    with pytest.raises(LabelError) as info:
        canonical_label("bored", where="faces.csv:17")
    assert info.value.where == "faces.csv:17"
    assert str(info.value).startswith("faces.csv:17: ") and "'bored'" in str(info.value)
    assert isinstance(info.value, BadInputError)


def test_resolve_labels():
    assert resolve_labels("basic7") == BASIC7
    assert resolve_labels("basic8") == BASIC8 and "contempt" in BASIC8 and len(BASIC8) == 8
    assert resolve_labels("auto", ["sad", "happy", "sad", "contempt"]) == ("happy", "sad", "contempt")
    assert resolve_labels("happiness, anger,sad") == ("happy", "angry", "sad")
    assert resolve_labels(["Surprised", "neutral"]) == ("surprise", "neutral")
    with pytest.raises(LabelError, match="no labels"):
        resolve_labels("auto", [])
    with pytest.raises(LabelError, match="duplicate"):
        resolve_labels("happy,happiness")
    with pytest.raises(LabelError, match="'bored'"):
        resolve_labels("happy,bored")


# ============================================================== class folders


@pytest.fixture
def faces(tmp_path) -> Path:
    return make_synthetic_dataset(tmp_path / "faces", per_class=3, size=16, labels=("happy", "sad", "neutral"))


def test_class_folder(faces):
    assert detect_format(faces) == "folder"
    samples = load_samples(faces)
    assert len(samples) == 9
    assert Counter(s.label for s in samples) == {"happy": 3, "sad": 3, "neutral": 3}
    assert all(s.path.parent.name == s.label and s.subject is None for s in samples)
    assert read_image(samples[0].path).size == (16, 16)


def test_class_folder_synonyms_nesting_and_subjects(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", per_class=4, size=16, labels=("happy", "sad"), subjects=2)
    (root / "happy").rename(root / "Happiness")
    (root / "sad" / "extra").mkdir()
    shutil.copy(next((root / "sad").glob("*.png")), root / "sad" / "extra" / "S007_copy.png")
    (root / ".cache").mkdir()  # hidden folders are not classes
    (root / "sad" / "notes.txt").write_text("not an image")
    samples = load_samples(root)
    assert Counter(s.label for s in samples) == {"happy": 4, "sad": 5}
    assert {s.subject for s in samples} == {"S001", "S002", "S007"}


def test_class_folder_unknown_label(faces):
    (faces / "bored").mkdir()
    with pytest.raises(LabelError) as info:
        load_samples(faces)
    assert str(faces / "bored") in str(info.value) and "'bored'" in str(info.value)


def test_class_folder_without_classes(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(BadInputError, match="no class sub-folders"):
        load_samples(tmp_path / "flat")


def test_empty_class_folder_is_an_error_naming_it(faces):
    """One empty class folder must not silently give a model without that class."""
    (faces / "fear").mkdir()
    (faces / "fear" / "readme.txt").write_text("images to come")
    with pytest.raises(BadInputError) as info:
        load_samples(faces)
    assert info.value.where == str(faces / "fear") and "'fear' holds no images" in str(info.value)


def test_empty_folder_of_a_dropped_class_is_allowed(faces):
    """`--drop-labels fear` says the user leaves fear out, so its empty folder is no error; other empty ones still are."""
    (faces / "fear").mkdir()
    samples = load_samples(faces, drop_labels=["fear"])
    assert samples and "fear" not in {s.label for s in samples}
    (faces / "angry").mkdir()
    with pytest.raises(BadInputError, match="'angry' holds no images"):
        load_samples(faces, drop_labels=["fear"])


def test_drop_labels_match_any_spelling_of_a_label(faces, tmp_path):
    """`--drop-labels Fear,anger` means the canonical fear and angry: it excuses an empty `fear/` folder and removes
    angry samples, whatever the spelling (it used to match only the exact folder name)."""
    from emotune.data.dataset import filter_labels

    data = tmp_path / "d"
    shutil.copytree(faces, data)
    (data / "fear").mkdir()
    (data / "angry").mkdir()
    first = sorted((data / "happy").iterdir())[0]
    shutil.copy(first, data / "angry" / first.name)
    samples = load_samples(data, drop_labels=["Fear"])
    assert "angry" in {s.label for s in samples}
    kept = filter_labels(samples, ["happy", "neutral", "sad"], drop=["Fear", "anger"])
    assert len(kept) == len(samples) - 1 and {s.label for s in kept} == {"happy", "neutral", "sad"}


def test_detect_format_errors(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        detect_format(tmp_path / "missing")
    txt = tmp_path / "readme.txt"
    txt.write_text("hi")
    with pytest.raises(BadInputError, match="not a dataset"):
        detect_format(txt)
    blob = tmp_path / "blob.csv"
    blob.write_bytes(b"\xff\xfe\x00\x81\x00garbage")
    with pytest.raises(BadInputError) as info:
        load_samples(blob)
    assert "blob.csv" in str(info.value)


# ============================================================== CSV manifests


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def manifest(faces, tmp_path) -> Path:
    """A manifest in its own folder whose relative paths point into the faces tree."""
    rows = ["path,label,subject,split"]
    for i, p in enumerate(sorted(faces.rglob("*.png"))):
        label = {"happy": "Happiness", "sad": "sadness", "neutral": "neutral"}[p.parent.name]
        subject = f"P{i % 3}" if i % 2 == 0 else ""
        rows.append(f"../faces/{p.parent.name}/{p.name},{label},{subject},{'train' if i < 6 else 'test'}")
    return _write(tmp_path / "lists" / "all.csv", "\n".join(rows) + "\n")


def test_manifest(manifest, tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # paths are relative to the CSV, not the working folder
    assert detect_format(manifest) == "manifest"
    samples = load_samples(manifest)
    assert len(samples) == 9
    assert all(s.path.is_file() for s in samples)
    assert Counter(s.label for s in samples) == {"happy": 3, "sad": 3, "neutral": 3}
    assert samples[0].subject == "P0" and samples[1].subject is None
    assert samples[2].where == f"{manifest}:4"
    train = load_samples(manifest, split="train")
    test = load_samples(manifest, split="test")
    assert len(train) == 6 and len(test) == 3
    assert {s.split for s in train} == {"train"} and {s.split for s in test} == {"test"}
    with pytest.raises(BadInputError, match="no rows with split='val'"):
        load_samples(manifest, split="val")


def test_manifest_minimal_columns_absolute_paths_and_bom(faces, tmp_path):
    files = sorted(faces.rglob("*.png"))[:2]
    m = tmp_path / "m.csv"
    m.write_bytes(("\ufeffpath,label\n" + "".join(f"{p},{p.parent.name}\n" for p in files)).encode("utf-8"))
    samples = load_samples(m)
    assert [s.path for s in samples] == files and samples[0].split is None


def test_manifest_header_with_spaces(faces, tmp_path):
    p = sorted(faces.rglob("*.png"))[0]
    m = _write(tmp_path / "spaced.csv", f"path, label, split\n{p}, happy, train\n")
    samples = load_samples(m, split="train")
    assert [(s.path, s.label, s.split) for s in samples] == [(p, "happy", "train")]


def test_manifest_wrong_columns(tmp_path):
    m = _write(tmp_path / "wrong.csv", "file,emotion\na.png,happy\n")
    with pytest.raises(BadInputError) as info:
        load_samples(m)
    msg = str(info.value)
    assert str(m) in msg and "file" in msg and "emotion" in msg
    with pytest.raises(BadInputError) as info:
        load_manifest(_write(tmp_path / "half.csv", "path,emotion\na.png,happy\n"))
    msg = str(info.value)
    assert "half.csv" in msg and "'label'" in msg and "'emotion'" in msg


def test_manifest_unknown_label_names_line(tmp_path):
    m = _write(tmp_path / "labels.csv", "path,label\na.png,happy\nb.png,sad\nc.png,bored\n")
    with pytest.raises(LabelError) as info:
        load_samples(m)
    assert f"{m}:4" in str(info.value) and "'bored'" in str(info.value)


def test_manifest_short_row_names_line(tmp_path):
    m = _write(tmp_path / "short.csv", "path,label\na.png,happy\nb.png\n")
    with pytest.raises(BadInputError, match=r"short\.csv:3"):
        load_samples(m)


# ============================================================== FER2013 CSV


def _pixels_str(arr: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in arr.ravel())


@pytest.fixture(scope="module")
def fer2013_csv(fer2013_dir, tmp_path_factory):
    """A small `fer2013.csv` built from the real JPEGs: (csv path, [(label, usage, pixels)] in row order)."""
    rows, expected = ["emotion,pixels,Usage"], []
    for folder, usage, per_class in (("train", "Training", 2), ("val", "PublicTest", 1), ("test", "PrivateTest", 1)):
        for code, label in enumerate(FER2013_CODES):
            for jpg in sorted((fer2013_dir / folder / label).glob("*.jpg"))[:per_class]:
                with Image.open(jpg) as im:
                    px = np.asarray(im.convert("L"))
                assert px.shape == (48, 48)
                rows.append(f"{code},{_pixels_str(px)},{usage}")
                expected.append((label, usage, px, jpg))
    path = tmp_path_factory.mktemp("fer") / "fer2013.csv"
    path.write_text("\n".join(rows) + "\n")
    return path, expected


@pytest.mark.shared
def test_fer2013_csv(fer2013_csv):
    path, expected = fer2013_csv
    assert detect_format(path) == "fer2013csv"
    samples = load_samples(path)
    assert len(samples) == len(expected) == 7 * 4
    for i, (s, (label, usage, px, jpg)) in enumerate(zip(samples, expected)):
        assert s.label == label and s.split == usage and s.path is None
        assert s.where == f"{path}:{i + 2}"
        assert s.pixels.dtype == np.uint8
        np.testing.assert_array_equal(s.pixels, px)
        if i % 9 == 0:  # the inline pixels decode like the JPEG file itself
            np.testing.assert_array_equal(s.pixels, np.asarray(read_image(jpg, channels="grayscale")))
    assert set(Counter(s.label for s in samples).values()) == {4}


@pytest.mark.shared
@pytest.mark.parametrize("split, usage, n", [
    ("train", "Training", 14), ("val", "PublicTest", 7), ("test", "PrivateTest", 7), ("PrivateTest", "PrivateTest", 7),
])
def test_fer2013_csv_usage_filter(fer2013_csv, split, usage, n):
    samples = load_samples(fer2013_csv[0], split=split)
    assert len(samples) == n and {s.split for s in samples} == {usage}
    assert len({s.label for s in samples}) == 7


GOOD_PIXELS = " ".join(["128"] * 2304)


@pytest.mark.parametrize("pixels, problem", [
    (" ".join(["1"] * 2303), "2303 values"),
    ("", "0 values"),
    (" ".join(["12"] * 2303 + ["abc"]), "not numbers"),
    (" ".join(["12"] * 2303 + ["nan"]), "not numbers"),
    (" ".join(["12"] * 2303 + ["256"]), "0-255"),
])
def test_fer2013_bad_pixels_names_line(tmp_path, pixels, problem):
    p = _write(tmp_path / "fer.csv", f"emotion,pixels,Usage\n3,{GOOD_PIXELS},Training\n0,{pixels},Training\n")
    with pytest.raises(BadInputError) as info:
        load_samples(p)
    assert info.value.where == f"{p}:3" and problem in str(info.value)


@pytest.mark.parametrize("code", ["7", "-1", "happy", ""])
def test_fer2013_bad_emotion_code(tmp_path, code):
    p = _write(tmp_path / "fer.csv", f"emotion,pixels,Usage\n3,{GOOD_PIXELS},Training\n{code},{GOOD_PIXELS},Training\n")
    with pytest.raises(LabelError) as info:
        load_fer2013_csv(p)
    assert info.value.where == f"{p}:3"


def test_fer2013_code_order():
    assert FER2013_CODES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


# ============================================================== FER+


def _votes(**kw) -> list[float]:
    cols = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
    return [float(kw.get(c, 0)) for c in cols]


def test_ferplus_majority():
    assert ferplus_target(_votes(happiness=10)) == {"happy": 1.0}
    assert ferplus_target(_votes(neutral=7, anger=2, contempt=1)) == {"neutral": 1.0}
    # single votes are noise: 4 of the 6 remaining votes is a majority, though 4 of 10 raw votes is not
    assert ferplus_target(_votes(sadness=4, anger=2, fear=1, disgust=1, surprise=1, NF=1)) == {"sad": 1.0}
    assert ferplus_target(_votes(neutral=5, happiness=5)) is None          # a tie is no majority
    assert ferplus_target(_votes(unknown=6, neutral=4)) is None             # unknown wins
    assert ferplus_target(_votes(NF=9, happiness=1)) is None                # not a face
    assert ferplus_target(_votes(neutral=1, happiness=1, sadness=1)) is None  # only single votes


def test_ferplus_probability():
    t = ferplus_target(_votes(neutral=6, happiness=3, surprise=1), "probability")
    assert t == pytest.approx({"neutral": 6 / 9, "happy": 3 / 9})           # the single surprise vote is gone
    t = ferplus_target(_votes(neutral=4, contempt=4, anger=1, unknown=1), "probability")
    assert t == pytest.approx({"neutral": 0.5, "contempt": 0.5})
    t = ferplus_target(_votes(anger=3, disgust=3, sadness=2, fear=2), "probability")
    assert set(t) == {"angry", "disgust", "sad"} and sum(t.values()) == pytest.approx(1.0)  # at most 3 emotions
    assert ferplus_target(_votes(unknown=5, happiness=5), "probability") is None
    assert ferplus_target(_votes(NF=8, sadness=2), "probability") is None


def test_ferplus_multi_target():
    t = ferplus_target(_votes(happiness=5, surprise=4, neutral=1), "multi_target")
    assert t == pytest.approx({"happy": 5 / 9, "surprise": 4 / 9})
    t = ferplus_target(_votes(happiness=6, surprise=2, neutral=2), "multi_target")  # 2/10 < 30%
    assert t == {"happy": 1.0}
    t = ferplus_target(_votes(anger=3, disgust=3, fear=2, sadness=2), "multi_target")  # 3/10 is enough
    assert t == pytest.approx({"angry": 0.5, "disgust": 0.5})
    assert ferplus_target(_votes(anger=2, disgust=2, fear=2, sadness=2, happiness=2), "multi_target") is None
    assert ferplus_target(_votes(unknown=6, happiness=4), "multi_target") is None


@pytest.mark.parametrize("mode", ["majority", "probability", "multi_target"])
def test_ferplus_targets_are_distributions(mode):
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(300):
        votes = rng.multinomial(10, rng.dirichlet(np.full(10, 0.4)))
        t = ferplus_target(votes, mode)
        if t is None:
            continue
        seen += 1
        assert set(t) <= set(BASIC8) and all(v > 0 for v in t.values())
        assert sum(t.values()) == pytest.approx(1.0)
        if mode == "majority":
            assert list(t.values()) == [1.0]
    assert seen > 30


def test_ferplus_bad_mode():
    with pytest.raises(ValueError, match="majority"):
        ferplus_target(_votes(happiness=10), "vote")


FERPLUS_ROWS = """\
fer0028638.png,"(0, 0, 48, 48)",4,0,0,0,1,0,0,4,1,0
fer0028639.png,"(0, 0, 48, 48)",1,0,0,1,0,2,0,6,0,0
fer0028640.png,"(0, 0, 48, 48)",7,0,0,0,2,0,0,1,0,0
fer0028641.png,"(0, 0, 48, 48)",5,5,0,0,0,0,0,0,0,0
fer0028642.png,"(0, 0, 48, 48)",0,10,0,0,0,0,0,0,0,0
"""


@pytest.fixture
def ferplus_copy(ferplus_valid_dir, tmp_path) -> Path:
    folder = tmp_path / "FER2013Valid"
    folder.mkdir()
    for line in FERPLUS_ROWS.splitlines():
        name = line.split(",")[0]
        shutil.copy(ferplus_valid_dir / name, folder / name)
    (folder / "label.csv").write_text(FERPLUS_ROWS)
    return folder


@pytest.mark.shared
def test_load_ferplus_copy(ferplus_copy):
    assert detect_format(ferplus_copy) == "ferplus"
    samples = load_samples(ferplus_copy)
    assert [(s.path.name, s.label) for s in samples] == [
        ("fer0028639.png", "contempt"), ("fer0028640.png", "neutral"), ("fer0028642.png", "happy")]
    assert all(s.soft is None and s.split == "FER2013Valid" for s in samples)
    assert samples[0].where.endswith("label.csv:2")
    assert read_image(samples[0].path).size == (48, 48)
    prob = load_samples(ferplus_copy, ferplus_mode="probability")
    assert [s.path.name for s in prob] == [f"fer00286{i}.png" for i in (38, 39, 40, 41, 42)]
    assert prob[0].soft == pytest.approx({"neutral": 0.5, "contempt": 0.5})
    assert prob[1].soft == {"contempt": 1.0} and prob[1].label == "contempt"  # 6 of 8 votes reach 75% alone
    assert prob[3].soft == pytest.approx({"neutral": 0.5, "happy": 0.5})
    assert all(sum(s.soft.values()) == pytest.approx(1.0) for s in prob)


@pytest.mark.shared
def test_load_ferplus_bad_row(ferplus_copy):
    (ferplus_copy / "label.csv").write_text(FERPLUS_ROWS + 'fer0028643.png,"(0, 0, 48, 48)",1,2,3\n')
    with pytest.raises(BadInputError, match=r"label\.csv:6: expected 12 fields"):
        load_samples(ferplus_copy)
    (ferplus_copy / "label.csv").write_text(FERPLUS_ROWS + 'fer0028643.png,"(0, 0, 48, 48)",x,0,0,0,0,0,0,0,0,0\n')
    with pytest.raises(BadInputError, match=r"label\.csv:6: vote counts"):
        load_samples(ferplus_copy)


@pytest.mark.shared
def test_load_ferplus_real_folder(ferplus_valid_dir):
    samples = load_ferplus(ferplus_valid_dir)
    rows = sum(1 for line in (ferplus_valid_dir / "label.csv").read_text().splitlines() if line.strip())
    assert 0.8 * rows < len(samples) < rows  # unknown / not-a-face / no-majority rows are dropped
    counts = Counter(s.label for s in samples)
    assert set(counts) <= set(BASIC8) and counts.most_common(1)[0][0] == "neutral"
    assert all(s.path.is_file() for s in samples[:50])


# ============================================================== CK+ subjects and splits


@pytest.fixture(scope="module")
def ckplus(ckplus_dir):
    return load_folder(ckplus_dir)


@pytest.mark.shared
def test_ckplus_subjects(ckplus):
    assert len(ckplus) == 981
    assert len({s.subject for s in ckplus}) == 118
    assert all(s.subject and s.subject.startswith("S") and s.path.name.startswith(s.subject + "_") for s in ckplus)
    assert {s.label for s in ckplus} == set(BASIC8) - {"neutral"}


@pytest.mark.shared
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ckplus_holdout_by_subject(ckplus, seed):
    train, val = holdout_split(ckplus, 0.2, seed=seed)
    assert len(train) + len(val) == len(ckplus)
    assert {s.path for s in train}.isdisjoint(s.path for s in val)
    assert {s.subject for s in train}.isdisjoint(s.subject for s in val)
    assert 0.1 * len(ckplus) < len(val) < 0.3 * len(ckplus)


@pytest.mark.shared
def test_ckplus_stratified_subset(ckplus):
    sub = stratified_subset(ckplus, 70, seed=0)
    assert len(sub) == 70 and len(set(sub)) == 70 and set(sub) <= set(ckplus)
    assert {s.label for s in sub} == {s.label for s in ckplus}
    assert stratified_subset(ckplus, 70, seed=0) == sub
    assert stratified_subset(ckplus, 0) == list(ckplus) and stratified_subset(ckplus, 5000) == list(ckplus)


def _fake(label: str, i: int, subject: str | None = None) -> Sample:
    return Sample(path=Path(f"/x/{label}_{i}.png"), label=label, subject=subject)


def test_holdout_stratified_without_subjects():
    samples = [_fake(c, i) for c in ("happy", "sad", "fear", "angry") for i in range(10)]
    train, val = holdout_split(samples, 0.25, seed=3)
    assert len(val) == 10 and len(train) == 30
    per_class = Counter(s.label for s in val)
    assert set(per_class) == {"happy", "sad", "fear", "angry"} and set(per_class.values()) <= {2, 3}


@pytest.mark.parametrize("n, fraction", [(2, 0.8), (1, 0.2), (3, 0.5)])
def test_holdout_tiny_datasets(n, fraction):
    samples = [_fake(c, i) for c in ("happy", "sad", "fear", "angry") for i in range(n)]
    train, val = holdout_split(samples, fraction)
    assert len(train) + len(val) == len(samples) and val and train
    assert set(train).isdisjoint(val)


# ============================================================== validation and the torch dataset


@pytest.fixture
def mixed(faces, tmp_path) -> list[Sample]:
    good = [Sample(path=p, label=p.parent.name, source=str(p)) for p in sorted(faces.rglob("*.png"))[:3]]
    empty = tmp_path / "bad" / "empty.png"
    _write(empty, "")
    text = _write(tmp_path / "bad" / "text.jpg", "hello")
    missing = tmp_path / "bad" / "missing.png"
    bad = [Sample(path=p, label="happy", source=str(p)) for p in (empty, text, missing)]
    return [good[0], bad[0], good[1], bad[1], bad[2], good[2]]


def test_prepare_skip(mixed):
    prepared, cache = prepare_samples(mixed, "rgb", on_bad="skip", show=False)
    assert prepared.samples == [mixed[0], mixed[2], mixed[5]]
    assert cache is None
    assert [Path(k.where).name for k in prepared.skipped] == ["empty.png", "text.jpg", "missing.png"]
    problems = [k.problem for k in prepared.skipped]
    assert "empty" in problems[0] and "not an image" in problems[1] and "not found" in problems[2]


def test_prepare_cache(mixed):
    prepared, cache = prepare_samples(mixed, "grayscale", cache=True, show=False)
    assert len(cache) == len(prepared.samples) == 3
    assert all(a.shape == (16, 16) and a.dtype == np.uint8 for a in cache)
    np.testing.assert_array_equal(cache[1], np.asarray(read_image(mixed[2].path, "grayscale")))


def test_prepare_fail_on_first_bad(mixed):
    with pytest.raises(BadInputError) as info:
        prepare_samples(mixed, "rgb", on_bad="fail", show=False)
    assert info.value.where == str(mixed[1].path) and "empty" in str(info.value)
    with pytest.raises(ValueError):
        prepare_samples(mixed, "rgb", on_bad="ignore", show=False)


def test_prepare_all_bad(mixed):
    bad = [mixed[1], mixed[3], mixed[4]]
    with pytest.raises(BadInputError) as info:
        prepare_samples(bad, "rgb", on_bad="skip", show=False)
    msg = str(info.value)
    assert "no usable images" in msg and "3" in msg and "empty.png" in msg


def test_prepare_inline_pixels():
    good = Sample(path=None, label="sad", source="fer.csv:2", pixels=np.full((48, 48), 9, np.uint8))
    prepared, cache = prepare_samples([good], "rgb", cache=True, show=False)
    assert prepared.samples == [good] and cache[0].shape == (48, 48, 3)


def test_filter_labels():
    samples = [_fake("happy", 0), _fake("contempt", 1), _fake("sad", 2), _fake("contempt", 3)]
    with pytest.raises(LabelError) as info:
        filter_labels(samples, BASIC7, where="train.csv")
    msg = str(info.value)
    assert msg.startswith("train.csv: ") and "'contempt'" in msg and "--drop-labels contempt" in msg
    assert "happy" not in msg.split("are not among")[0]
    kept = filter_labels(samples, BASIC7, drop=["contempt"])
    assert [s.label for s in kept] == ["happy", "sad"]
    assert [s.label for s in filter_labels(samples, ["happy"], drop=["contempt", "sad"])] == ["happy"]


def test_emotion_dataset_soft_targets(faces):
    paths = sorted(faces.rglob("*.png"))
    labels = ("happy", "sad", "neutral")
    samples = [
        Sample(path=paths[0], label="happy", soft={"happy": 0.6, "sad": 0.4}),
        Sample(path=paths[1], label="happy", soft={"happy": 0.5, "contempt": 0.25, "sad": 0.25}),  # contempt missing
        Sample(path=paths[2], label="neutral"),                                                       # hard label
        Sample(path=paths[3], label="sad", soft={"contempt": 1.0}),                                   # nothing left
    ]
    ds = EmotionDataset(samples, labels, transform=lambda im: torch.as_tensor(np.array(im)), soft=True)
    assert len(ds) == 4
    x, y = ds[0]
    assert x.shape == (16, 16, 3)
    torch.testing.assert_close(y, torch.tensor([0.6, 0.4, 0.0]))
    torch.testing.assert_close(ds[1][1], torch.tensor([2 / 3, 1 / 3, 0.0]))
    torch.testing.assert_close(ds[2][1], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(ds[3][1], torch.tensor([0.0, 1.0, 0.0]))
    for i in range(4):
        assert ds[i][1].sum().item() == pytest.approx(1.0)
    hard = EmotionDataset(samples, labels, transform=lambda im: im, channels="grayscale")
    assert [hard[i][1] for i in range(4)] == [0, 0, 2, 1] and hard[0][0].mode == "L"
    assert soft_vector(samples[0], ("sad", "happy")).tolist() == pytest.approx([0.4, 0.6])


# ============================================================== preprocessing (one path for evaluate and inference)


@pytest.mark.parametrize("mode, mean, std", [("L", [0.5], [0.25]), ("RGB", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
@pytest.mark.parametrize("size", [20, 32, 45])
def test_eval_transform_is_training_s_torchvision_pipeline(mode, mean, std, size):
    """eval_transform (now the card's Preprocess) gives what training's v2 Compose gave, so validation is unchanged."""
    from torchvision.transforms import v2

    from emotune.data.transforms import eval_transform

    img = Image.fromarray(np.random.default_rng(size).integers(0, 256, (size, size + 3, 3), dtype=np.uint8)).convert(mode)
    old = v2.Compose([v2.ToImage(), v2.Resize((32, 32), antialias=True), v2.ToDtype(torch.float32, scale=True),
                      v2.Normalize(mean, std)])
    tf = eval_transform(32, mean, std)
    assert torch.allclose(tf(img), old(img), atol=1e-6)
    ds = EmotionDataset([Sample(path=None, label="happy", pixels=np.asarray(img))], ["happy"], tf, "rgb" if mode == "RGB" else "grayscale")
    assert ds[0][0].shape == (len(mean), 32, 32)


@pytest.mark.parametrize("channels, in_chans", [("grayscale", 1), ("rgb", 3)])
def test_preprocess_numpy_crops_match_the_pil_path(channels, in_chans):
    """Recognizer crops (RGB uint8 arrays) take a numpy shortcut that is bit-identical to PIL's conversion."""
    from emotune.data.transforms import Preprocess

    pre = Preprocess(32, (0.5,) * in_chans, (0.25,) * in_chans, channels, in_chans, source_size=24)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in (24, 32, 50, 50)]
    want = [pre(Image.fromarray(c)) for c in crops]  # a PIL image goes through PIL's own conversion
    for c, w in zip(crops, want):
        assert torch.equal(pre(c), w)
    assert np.array_equal(pre.batch(crops), torch.stack(want).numpy())
    assert pre.batch(crops).shape == (4, in_chans, 32, 32)
