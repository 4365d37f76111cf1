"""Class probabilities smoothed over time, per tracked face: a registry of named smoothers with typed configs.

A video is pushed through a `VideoSmoother` one processed frame at a time (time, track ids, N x classes
probabilities, and any payload such as the frame itself). It hands frames back in order, each with its smoothed
probabilities, as soon as they are final: at once for a causal smoother (EMA), at most `delay` processed frames later
for a fixed-lag one (HMM). Every track id has its own state, so a face that vanishes and comes back under a new id
starts fresh. Time steps come from the frame times, so frame skipping (--every/--fps), missed detections and variable
frame rates are handled by elapsed time, not by counting frames.

A smoother is registered with `register_smoother(name, ConfigClass)` around a factory
`(config, frame_dt) -> () -> TrackFilter`; a trained temporal model slots in as one more entry (see "temporal").
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np

from ..errors import ConfigError

P = TypeVar("P")


class TrackFilter(Protocol):
    """One track's smoother: observations are pushed in time order and numbered from 0."""

    def push(self, t: float, p: np.ndarray) -> None: ...

    def estimate(self, k: int) -> np.ndarray:
        """Smoothed probabilities of observation `k` given every observation pushed so far."""

    def release(self, k: int) -> None:
        """Observations up to `k` are final and handed out: forget what only they needed."""


@dataclass(frozen=True)
class SmootherEntry:
    name: str
    config: type
    factory: Callable[[Any, float], Callable[[], TrackFilter]]
    doc: str


SMOOTHERS: dict[str, SmootherEntry] = {}
DEFAULT_SMOOTHER = "hmm"


def register_smoother(name: str, config: type, doc: str = ""):
    """Decorator: register `factory(config, frame_dt) -> make_track` under `name` with its config dataclass."""

    def deco(factory):
        SMOOTHERS[name] = SmootherEntry(name, config, factory, doc or (factory.__doc__ or "").strip().split("\n")[0])
        return factory

    return deco


def _positive(name: str, value: float | None, what: str) -> None:
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"--smooth-{name.replace('_', '-')} {value}: {what}")


@dataclass(frozen=True)
class EMAConfig:
    """Exponential moving average of the probabilities. `halflife` (seconds): a frame's weight halves every
    `halflife` seconds, whatever the frame rate. `alpha` instead: the weight of a new frame one video frame interval
    (1/fps) after the last, turned into the equivalent half-life."""

    name: ClassVar[str] = "ema"
    halflife: float | None = 0.25
    alpha: float | None = None

    def __post_init__(self):
        _positive("halflife", self.halflife, "give a half-life in seconds (> 0)")
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and 0 < self.alpha <= 1):
            raise ConfigError(f"--smooth-alpha {self.alpha}: give the weight of a new frame, in (0, 1]")

    def halflife_s(self, frame_dt: float) -> float:
        """Half-life in seconds; 0 means no smoothing (alpha 1)."""
        if self.alpha is None:
            return float(self.halflife)
        return 0.0 if self.alpha >= 1 else frame_dt * math.log(0.5) / math.log(1 - self.alpha)


@dataclass(frozen=True)
class HMMConfig:
    """A hidden Markov model over the classes with a sticky prior: the expression changes `switch_rate` times per
    second on average (a continuous-time chain, so frame gaps are exact). Each frame's probabilities are the emission
    likelihoods, mixed with `floor` of the uniform so that one confident frame cannot veto a state. Fixed-lag
    forward-backward: a frame's probabilities are final, and handed out, `delay` processed frames later."""

    name: ClassVar[str] = "hmm"
    switch_rate: float = 1.0
    delay: int = 8
    floor: float = 0.05

    def __post_init__(self):
        _positive("switch_rate", self.switch_rate, "give expected changes per second (> 0)")
        if not isinstance(self.delay, int) or isinstance(self.delay, bool) or not 0 <= self.delay <= 10_000:
            raise ConfigError(f"--smooth-delay {self.delay}: give a whole number of frames, 0..10000")
        if not (isinstance(self.floor, (int, float)) and 0 <= self.floor < 1):
            raise ConfigError(f"--smooth-floor {self.floor}: give a fraction in [0, 1)")


@dataclass(frozen=True)
class TemporalModelConfig:
    """A trained sequence model (emotune train with a sequence task) run over each track."""

    name: ClassVar[str] = "temporal"
    run: str = ""
    delay: int = 0

    def __post_init__(self):
        if not isinstance(self.delay, int) or isinstance(self.delay, bool) or self.delay < 0:
            raise ConfigError(f"--smooth-delay {self.delay}: give a whole number of frames >= 0")


class EMATrack:
    def __init__(self, halflife: float, frame_dt: float):
        self.halflife, self.frame_dt = halflife, frame_dt
        self.state: np.ndarray | None = None
        self.t: float | None = None
        self.out: dict[int, np.ndarray] = {}
        self.n = 0

    def push(self, t: float, p: np.ndarray) -> None:
        p = np.asarray(p, np.float64)
        if self.state is None or self.halflife <= 0:
            self.state = p.copy()
        else:
            w = 0.5 ** (_step(self.t, t, self.frame_dt) / self.halflife)  # the old state's weight after dt seconds
            self.state = w * self.state + (1 - w) * p
        self.t = t
        self.out[self.n] = self.state
        self.n += 1

    def estimate(self, k: int) -> np.ndarray:
        return self.out[k]

    def release(self, k: int) -> None:
        for j in [j for j in self.out if j <= k]:
            del self.out[j]


def _step(last: float | None, t: float, frame_dt: float) -> float:
    """Seconds since the previous observation; one frame interval when the times do not say (equal, backwards,
    missing): a broken timestamp must neither freeze nor reset the state."""
    dt = (t - last) if last is not None and t is not None else float("nan")
    return dt if dt > 0 else frame_dt


class HMMTrack:
    """Forward filtering as frames come; the backward pass runs over the `delay` frames not yet handed out.
    The chain jumps uniformly: T(dt) = s I + (1 - s) / K, s = exp(-rate dt), so each step costs O(K)."""

    def __init__(self, cfg: HMMConfig, frame_dt: float):
        self.cfg, self.frame_dt = cfg, frame_dt
        self.t: float | None = None
        self.alpha: np.ndarray | None = None
        self.window: deque[tuple[int, float, np.ndarray, np.ndarray]] = deque()  # (k, stay prob. into k, emission, alpha)
        self.n = 0

    def _emission(self, p: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(p, np.float64), 0, None)
        s = p.sum()
        p = p / s if s > 0 else np.full_like(p, 1 / len(p))
        return (1 - self.cfg.floor) * p + self.cfg.floor / len(p)

    def push(self, t: float, p: np.ndarray) -> None:
        e = self._emission(p)
        if self.alpha is None:
            stay, pred = 1.0, np.full_like(e, 1 / len(e))
        else:
            stay = math.exp(-self.cfg.switch_rate * _step(self.t, t, self.frame_dt))
            pred = stay * self.alpha + (1 - stay) / len(e)
        a = e * pred
        self.alpha = a / a.sum()
        self.t = t
        self.window.append((self.n, stay, e, self.alpha))
        self.n += 1

    def estimate(self, k: int) -> np.ndarray:
        beta = np.ones_like(self.alpha)
        gamma = None
        for j, stay, e, alpha in reversed(self.window):
            if j == k:
                gamma = alpha * beta
                break
            v = e * beta
            beta = stay * v + (1 - stay) * v.mean()
            beta /= beta.sum()
        if gamma is None:
            raise KeyError(f"observation {k} was released")
        return gamma / gamma.sum()

    def release(self, k: int) -> None:
        while self.window and self.window[0][0] <= k:
            self.window.popleft()


@register_smoother("ema", EMAConfig, "exponential moving average of the probabilities (no delay)")
def _ema(cfg: EMAConfig, frame_dt: float) -> Callable[[], TrackFilter]:
    halflife = cfg.halflife_s(frame_dt)
    return lambda: EMATrack(halflife, frame_dt)


@register_smoother("hmm", HMMConfig, "HMM with a sticky transition prior, fixed-lag forward-backward (delay frames)")
def _hmm(cfg: HMMConfig, frame_dt: float) -> Callable[[], TrackFilter]:
    return lambda: HMMTrack(cfg, frame_dt)


@register_smoother("temporal", TemporalModelConfig, "a trained temporal (sequence) model: --temporal-model RUN")
def _temporal(cfg: TemporalModelConfig, frame_dt: float) -> Callable[[], TrackFilter]:
    """The sequence model of `emotune seq train` over each track's last `window` face crops (temporal/stream.py):
    its `observe` hook embeds each frame's crops, `bind` lays its outputs out as the recognizer's columns."""
    from ..temporal.stream import TemporalTracks

    return TemporalTracks(cfg.run, cfg.delay)


def smoother_config(name: str = "default", **options: Any):
    """The typed config of smoother `name` ("default": DEFAULT_SMOOTHER) with `options` (None values ignored).
    Unknown names and options that the smoother does not take are ConfigErrors naming the choices."""
    name = DEFAULT_SMOOTHER if name in ("default", "", None) else name
    entry = SMOOTHERS.get(name)
    if entry is None:
        raise ConfigError(f"--smooth {name}: unknown smoother; choose one of {', '.join(sorted(SMOOTHERS))}")
    options = {k: v for k, v in options.items() if v is not None}
    known = [f.name for f in fields(entry.config)]
    for k in options:
        if k not in known:
            raise ConfigError(f"--smooth-{k.replace('_', '-')}: the {name} smoother has no such option "
                              f"(it takes {', '.join('--smooth-' + f.replace('_', '-') for f in known)})")
    return entry.config(**options)


def resolve_smooth(smooth: Any):
    """What callers pass as `smooth` -> a smoother config, or None for no smoothing: None/False, True/"default",
    a registered name, or a config instance."""
    if smooth is None or smooth is False:
        return None
    if smooth is True:
        return smoother_config("default")
    if isinstance(smooth, str):
        return smoother_config(smooth)
    if any(isinstance(smooth, e.config) for e in SMOOTHERS.values()):
        return smooth
    raise ConfigError(f"smooth={smooth!r}: give True, a smoother name ({', '.join(sorted(SMOOTHERS))}) or its config")


@dataclass
class _Frame(Generic[P]):
    seq: int
    payload: P
    keys: list[Any]
    steps: list[int]
    width: int  # classes: a face-less frame still comes back as 0 x classes


@dataclass
class _TrackState:
    filter: TrackFilter
    n: int = 0
    last_seq: int = 0


@dataclass
class VideoSmoother(Generic[P]):
    """Per-track smoothing of one video's frames, handed back in order at most `delay` processed frames late."""

    make_track: Callable[[], TrackFilter]
    delay: int = 0
    forget_after: int = 100  # processed frames without a track's face before its state is dropped (ids never return)
    # a smoother that reads more than the probabilities (temporal: the face crops) turns (payload, N x K probs) into
    # its N observations; `width` is then its output width (bind() fixes it for a recognizer's columns)
    observe: Callable[[Any, np.ndarray], np.ndarray] | None = None
    _pending: deque = field(default_factory=deque)
    _tracks: dict[Any, _TrackState] = field(default_factory=dict)
    _seq: int = 0

    @classmethod
    def create(cls, smooth: Any, frame_dt: float, forget_after: int = 100) -> VideoSmoother | None:
        cfg = resolve_smooth(smooth)
        if cfg is None:
            return None
        make = SMOOTHERS[cfg.name].factory(cfg, frame_dt)
        delay = int(getattr(cfg, "delay", 0))
        return cls(make, delay, max(forget_after, delay + 1), observe=getattr(make, "observe", None))

    def bind(self, labels: list[str], targets: list[str]) -> list[str]:
        """Tell a smoother with its own outputs (temporal) the recognizer's columns; the target columns it adds."""
        bind = getattr(self.make_track, "bind", None)
        return bind(list(labels), list(targets)) if bind is not None else []

    def push(self, time: float, tracks: list[Any] | None, probs: np.ndarray, payload: P = None) -> list[tuple[P, np.ndarray]]:
        """Add one processed frame (its faces' track ids and probabilities); the frames now final come back."""
        self._seq += 1
        probs = np.asarray(probs, np.float64)
        width = probs.shape[-1] if probs.ndim == 2 else 0
        probs = probs.reshape(len(tracks), -1) if tracks else probs
        if self.observe is not None:
            width = int(getattr(self.make_track, "width", width))
            if tracks:
                probs = self.observe(payload, probs)
        keys, steps = [], []
        for i, tid in enumerate(tracks or []):
            key = ("untracked", self._seq, i) if tid is None else tid  # no id: a track of one frame
            st = self._tracks.get(key)
            if st is None:
                st = self._tracks[key] = _TrackState(self.make_track())
            st.filter.push(time, probs[i])
            keys.append(key)
            steps.append(st.n)
            st.n += 1
            st.last_seq = self._seq
        self._pending.append(_Frame(self._seq, payload, keys, steps, width))
        out = self._emit(self._seq - self.delay)
        for key in [k for k, st in self._tracks.items() if self._seq - st.last_seq >= self.forget_after]:
            del self._tracks[key]
        return out

    def flush(self) -> list[tuple[P, np.ndarray]]:
        """Every frame still held (the end of the video)."""
        out = self._emit(self._seq)
        self._tracks.clear()
        return out

    def _emit(self, upto: int) -> list[tuple[P, np.ndarray]]:
        out = []
        while self._pending and self._pending[0].seq <= upto:
            fr = self._pending.popleft()
            smoothed = []
            for key, k in zip(fr.keys, fr.steps):
                st = self._tracks[key]
                smoothed.append(st.filter.estimate(k))
                st.filter.release(k)
                if isinstance(key, tuple) and key[0] == "untracked":
                    del self._tracks[key]
            out.append((fr.payload, np.array(smoothed, np.float64).reshape(len(smoothed), fr.width)))
        return out


def smooth_sequence(times: np.ndarray, probs: np.ndarray, smooth: Any = True, tracks: list | None = None,
                    frame_dt: float | None = None) -> np.ndarray:
    """Smoothed probabilities for a whole sequence of single faces (one row per observation, `tracks` ids or one
    track): the offline form of what predict does while streaming, for tables and benchmarks. With a delay the
    result is the same as streaming's (fixed lag), not a full backward pass."""
    times = np.asarray(times, np.float64)
    probs = np.asarray(probs, np.float64)
    tracks = [0] * len(times) if tracks is None else list(tracks)
    if frame_dt is None:
        d = np.diff(np.unique(times))
        frame_dt = float(np.median(d)) if len(d) else 1 / 30
    sm = VideoSmoother.create(smooth, frame_dt)
    if sm is None:
        return probs.copy()
    out = np.empty_like(probs)
    got = []
    for i in range(len(times)):
        got += sm.push(times[i], [tracks[i]], probs[i:i + 1], i)
    got += sm.flush()
    for i, p in got:
        out[i] = p[0]
    return out


def describe(cfg: Any) -> str | None:
    """"hmm(switch_rate=1.0, delay=8, floor=0.05)": how a table was smoothed, for summaries and reports."""
    if cfg is None:
        return None
    return f"{cfg.name}(" + ", ".join(f"{f.name}={getattr(cfg, f.name)}" for f in fields(cfg)) + ")"


def with_options(cfg: Any, **options: Any):
    """A copy of a smoother config with some options changed (validated again)."""
    return replace(cfg, **{k: v for k, v in options.items() if v is not None})


def smooth_table(df, labels: list[str], smooth: Any = True):
    """A predict table (one row per face per frame, several videos) smoothed as `predict --smooth` would do it while
    streaming: `label` and the class columns smoothed, `raw_<class>`/`raw_label` the per-frame values. Rows of images
    (no frame) and face-less rows are kept as they are."""
    import pandas as pd

    cfg = resolve_smooth(smooth)
    out = df.copy()
    raw = raw_columns(labels)
    for c, r in zip([*labels, "label"], raw):
        out[r] = df[c]
    if cfg is None:
        return out
    faces = out[out["label"].notna() & out["frame"].notna()]
    for _, video in faces.groupby("file", sort=False):
        times = video.groupby("frame", sort=True)["time"].first().to_numpy(np.float64)
        d = np.diff(np.unique(times[np.isfinite(times)]))
        sm = VideoSmoother.create(cfg, float(np.median(d)) if len(d) else 1 / 30)
        got = []
        for _, fr in video.groupby("frame", sort=True):
            tracks = [None if pd.isna(t) else int(t) for t in fr["track"]]
            got += sm.push(float(fr["time"].iloc[0]), tracks, fr[labels].to_numpy(np.float64), fr.index)
        got += sm.flush()
        for index, p in got:
            out.loc[index, labels] = p
            out.loc[index, "label"] = [labels[i] for i in p.argmax(1)]
    return out


def raw_columns(labels: list[str]) -> list[str]:
    """The per-frame columns kept beside smoothed ones: raw_<class>..., raw_label."""
    return [f"raw_{c}" for c in labels] + ["raw_label"]
