"""Video over time: smoothers (registry, EMA, fixed-lag HMM), per-track streaming, frame times, timelines, summaries,
`predict --smooth`, and the stability of the real face videos in ../shared/videos."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from emotune import cli
from emotune.errors import ConfigError
from emotune.inference import Recognizer
from emotune.inference.output import (
    frame_durations,
    plot_timeline,
    summarise_video,
    target_columns,
    write_summary,
)
from emotune.inference.smoothing import (
    DEFAULT_SMOOTHER,
    SMOOTHERS,
    EMAConfig,
    EMATrack,
    HMMConfig,
    VideoSmoother,
    describe,
    raw_columns,
    resolve_smooth,
    smooth_sequence,
    smooth_table,
    smoother_config,
)
from emotune.inference.video import FrameClock, VideoInfo, iter_timed_frames
from emotune.models import ModelCard, create_model, save_checkpoint
from emotune.taxonomy import BASIC7

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LABELS = list(BASIC7)
K = len(LABELS)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def changes(labels) -> int:
    labels = np.asarray(labels)
    return int((labels[1:] != labels[:-1]).sum())


def flicker(n: int = 90, seed: int = 0, p_flip: float = 0.3, segments=(0, 3, 4)) -> tuple[np.ndarray, np.ndarray]:
    """A face whose true class changes twice, seen by a classifier that is wrong on `p_flip` of the frames."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(segments, -(-n // len(segments)))[:n]
    p = np.full((len(truth), K), 0.2 / (K - 1))
    p[np.arange(len(truth)), truth] = 0.8
    for i in np.flatnonzero(rng.random(len(truth)) < p_flip):
        wrong = rng.choice([c for c in range(K) if c != truth[i]])
        p[i] = 0.25 / (K - 1)
        p[i, wrong] = 0.75
    return truth, p


# --------------------------------------------------------------------------------------------- registry and configs


def test_registry_has_named_smoothers_with_typed_configs():
    assert {"ema", "hmm", "temporal"} <= set(SMOOTHERS)
    assert smoother_config("default").name == DEFAULT_SMOOTHER == "hmm"
    assert smoother_config("ema", halflife=0.2) == EMAConfig(halflife=0.2)
    assert smoother_config("hmm", delay=3, alpha=None) == HMMConfig(delay=3)  # None: not given
    assert resolve_smooth(None) is None and resolve_smooth(False) is None
    assert resolve_smooth(True) == HMMConfig() and resolve_smooth("ema") == EMAConfig()
    assert resolve_smooth(HMMConfig(delay=2)).delay == 2
    assert describe(HMMConfig()) == "hmm(switch_rate=1.0, delay=8, floor=0.05)"


@pytest.mark.parametrize("name, options, match", [
    ("kalman", {}, "unknown smoother; choose one of ema, hmm, temporal"),
    ("ema", {"delay": 3}, "--smooth-delay: the ema smoother has no such option"),
    ("hmm", {"alpha": 0.5}, "--smooth-alpha: the hmm smoother"),
    ("ema", {"halflife": -1.0}, "--smooth-halflife -1.0"),
    ("ema", {"halflife": float("nan")}, "--smooth-halflife nan"),
    ("ema", {"alpha": 0.0}, "--smooth-alpha 0.0"),
    ("ema", {"alpha": 1.5}, "--smooth-alpha 1.5"),
    ("hmm", {"delay": -1}, "--smooth-delay -1"),
    ("hmm", {"switch_rate": 0.0}, "--smooth-switch-rate 0.0"),
])
def test_bad_smoother_settings_are_one_line_config_errors(name, options, match):
    with pytest.raises(ConfigError, match=match):
        smoother_config(name, **options)


def test_temporal_model_is_a_registered_hook_that_says_what_it_needs():
    cfg = smoother_config("temporal", run="runs/seq")
    with pytest.raises(ConfigError, match="--temporal-model runs/seq: needs a sequence model"):
        VideoSmoother.create(cfg, 1 / 30)


# --------------------------------------------------------------------------------------------- EMA


def test_ema_halves_by_elapsed_time_whatever_the_frame_rate():
    cfg = EMAConfig(halflife=0.5)
    a, b = np.eye(K)[0], np.eye(K)[1]
    for fps in (4, 10, 30, 60):  # class 0 at t = 0 s, class 1 after it: at t = 0.5 s exactly half-way
        n = int(fps * 0.5)
        t = np.arange(n + 1) / fps
        p = np.array([a] + [b] * n)
        out = smooth_sequence(t, p, cfg)
        assert out[-1][1] == pytest.approx(0.5, abs=1e-9), fps
    # alpha: the weight of a new frame one frame interval later, the same curve as the half-life it stands for
    alpha = smooth_sequence(np.arange(4) / 10, np.array([a, b, b, b]), EMAConfig(alpha=0.5), frame_dt=0.1)
    np.testing.assert_allclose(alpha[1:, 1], [0.5, 0.75, 0.875])
    assert EMAConfig(alpha=0.5).halflife_s(0.1) == pytest.approx(0.1)
    np.testing.assert_allclose(smooth_sequence(np.arange(3) / 10, np.array([a, b, a]), EMAConfig(alpha=1.0)), [a, b, a])


def test_ema_time_gaps_frame_skipping_and_broken_times():
    a, b = np.eye(K)[0], np.eye(K)[1]
    gap = smooth_sequence(np.array([0.0, 0.1, 2.1]), np.array([a, a, b]), EMAConfig(halflife=0.5), frame_dt=0.1)
    assert gap[-1][0] == pytest.approx(0.5 ** 4)  # 2 s without the face: the old state weighs 1/16
    # times that repeat or go backwards count as one frame interval, never as no time (frozen) or negative
    steady = smooth_sequence(np.array([0.0, 0.1, 0.2, 0.3]), np.array([a, b, b, a]), "ema", frame_dt=0.1)
    broken = smooth_sequence(np.array([0.0, 0.1, 0.1, 0.05]), np.array([a, b, b, a]), "ema", frame_dt=0.1)
    np.testing.assert_allclose(broken, steady)
    nan = smooth_sequence(np.array([0.0, np.nan, 0.2, 0.3]), np.array([a, b, b, a]), "ema", frame_dt=0.1)
    assert np.isfinite(nan).all()
    t = EMATrack(0.5, 0.1)
    t.push(0.0, a)
    assert t.estimate(0) is not None and (t.estimate(0) == a).all()  # one frame: its own probabilities


# --------------------------------------------------------------------------------------------- HMM


def _forward_backward(p: np.ndarray, t: np.ndarray, cfg: HMMConfig) -> np.ndarray:
    """The full (offline) posterior with dense matrices: what fixed lag must equal once the lag covers the video."""
    e = (1 - cfg.floor) * p / p.sum(1, keepdims=True) + cfg.floor / K
    T = [None] + [np.exp(-cfg.switch_rate * dt) * np.eye(K) + (1 - np.exp(-cfg.switch_rate * dt)) / K for dt in np.diff(t)]
    alpha = [e[0] / K]
    for i in range(1, len(p)):
        alpha.append(e[i] * (alpha[-1] @ T[i]))
    beta = [np.ones(K)]
    for i in range(len(p) - 1, 0, -1):
        beta.insert(0, T[i] @ (e[i] * beta[0]))
    g = np.array(alpha) * np.array(beta)
    return g / g.sum(1, keepdims=True)


def test_hmm_fixed_lag_equals_forward_backward_when_the_lag_covers_the_video():
    _, p = flicker(60)
    t = np.cumsum(np.r_[0, np.random.default_rng(3).uniform(0.02, 0.09, 59)])  # variable frame rate
    cfg = HMMConfig(switch_rate=1.0, delay=100)
    np.testing.assert_allclose(smooth_sequence(t, p, cfg), _forward_backward(p, t, cfg), atol=1e-9)


@pytest.mark.parametrize("delay", [0, 4])
def test_hmm_row_k_uses_no_frame_after_k_plus_delay(delay):
    _, p = flicker(40)
    t = np.arange(40) / 25
    base = smooth_sequence(t, p, HMMConfig(delay=delay))
    q = p.copy()
    q[20 + delay + 1:] = np.roll(q[20 + delay + 1:], 1, axis=1)  # change the future beyond the lag
    other = smooth_sequence(t, q, HMMConfig(delay=delay))
    np.testing.assert_allclose(other[:21], base[:21])
    assert not np.allclose(other[21 + delay:], base[21 + delay:])


def test_smoothers_halve_label_changes_on_a_flickering_face_and_keep_the_true_switches():
    truth, p = flicker(300, p_flip=0.25)
    t = np.arange(len(truth)) / 30
    raw = changes(p.argmax(1))
    for smooth in ("ema", "hmm"):
        q = smooth_sequence(t, p, smooth)
        np.testing.assert_allclose(q.sum(1), 1, atol=1e-9)
        assert changes(q.argmax(1)) <= raw / 2, smooth
        assert (q.argmax(1) == truth).mean() > (p.argmax(1) == truth).mean(), smooth  # steadier and closer to the truth
    hmm = smooth_sequence(t, p, "hmm").argmax(1)
    assert changes(hmm) == 2  # exactly the two true changes
    assert (hmm == truth).mean() > 0.95


# --------------------------------------------------------------------------------------------- streaming per track


def test_video_smoother_streams_in_order_at_most_delay_frames_late():
    _, p = flicker(30)
    sm = VideoSmoother.create(HMMConfig(delay=3), 1 / 30)
    got, late = [], []
    for i in range(30):
        tracks = [] if i in (10, 11) else [0]  # face-less frames go through in order too
        out = sm.push(i / 30, tracks, p[i:i + 1] if tracks else np.zeros((0, K)), payload=i)
        late += [i - j for j, _ in out]
        got += out
    got += sm.flush()
    assert [j for j, _ in got] == list(range(30)) and max(late) == 3 and min(late) == 3
    assert [len(s) for j, s in got if j in (10, 11)] == [0, 0]
    ema = VideoSmoother.create("ema", 1 / 30)
    assert [j for j, _ in ema.push(0.0, [0], p[:1], payload="now")] == ["now"]  # no delay


def test_tracks_are_smoothed_apart_and_a_new_id_starts_fresh():
    _, a = flicker(40, seed=1)
    _, b = flicker(40, seed=2, segments=(5, 6))
    t = np.arange(40) / 25
    alone = smooth_sequence(t, a, "ema")
    sm = VideoSmoother.create("ema", 1 / 25)
    out = []
    for i in range(40):
        out += sm.push(t[i], [7, 3], np.stack([a[i], b[i]]), i)  # two faces in every frame
    np.testing.assert_allclose(np.array([s[0] for _, s in out]), alone)  # track 7 never sees track 3
    # track 7 gone; a reappearing face has a new id: its first row is its own frame, not a blend with track 7
    (_, s), = sm.push(2.0, [8], b[:1], "new")
    np.testing.assert_allclose(s[0], b[0])
    # faces without a track id are tracks of one frame
    (_, s), = sm.push(2.1, [None], a[:1], "untracked")
    np.testing.assert_allclose(s[0], a[0])


def test_states_of_vanished_tracks_are_dropped():
    sm = VideoSmoother.create("ema", 1 / 30, forget_after=5)
    p = np.full((1, K), 1 / K)
    for i in range(100):
        sm.push(i / 30, [i], p)  # a new face every frame, each seen once
    assert len(sm._tracks) <= 6


def test_a_track_of_one_frame_and_an_empty_video():
    p = np.eye(K)[2:3] * 0.9 + 0.1 / K
    for smooth in ("ema", "hmm"):
        q = smooth_sequence(np.array([0.0]), p, smooth)
        assert q.shape == (1, K) and q.argmax() == 2
        assert smooth_sequence(np.zeros(0), np.zeros((0, K)), smooth).shape == (0, K)
        assert VideoSmoother.create(smooth, 1 / 30).flush() == []


# --------------------------------------------------------------------------------------------- frame times


class _TimedCap:
    """A VideoCapture stand-in that also says each frame's presentation time (CAP_PROP_POS_MSEC)."""

    def __init__(self, ms: list[float]):
        self.ms, self.pos = ms, 0

    def read(self):
        self.pos += 1
        ok = self.pos <= len(self.ms)
        return ok, (np.zeros((4, 4, 3), np.uint8) if ok else None)

    def grab(self):
        return self.read()[0]

    def get(self, prop):
        assert prop == cv2.CAP_PROP_POS_MSEC
        return self.ms[self.pos - 1]

    def release(self):
        pass


def test_frame_times_are_the_decoders_and_forced_to_increase():
    vfr = [0.0, 33.3, 66.7, 116.7, 166.7, 183.3]  # 30 fps, then 20, then 60: variable frame rate
    info = VideoInfo("vfr", 30.0, 6, 4, 4)
    assert [t for _, t, _ in iter_timed_frames(_TimedCap(vfr), info)] == [0.0, 0.0333, 0.0667, 0.1167, 0.1667, 0.1833]
    assert info.problems == []
    assert [t for _, t, _ in iter_timed_frames(_TimedCap(vfr), VideoInfo("vfr", 30.0, 6, 4, 4), step=2)] == [0.0, 0.0667, 0.1667]
    info = VideoInfo("odd", 10.0, 5, 4, 4)
    times = [t for _, t, _ in iter_timed_frames(_TimedCap([0.0, 100.0, 50.0, 100.0, 400.0]), info)]
    assert times == [0.0, 0.1, 0.2, 0.3, 0.4]  # backwards and repeated times: one frame interval after the last
    assert any("2 frame time(s) did not increase" in p for p in info.problems)
    clock = FrameClock(25.0)  # a decoder that says nothing (0 after the first frame, NaN): index / fps
    assert [clock.time(i, ms) for i, ms in enumerate([0.0, 0.0, float("nan"), None])] == [0.0, 0.04, 0.08, 0.12]


@pytest.mark.shared
def test_a_real_variable_frame_rate_video_gets_its_true_times():
    path = SHARED / "videos" / "face_noface.mov"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    from emotune.inference.video import open_video

    cap, info = open_video(path)
    got = [(i, t) for i, t, _ in iter_timed_frames(cap, info)]
    idx, t = np.array(got).T
    assert len(got) == 169 and (np.diff(t) > 0).all() and info.problems == []
    assert t[-1] == pytest.approx(6.3604, abs=1e-3)  # index / nominal fps would say 6.36 s... at frame 168: 6.36
    assert np.abs(t - idx / info.fps).max() > 0.2  # 30 fps then 24 fps: the nominal 26.4 fps is wrong for both


# --------------------------------------------------------------------------------------------- recognizer and predict



@pytest.fixture(scope="module")
def card(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("test_efficientnet", num_classes=K, pretrained=None, img_size=32, in_chans=3)
    with torch.no_grad():
        model.get_classifier().weight.mul_(20)  # sharper probabilities: labels change between frames
    card = ModelCard(backbone="test_efficientnet", labels=LABELS, input_size=32, mean=[0.5] * 3, std=[0.25] * 3,
                     channels="rgb", in_chans=3)
    return save_checkpoint(tmp_path_factory.mktemp("models") / "rgb", model.eval(), card)


@pytest.fixture(scope="module")
def whole(card, emotune_cache) -> Recognizer:
    """Every frame is one face (detector none): a tracked face in every frame, no shared data needed."""
    return Recognizer(card, detector="none", device="cpu", threads=1)


def _noise_video(path: Path, n: int = 40, fps: float = 20.0, blank: bool = False) -> Path:
    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    assert w.isOpened()
    for i in range(n):
        frame = np.zeros((48, 64, 3), np.uint8) if blank else rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        w.write(frame)
    w.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return _noise_video(tmp_path_factory.mktemp("clips") / "noise.mp4")


def test_predict_video_smooth_keeps_raw_columns_and_equals_offline_smoothing(whole, clip):
    raw = whole.predict_video(clip)
    assert not any(c.startswith("raw_") for c in raw.columns)
    assert changes(raw["label"]) > 5  # a flickering "face": something to smooth
    for smooth in ("ema", "hmm", True):
        df = whole.predict_video(clip, smooth=smooth)
        assert list(df.columns[-len(raw_columns(LABELS)):]) == raw_columns(LABELS)
        assert df["frame"].tolist() == raw["frame"].tolist()  # every frame comes out, in order, after the lag
        np.testing.assert_allclose(df[[f"raw_{c}" for c in LABELS]].to_numpy(float), raw[LABELS].to_numpy(float), atol=1e-5)
        assert (df["raw_label"] == raw["label"]).all()
        assert (df["label"] == df[LABELS].idxmax(axis=1)).all()  # label: the smoothed argmax
        np.testing.assert_allclose(df[LABELS].sum(1), 1, atol=1e-4)
        assert changes(df["label"]) < changes(raw["label"])
        offline = smooth_table(raw, LABELS, smooth)  # the same numbers from a table afterwards
        np.testing.assert_allclose(offline[LABELS].to_numpy(float), df[LABELS].to_numpy(float), atol=1e-4)  # 5-digit rows


def test_frame_skipping_smooths_by_elapsed_time(whole, clip):
    df = whole.predict_video(clip, every=4, smooth="ema")
    assert df["frame"].tolist() == list(range(0, 40, 4))
    np.testing.assert_allclose(df["time"], df["frame"] / 20, atol=1e-4)
    p = df[[f"raw_{c}" for c in LABELS]].to_numpy(float)
    w = 0.5 ** (0.2 / EMAConfig().halflife)  # 4 frames at 20 fps: 0.2 s between rows
    np.testing.assert_allclose(df[LABELS].to_numpy(float)[1], w * p[0] + (1 - w) * p[1], atol=2e-5)


def test_a_video_without_faces_smooths_to_empty_rows_and_an_empty_summary(card, tmp_path, emotune_cache):
    rec = Recognizer(card, device="cpu", threads=1)  # YuNet: nothing in black frames
    df = rec.predict_video(_noise_video(tmp_path / "black.mp4", n=6, blank=True), smooth=True)
    assert len(df) == 6 and df["label"].isna().all() and df[raw_columns(LABELS)].isna().all().all()
    s = summarise_video(df, LABELS)
    assert len(s) == 1 and s["frames"].iloc[0] == 0 and s["track"].isna().all()
    assert plot_timeline(df, LABELS, tmp_path / "t.png") is None and not (tmp_path / "t.png").exists()


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_predict_smooth_writes_table_timeline_and_summaries(card, clip, tmp_path, capsys, emotune_cache):
    out = tmp_path / "out.csv"
    rc, _, err = run_cli(capsys, "predict", clip, "--model", card, "--detector", "none", "--smooth", "--no-progress",
                         "-o", out, "--timeline", tmp_path / "tl", "--annotate", tmp_path / "ann")
    assert rc == 0, err
    cap = cv2.VideoCapture(str(tmp_path / "ann" / "noise_emotune.mp4"))  # frames held for the lag are all written
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    cap.release()
    df = pd.read_csv(out)
    assert set(raw_columns(LABELS)) <= set(df.columns) and len(df) == 40
    assert (df["label"] == df[LABELS].idxmax(axis=1)).all() and (df["raw_label"] == df[[f"raw_{c}" for c in LABELS]]
                                                                  .rename(columns=lambda c: c[4:]).idxmax(axis=1)).all()
    assert (tmp_path / "tl" / "noise_timeline.png").stat().st_size > 1000
    s = pd.read_csv(tmp_path / "tl" / "noise.summary.csv")
    assert len(s) == 1 and s["frames"].iloc[0] == 40 and s[[f"share_{c}" for c in LABELS]].sum(1).iloc[0] == pytest.approx(1)
    j = json.loads((tmp_path / "tl" / "noise.summary.json").read_text())
    assert j["kind"] == "emotune-video-summary/1" and j["smoothing"].startswith("hmm(") and j["tracks"][0]["frames"] == 40

    # ema with a half-life; one --summary file; an option alone picks the smoother that takes it
    rc, _, err = run_cli(capsys, "predict", clip, "--model", card, "--detector", "none", "--smooth", "ema",
                         "--smooth-halflife", "0.2", "--no-progress", "-o", tmp_path / "e.jsonl", "--summary", tmp_path / "s.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "s.json").read_text())["smoothing"] == "ema(halflife=0.2, alpha=None)"
    rc, _, err = run_cli(capsys, "predict", clip, "--model", card, "--detector", "none", "--smooth-delay", "2",
                         "--no-progress", "-o", tmp_path / "d.csv", "--every", "5")
    assert rc == 0, err
    assert "raw_label" in pd.read_csv(tmp_path / "d.csv") and "hmm(" in describe(smoother_config("default"))


@pytest.mark.parametrize("argv, match", [
    (["--smooth", "hmm", "--smooth-alpha", "0.3"], "--smooth-alpha: the hmm smoother has no such option"),
    (["--smooth", "nope"], "--smooth nope: unknown smoother"),
    (["--smooth-delay", "-2"], "--smooth-delay -2"),
    (["--temporal-model", "runs/seq"], "--temporal-model runs/seq: needs a sequence model"),
    (["--summary", "s.txt"], "name a .csv or .json file"),
])
def test_cli_bad_smoothing_options_fail_in_one_line_before_work(argv, match, clip, card, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["predict", str(clip), "--model", str(card), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------- timelines and summaries


def _table() -> pd.DataFrame:
    """Two tracks over uneven frame times, a face-less frame, valence/arousal columns, smoothed with raw_ columns."""
    rows = []
    times = [0.0, 0.1, 0.2, 0.4, 0.5, 0.6]
    plan = {0: ["happy", "happy", "sad", None, "happy", "happy"], 1: [None, None, "angry", None, None, None]}
    for f, t in enumerate(times):
        any_face = False
        for track, labs in plan.items():
            if labs[f] is None:
                continue
            any_face = True
            p = {c: 0.9 if c == labs[f] else 0.1 / (K - 1) for c in LABELS}
            rows.append({"file": "v.mp4", "frame": f, "time": t, "track": track, **p, "label": labs[f],
                         "valence": 0.5 if labs[f] == "happy" else -0.5, "arousal": 0.1,
                         **{f"raw_{c}": v for c, v in p.items()}, "raw_label": labs[f]})
        if not any_face:
            rows.append({"file": "v.mp4", "frame": f, "time": t, "track": None, "label": None})
    df = pd.DataFrame(rows)
    df["track"] = df["track"].astype("Int64")
    return df


def test_summary_time_shares_means_and_one_frame_tracks():
    df = _table()
    assert target_columns(df.columns, LABELS) == ["valence", "arousal"]
    np.testing.assert_allclose(frame_durations(df["time"]).to_numpy(), [0.1, 0.1, 0.2, 0.1, 0.1, 0.1])
    s = summarise_video(df, LABELS).set_index("track")
    t0 = s.loc[0]
    # happy 0.1 + 0.1 + 0.1 + 0.1 s, sad 0.2 s (the face-less frame after it counts for the frame before)
    assert t0["seconds"] == pytest.approx(0.6) and t0["frames"] == 5 and t0["label"] == "happy"
    assert t0["share_happy"] == pytest.approx(4 / 6, abs=1e-4) and t0["share_sad"] == pytest.approx(2 / 6, abs=1e-4)
    assert t0["mean_valence"] == pytest.approx(0.5 * 4 / 6 - 0.5 * 2 / 6, abs=1e-4) and t0["mean_arousal"] == pytest.approx(0.1)
    t1 = s.loc[1]  # a track of one frame
    assert t1["frames"] == 1 and t1["label"] == "angry" and t1["share_angry"] == 1 and t1["first_time"] == t1["last_time"]
    one = summarise_video(df[df["frame"] == 0], LABELS)  # a video of one frame: no duration, shares still defined
    assert one["seconds"].iloc[0] == 0 and one["share_happy"].iloc[0] == 1


def test_write_summary_csv_and_json(tmp_path):
    s = summarise_video(_table(), LABELS)
    write_summary(s, tmp_path / "s.csv", LABELS)
    assert pd.read_csv(tmp_path / "s.csv")["frames"].tolist() == [5, 1]
    j = json.loads(write_summary(s, tmp_path / "s.json", LABELS, "hmm(...)").read_text())
    assert j["kind"] == "emotune-video-summary/1" and j["labels"] == LABELS and len(j["tracks"]) == 2


def test_timeline_draws_raw_faint_smoothed_solid_and_targets(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), real(fig, *a, **k))[1])
    path = plot_timeline(_table(), LABELS, tmp_path / "t.png", "v.mp4")
    assert path.stat().st_size > 1000
    axes = drawn[0].axes
    assert len(axes) == 4  # per track: probabilities, then valence/arousal
    lines = axes[0].get_lines()
    assert len(lines) == 2 * K and {ln.get_alpha() for ln in lines[::2]} == {0.3} and lines[1].get_alpha() is None
    assert [ln.get_label() for ln in axes[1].get_lines()][:2] == ["valence", "arousal"]
    plain = _table().drop(columns=["valence", "arousal", *raw_columns(LABELS)])
    plot_timeline(plain, LABELS, tmp_path / "p.png")
    assert len(drawn[1].axes) == 2 and len(drawn[1].axes[0].get_lines()) == K


# --------------------------------------------------------------------------------------------- the real face videos


@pytest.mark.shared
def test_default_smoother_halves_label_changes_on_a_real_face_video(emotune_cache):
    path = SHARED / "videos" / "WolfgangLanger_Pexels.mp4"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from video_stability import compare

    rec = Recognizer(device="cpu", threads=1)  # the bundled default model
    df = rec.predict_video(path, every=2, smooth=True)
    r = compare(df, rec.labels)
    assert r["raw"]["changes"] > 10  # the per-frame labels do flicker on this video
    assert r["change_reduction"] >= 0.5 and r["jitter_reduction"] > 0.3 and r["agreement"] > 0.85


def test_recognizer_summarise_is_summarise_video_with_its_labels(whole, clip):
    df = whole.predict_video(clip, every=5, smooth=True)
    s = whole.summarise(df)
    assert len(s) == 1 and s["frames"].iloc[0] == 8 and s["label"].iloc[0] in LABELS
    assert s["seconds"].iloc[0] == pytest.approx(8 * 0.25)
