"""Valence/arousal and scene dataset formats: small files generated in each format; the shared Twitter I and OASIS
folders when present."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotune.data.sources import detect_format, load_samples
from emotune.errors import BadInputError, ConfigError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _img(path: Path, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)
    return path


def test_affectnet_csv(tmp_path):
    _img(tmp_path / "1" / "a.jpg"); _img(tmp_path / "1" / "b.jpg"); _img(tmp_path / "2" / "c.jpg")
    (tmp_path / "training.csv").write_text(
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
        "1/a.jpg,2,3,20,20,,1,0.5,-0.25\n"
        "1/b.jpg,0,0,30,30,,9,-2,0.3\n"          # uncertain class, valence missing
        "2/c.jpg,0,0,30,30,,10,-2,-2\n")         # no face, nothing annotated: left out
    assert detect_format(tmp_path / "training.csv") == "affectnet"
    s = load_samples(tmp_path / "training.csv")
    assert len(s) == 2 and s[0].label == "happy" and s[0].targets == {"valence": 0.5, "arousal": -0.25} and s[0].box == (2, 3, 22, 23)
    assert s[1].label == "" and math.isnan(s[1].targets["valence"])
    from emotune.data.dataset import load_pil

    assert load_pil(s[0], "rgb").size == (20, 20)  # cropped to the face box
    (tmp_path / "bad.csv").write_text("subDirectory_filePath,expression,valence,arousal\n1/a.jpg,1,1.5,0\n")
    with pytest.raises(BadInputError, match=r"bad\.csv:2.*outside its scale"):
        load_samples(tmp_path / "bad.csv", "affectnet")


def test_afewva_clips(tmp_path):
    for clip in ("001", "002"):
        for f in ("00000", "00001"):
            _img(tmp_path / clip / f"{f}.png", (64, 48))
        frames = {f: {"valence": v, "arousal": -v, "landmarks": [[10, 10], [30, 12], [20, 30]]} for f, v in (("00000", 10), ("00001", -5))}
        frames["00002"] = {"valence": 0, "arousal": 0, "landmarks": []}  # no image extracted: skipped
        (tmp_path / clip / f"{clip}.json").write_text(json.dumps({"actor": "x", "frames": frames, "video_id": clip}))
    assert detect_format(tmp_path) == "afewva"
    s = load_samples(tmp_path)
    assert len(s) == 4 and s[0].targets == {"valence": 1.0, "arousal": -1.0} and s[1].targets["valence"] == -0.5
    assert {x.group for x in s} == {"001", "002"} and s[0].box is not None
    (tmp_path / "001" / "001.json").write_text(json.dumps({"frames": {"00000": {"valence": 12, "arousal": 0}}}))
    with pytest.raises(BadInputError, match=r"001\.json:frames\.00000.*outside its scale -10\.\.10"):
        load_samples(tmp_path, "afewva")


def test_affwild2_annotations(tmp_path):
    ann = tmp_path / "annotations" / "Train_Set"
    ann.mkdir(parents=True)
    for n in (1, 2, 4):
        _img(tmp_path / "cropped_aligned" / "vid1" / f"{n:05d}.jpg")
    (ann / "vid1.txt").write_text("valence,arousal\n0.5,0.2\n-5,-5\n0.1,-5\n-0.3,0.4\n")
    s = load_samples(ann, "affwild2")
    # frame 2 not annotated, frame 3 has no image; frame 4 kept
    assert [x.path.name for x in s] == ["00001.jpg", "00004.jpg"] and s[0].split == "Train_Set" and s[0].group == "vid1"
    (ann / "vid1.txt").write_text("valence,arousal\n0.5,abc\n")
    with pytest.raises(BadInputError, match=r"vid1\.txt:2.*not a number"):
        load_samples(ann, "affwild2")


def test_rating_tables(tmp_path):
    _img(tmp_path / "images" / "Acorns_1.jpg"); _img(tmp_path / "images" / "1050.jpg")
    (tmp_path / "OASIS.csv").write_text("Theme,Category,Valence_mean,Arousal_mean\nAcorns 1,Object,4,7\n")
    s = load_samples(tmp_path / "OASIS.csv")
    assert s[0].targets == {"valence": 0.0, "arousal": 1.0} and s[0].path.name == "Acorns_1.jpg" and s[0].group == "Acorns"
    (tmp_path / "iaps.csv").write_text("IAPS,valmn,aromn\n1050,1,9\n")
    s = load_samples(tmp_path / "iaps.csv", "ratings")
    assert s[0].targets == {"valence": -1.0, "arousal": 1.0} and s[0].target_scale == (1.0, 9.0)
    (tmp_path / "gaped.csv").write_text("file,valence,arousal\n1050,50,100\n")
    with pytest.raises(BadInputError, match="cannot infer the rating scale"):
        load_samples(tmp_path / "gaped.csv", "ratings")
    assert load_samples(tmp_path / "gaped.csv", "ratings", target_scale="0,100")[0].targets == {"valence": 0.0, "arousal": 1.0}


def test_twitter_and_oasis_layouts(tmp_path):
    tw = tmp_path / "tw"
    for f in ("a.jpg", "b.jpg", "c.jpg"):
        _img(tw / "images" / f)
    (tw / "labels.csv").write_text("file,agree3,agree4,agree5\na.jpg,positive,positive,positive\nb.jpg,negative,negative,\n"
                                   "c.jpg,positive,,\n")
    (tw / "duplicates.csv").write_text("group,sha1,file,agree3,agree4,agree5,label_conflict\n1,x,a.jpg,,,,no\n1,x,c.jpg,,,,no\n")
    assert detect_format(tw) == "twitter_i"
    assert len(load_samples(tw)) == 3 and [s.label for s in load_samples(tw, tier="agree4")] == ["positive", "negative"]
    s = load_samples(tw)
    assert s[0].group == s[2].group == "dup:1" and s[1].group == "b.jpg"
    with pytest.raises(ConfigError, match="agree3, agree4, agree5"):
        load_samples(tw, tier="agree6")


@pytest.mark.skipif(not (SHARED / "twitter_i" / "labels.csv").is_file(), reason="shared Twitter I absent")
def test_shared_twitter_i():
    s = load_samples(SHARED / "twitter_i", tier="agree5")
    assert s and {x.label for x in s} == {"positive", "negative"} and all(x.group for x in s)
    assert len({x.group for x in s}) < len(s)  # duplicate groups joined


@pytest.mark.skipif(not (SHARED / "oasis" / "labels.csv").is_file(), reason="shared OASIS absent")
def test_shared_oasis():
    s = load_samples(SHARED / "oasis")
    assert all(-1 <= v <= 1 for x in s for v in x.targets.values()) and s[0].target_scale == (1.0, 7.0)
    assert next(x.group for x in s if x.path.name == "Acorns_1.jpg") == "Acorns"
