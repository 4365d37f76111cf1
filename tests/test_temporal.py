"""Temporal models (issue 18): heads, sequence data in the Aff-Wild2/AFEW-VA/manifest formats, embedding cache,
train/resume/evaluate/export, the streaming `temporal` smoother, and bad input."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emotune import cli
from emotune.errors import BadInputError, CheckpointError, ConfigError
from emotune.temporal.data import holdout_videos, load_sequences, make_windows, video_folds
from emotune.temporal.heads import TEMPORAL_HEADS, TemporalNet, head_config
from emotune.temporal.synthetic import make_affwild2, make_afewva, make_manifest


@pytest.fixture(scope="module")
def aw(tmp_path_factory) -> Path:
    return make_affwild2(tmp_path_factory.mktemp("aw"), videos=5, frames=12, seed=0, subjects=3)


@pytest.fixture(scope="module")
def run(aw, tmp_path_factory) -> Path:
    from emotune.temporal.train import SeqConfig, train_sequence

    root = tmp_path_factory.mktemp("seqrun")
    cfg = SeqConfig(data=str(aw), out=str(root / "run"), epochs=2, window=6, stride=3, hidden=8, split_by="video",
                    cache_dir=str(root / "cache"), progress=False)
    train_sequence(cfg)
    return root / "run"


# ---------------------------------------------------------------------------------------------- heads
@pytest.mark.parametrize("name", sorted(TEMPORAL_HEADS))
def test_heads_are_causal_so_later_frames_and_padding_change_nothing_before_them(name):
    torch.manual_seed(0)
    net = TemporalNet(head_config(name), 5, 3).eval()
    x = torch.randn(2, 9, 5)
    y = x.clone()
    y[:, 6:] = torch.randn(2, 3, 5) * 10  # the future, or padding
    with torch.no_grad():
        a, b = net(x), net(y)
    assert a.shape == (2, 9, 3)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6) and not torch.allclose(a[:, 6:], b[:, 6:])


def test_head_options_are_typed_and_checked():
    assert head_config("tcn", kernel=3, layers=2).receptive_field == 7
    with pytest.raises(ConfigError, match="temporal head gru has no option"):
        head_config("gru", kernel=3)
    with pytest.raises(ConfigError, match="choose one of gru, lstm, tcn"):
        head_config("transformer")
    with pytest.raises(ConfigError, match="hidden 0"):
        head_config("lstm", hidden=0)


# ---------------------------------------------------------------------------------------------- data
def test_affwild2_videos_keep_frames_in_order_with_missing_markers_and_gaps(tmp_path):
    ann = make_affwild2(tmp_path, videos=2, frames=10)
    f = ann / "001.txt"
    lines = f.read_text().splitlines()
    lines[3] = "-5,0.5"  # frame 3: valence not annotated (-5): NaN, the frame stays
    lines[5] = "-5,-5"  # frame 5: neither: left out by the format
    f.write_text("\n".join(lines + ["0.1,0.1"] * 4) + "\n")  # annotation longer than the frames: no image, left out
    (tmp_path / "cropped_aligned" / "001" / "00008.jpg").unlink()  # no face crop for frame 8: a gap
    data = load_sequences(ann, "affwild2")
    v = next(v for v in data.videos if v.name == "001")
    assert v.frames.tolist() == [1, 2, 3, 4, 6, 7, 9, 10]
    assert np.isnan(v.targets[2, 0]) and not np.isnan(v.targets[2, 1])
    assert v.segments(max_gap=5) == [(0, 8)] and v.segments(max_gap=0) == [(0, 4), (4, 6), (6, 8)]


def test_afewva_clips_are_read_on_their_scale(tmp_path):
    root = make_afewva(tmp_path, videos=2, frames=6)
    data = load_sequences(root, "auto")
    assert [len(v) for v in data.videos] == [6, 6] and data.targets == ("valence", "arousal")
    raw = json.loads((root / "001" / "001.json").read_text())["frames"]["00002"]["valence"]
    assert data.videos[0].targets[2, 0] == pytest.approx(raw / 10) and data.videos[0].boxes[0] is not None


def test_manifest_sorts_rows_and_refuses_a_repeated_frame_naming_file_and_frame(tmp_path):
    m = make_manifest(tmp_path, videos=2, frames=5)
    rows = m.read_text().splitlines()
    m.write_text("\n".join([rows[0], *reversed(rows[1:])]) + "\n")  # non-monotonic: put in frame order
    data = load_sequences(m, "manifest", targets=("valence", "arousal"))
    assert all(v.frames.tolist() == list(range(5)) for v in data.videos) and data.labels
    rows.insert(3, rows[2])
    m.write_text("\n".join(rows) + "\n")
    with pytest.raises(BadInputError, match=r"manifest.csv:4: video v00: frame 1 appears twice"):
        load_sequences(m, "manifest", targets=("valence",))
    m.write_text(rows[0] + "\nv0,x,s0,v00/00000.png,happy,0.1,0.1\n")
    with pytest.raises(BadInputError, match=r"manifest.csv:2: frame 'x' is not a whole number"):
        load_sequences(m, "manifest", targets=("valence",))


def test_out_of_scale_values_name_file_and_line(tmp_path):
    ann = make_affwild2(tmp_path, videos=1, frames=4)
    f = ann / "001.txt"
    f.write_text(f.read_text().replace(f.read_text().splitlines()[2], "1.7,0.0", 1))
    with pytest.raises(BadInputError, match=r"001.txt:3: valence: 1.7 is outside its scale"):
        load_sequences(ann, "affwild2")


def test_windows_cover_every_frame_and_a_short_video_is_one_padded_window(tmp_path):
    data = load_sequences(make_affwild2(tmp_path, videos=2, frames=11), "affwild2")
    short = data.videos[1]
    short.paths, short.frames = short.paths[:3], short.frames[:3]
    wins = make_windows(data.videos, window=4, stride=3)
    covered = {(w.video, w.start + i) for w in wins for i in range(w.length)}
    assert covered == {(0, i) for i in range(11)} | {(1, i) for i in range(3)}
    assert [w for w in wins if w.video == 1] == [type(wins[0])(1, 0, 3)]
    with pytest.raises(ConfigError, match="--window 0"):
        make_windows(data.videos, 0, 1)


def test_splits_and_folds_never_separate_a_subject(aw):
    data = load_sequences(aw, "affwild2")
    for v in data.videos:
        v.subject = v.name.split("-")[1]
    tr, va = holdout_videos(data.videos, 0.34, "subject", 0)
    assert {data.videos[i].subject for i in tr}.isdisjoint({data.videos[i].subject for i in va})
    folds = video_folds(data.videos, 3, "subject")
    assert sorted(i for _, te in folds for i in te) == list(range(len(data.videos)))
    for trf, te in folds:
        assert {data.videos[i].subject for i in trf}.isdisjoint({data.videos[i].subject for i in te})


# ---------------------------------------------------------------------------------------------- cache
def test_embedding_cache_is_keyed_by_the_encoders_weights_and_frames(aw, tmp_path):
    from emotune.temporal.embed import EmbeddingCache, embed_videos, load_encoder

    data = load_sequences(aw, "affwild2")
    vids = data.videos[:2]
    enc = load_encoder("default")
    cache = EmbeddingCache(tmp_path, enc.key())
    first = embed_videos(enc, vids, cache)
    again = EmbeddingCache(tmp_path, enc.key())
    second = embed_videos(enc, vids, again)
    assert (cache.misses, again.hits) == (2, 2) and np.array_equal(first[0], second[0])
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name or p.name.startswith(".")]
    with torch.no_grad():  # changed weights: a new key, nothing reused
        next(enc.parameters()).add_(0.01)
    assert enc.key() != cache.key
    # a changed frame file: that video is embedded again
    from PIL import Image

    Image.new("RGB", (48, 48), 128).save(vids[0].paths[0])
    third = EmbeddingCache(tmp_path, cache.key)
    embed_videos(load_encoder("default"), vids, third)
    assert (third.misses, third.hits) == (1, 1)


# ---------------------------------------------------------------------------------------------- train, resume, evaluate, export
def test_training_writes_a_bound_sequence_checkpoint_that_evaluates_and_resumes(run, aw):
    from emotune.models import read_card
    from emotune.temporal.model import load_sequence_model
    from emotune.temporal.train import SeqConfig, evaluate_sequence, train_sequence

    card, _ = read_card(run)
    assert card.temporal["head"]["type"] == "gru" and card.temporal["window"] == 6 and card.target_names == ["valence", "arousal"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["cache"]["misses"] == 5 and summary["epochs_run"] == 2
    model, _ = load_sequence_model(run)
    ev = evaluate_sequence(run, aw, out=run / "eval", cache_dir=str(run.parent / "cache"))
    assert set(ev["video"]) == {"video_valence_ccc", "video_arousal_ccc", "video_ccc"} and "rmse" in ev["val"]
    assert (run / "eval" / "eval.md").is_file()
    # resume: two more epochs carry on from the state
    cfg = SeqConfig(data=str(aw), out=str(run), epochs=4, window=6, stride=3, hidden=8, split_by="video",
                    cache_dir=str(run.parent / "cache"), progress=False, resume=True)
    res = train_sequence(cfg)
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="--resume cannot change window"):
        train_sequence(SeqConfig(**{**cfg.__dict__, "window": 8}))
    with pytest.raises(ConfigError, match="already holds a run"):
        train_sequence(SeqConfig(**{**cfg.__dict__, "resume": False}))


def test_an_edited_temporal_card_is_refused(run, tmp_path):
    import shutil

    from emotune.models import load_checkpoint

    copy = tmp_path / "r"
    shutil.copytree(run, copy)
    card = json.loads((copy / "best.json").read_text())
    card["temporal"]["window"] = 99
    (copy / "best.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="temporal"):
        load_checkpoint(copy)


@pytest.mark.parametrize("inputs", ["embeddings", "frames"])
def test_onnx_export_matches_pytorch(run, tmp_path, inputs):
    from emotune.temporal.export import export_sequence

    res = export_sequence(run, tmp_path / "seq.onnx", inputs, samples=2)
    assert res["max_abs_diff"] < 1e-4 and res["outputs"] == ["targets"]
    assert json.loads((tmp_path / "seq.json").read_text())["temporal"]["window"] == 6


def test_classes_and_targets_from_a_manifest_and_cv_by_subject(tmp_path):
    from emotune.temporal.train import SeqConfig, cv_sequence

    m = make_manifest(tmp_path / "m", videos=6, frames=8, subjects=3)
    out = cv_sequence(SeqConfig(data=str(m), targets=("valence",), out=str(tmp_path / "cv"), epochs=1, window=4, stride=2,
                                head="tcn", channels=8, layers=2, cache_dir=str(tmp_path / "cache"), progress=False), 3)
    assert len(out["folds"]) == 3 and "test_val_ccc" in out["summary"] and "test_val_macro_f1" in out["summary"]
    assert (tmp_path / "cv" / "cv.json").is_file()


# ---------------------------------------------------------------------------------------------- prediction
def test_streaming_temporal_smoother_matches_offline_windows_and_adds_target_columns(run, aw):
    from emotune.inference.smoothing import VideoSmoother, smoother_config
    from emotune.temporal.embed import read_frame
    from emotune.temporal.model import load_sequence_model, predict_embeddings
    from emotune.temporal.embed import embed_frames

    model, card = load_sequence_model(run)
    v = load_sequences(aw, "affwild2").videos[0]
    crops = [read_frame(p, None, "") for p in v.paths]
    for delay in (0, 2):
        sm = VideoSmoother.create(smoother_config("temporal", run=str(run), delay=delay), 1 / 30)
        assert sm.bind(["happy", "sad"], []) == ["valence", "arousal"]
        got = []
        for i, c in enumerate(crops):
            raw = np.array([[0.3, 0.7]])
            got += sm.push(i / 30, [7], raw, SimpleNamespace(crops=[c], i=i))
        got += sm.flush()
        out = np.concatenate([p for _, p in got])
        assert [fr.i for fr, _ in got] == list(range(len(crops))) and out.shape == (len(crops), 4)
        assert np.allclose(out[:, :2], [0.3, 0.7])  # the sequence model has no classes: per-frame classes pass through
        offline = np.clip(predict_embeddings(model.temporal, embed_frames(model.encoder, crops), 6, delay), -1, 1)
        assert np.allclose(out[:, 2:], offline, atol=1e-5)


def test_predict_temporal_model_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(b"")
    rc = cli.main(["predict", str(tmp_path / "a.jpg"), "--temporal-model", str(tmp_path / "nope"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--temporal-model" in err and "needs a sequence model" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------- command line
def test_cli_seq_train_and_export(aw, tmp_path, capsys):
    rc = cli.main(["seq", "train", "--data", str(aw), "--out", str(tmp_path / "r"), "--epochs", "1", "--window", "4",
                   "--stride", "2", "--head", "lstm", "--hidden", "8", "--split-by", "video", "--cache-dir", str(tmp_path / "c"),
                   "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rc = cli.main(["seq", "export", str(tmp_path / "r"), "-o", str(tmp_path / "r.onnx")])
    assert rc == 0 and "max |diff|" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["--data", "{missing}"], "no frame folder|expected a folder"),
    (["--data", "{aw}", "--stride", "9", "--window", "4"], "--stride 9 is longer than --window 4"),
    (["--data", "{aw}", "--head", "gru", "--kernel", "3"], "temporal head gru has no option"),
])
def test_cli_seq_bad_options_are_one_line_errors(argv, match, aw, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "none", aw=aw) for a in argv]
    rc = cli.main(["seq", "train", *argv, "--out", str(tmp_path / "r"), "--cache-dir", "none", "--no-progress"])
    err = capsys.readouterr().err
    import re

    assert rc == 2 and re.search(match, err) and len(err.strip().splitlines()) == 1, err


def test_finetune_trains_the_encoder_end_to_end(tmp_path):
    from emotune.temporal.embed import load_encoder
    from emotune.temporal.model import load_sequence_model
    from emotune.temporal.train import SeqConfig, train_sequence

    ann = make_affwild2(tmp_path / "d", videos=3, frames=5)
    train_sequence(SeqConfig(data=str(ann), out=str(tmp_path / "r"), epochs=1, window=4, stride=2, hidden=4, split_by="video",
                             finetune=True, encoder_lr=1e-2, batch_size=4, progress=False, val_fraction=0.34))
    model, card = load_sequence_model(tmp_path / "r" / "last.json")
    assert card.temporal["finetune"] is True
    assert model.encoder.key() != load_encoder("default").key()  # the encoder's weights moved


def test_predict_with_a_temporal_model_writes_its_columns_from_the_first_row(run, tmp_path):
    """`emotune predict IMAGE VIDEO --temporal-model RUN -o out.csv`: the file's header has the temporal model's
    valence/arousal from the start (an image row comes first), and the video's face rows carry finite values."""
    import cv2
    import pandas as pd

    from emotune.data.synthetic import draw_face

    rng = np.random.default_rng(3)
    image = tmp_path / "a.png"
    draw_face("happy", 64, rng).convert("RGB").save(image)
    video = tmp_path / "b.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 64))
    for i in range(12):
        w.write(cv2.cvtColor(np.asarray(draw_face("sad" if i % 2 else "happy", 64, rng).convert("RGB")), cv2.COLOR_RGB2BGR))
    w.release()
    out = tmp_path / "out.csv"
    rc = cli.main(["predict", str(image), str(video), "--detector", "none", "--temporal-model", str(run), "-o", str(out),
                   "--no-progress"])
    assert rc == 0
    df = pd.read_csv(out)
    assert {"valence", "arousal"} <= set(df.columns)
    frames = df[df["frame"].notna()]
    assert len(frames) == 12 and frames[["valence", "arousal"]].notna().all().all()
    assert frames["valence"].between(-1, 1).all()


@pytest.mark.parametrize("argv", [["evaluate", "--data", "DATA"], ["export", "-o", "OUT/m.onnx"], ["predict", "IMG"]])
def test_image_commands_refuse_a_sequence_model_naming_emotune_seq(run, tmp_path, capsys, argv):
    from PIL import Image

    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    argv = [a.replace("DATA", str(tmp_path)).replace("OUT", str(tmp_path)).replace("IMG", str(img)) for a in argv]
    rc = cli.main([*argv, "--model", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "sequence model" in err[0] and "emotune seq" in err[0]
