"""Sequence data: videos of per-frame samples, windows over them, and splits by video or subject.

A `Video` is one clip's annotated frames in frame order: image paths (with an optional face box), frame numbers, a
class index per frame (-100 = none) and targets per frame (NaN = not annotated). Sources:

- `affwild2`, `afewva` (data/formats.py loaders): per-frame samples grouped by video; the frame number is the
  image's number (Aff-Wild2 `00001.jpg` = line 2 of `<video>.txt`; AFEW-VA `00000.png` = `frames["00000"]`).
  Each format's missing markers (-5, -2) and left-out frames (no face crop) hold as data/formats.py reads them.
- `manifest`: a CSV with columns `video, frame, path` and optional `subject`, `label` and target columns
  (`--targets valence,arousal --target-scale -1,1`); paths are relative to the CSV.

Frame numbers must be whole numbers; a frame number repeated within a video is refused naming the file and frame;
rows out of order are put in frame order. Frames are the clock: a gap of more than `max_gap` missing frames (no face,
frames not extracted) splits a video into segments, each windowed on its own; shorter gaps are closed up.
"""
from __future__ import annotations

import csv
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.dataset import IGNORE_INDEX
from ..data.sources import Sample, load_samples
from ..errors import BadInputError, ConfigError
from ..taxonomy import canonical_label, resolve_labels

SEQUENCE_FORMATS = ("affwild2", "afewva", "manifest")


@dataclass
class Video:
    name: str
    subject: str
    paths: list[Path]
    frames: np.ndarray  # int frame numbers, increasing
    labels: np.ndarray  # int class index per frame, IGNORE_INDEX = none
    targets: np.ndarray  # n x T on [-1, 1], NaN = not annotated
    boxes: list[tuple[int, int, int, int] | None] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # the annotation (file:line) of each frame

    def __len__(self) -> int:
        return len(self.paths)

    def y(self) -> np.ndarray:
        """n x (1 + T): the class index then the targets (what TargetTask scores)."""
        return np.concatenate([self.labels[:, None].astype(np.float64), self.targets], axis=1)

    def segments(self, max_gap: int) -> list[tuple[int, int]]:
        """[start, end) index ranges split where more than `max_gap` frame numbers are missing."""
        cuts = np.flatnonzero(np.diff(self.frames) > max_gap + 1) + 1
        edges = [0, *cuts.tolist(), len(self)]
        return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


@dataclass
class SequenceData:
    videos: list[Video]
    labels: tuple[str, ...]
    targets: tuple[str, ...]
    target_specs: list[dict]
    notes: list[str] = field(default_factory=list)


_NUM = re.compile(r"(\d+)$")


def _frame_number(p: Path, where: str) -> int:
    m = _NUM.search(p.stem)
    if not m:
        raise BadInputError(where, f"frame image {p.name}: its name is not a frame number (00001.jpg)")
    return int(m.group(1))


def _read_manifest(path: Path, targets: Sequence[str], target_scale) -> list[tuple[Sample, int]]:
    from ..data.targets import parse_targets, read_value

    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = list(reader)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(path, f"cannot read the manifest ({type(exc).__name__}: {exc})") from None
    need = {"video", "frame", "path"}
    if not need <= set(header):
        raise BadInputError(path, f"sequence manifest needs columns {sorted(need)} (and optional subject, label, targets); "
                                  f"found {header}")
    specs = parse_targets(targets, target_scale) if targets else []
    missing = [s.column for s in specs if s.column not in header]
    if missing:
        raise BadInputError(path, f"manifest lacks target column(s) {missing}; found {header}")
    if "label" not in header and not specs:
        raise BadInputError(path, "manifest has no label column and no --targets: nothing to learn")
    out = []
    for i, row in enumerate(rows, start=2):
        where = f"{path}:{i}"
        raw = (row.get("frame") or "").strip()
        try:
            n = int(raw)
        except ValueError:
            raise BadInputError(where, f"frame {raw!r} is not a whole number") from None
        values = {s.name: read_value(row.get(s.column), where, s.column, s.scale or (-1.0, 1.0)) for s in specs}
        label = canonical_label(row["label"].strip(), where) if (row.get("label") or "").strip() else ""
        p = Path(row["path"].strip())
        out.append((Sample(path=p if p.is_absolute() else path.parent / p, label=label, subject=(row.get("subject") or "").strip() or None,
                           source=where, targets=values or None, target_scale=(specs[0].scale or (-1.0, 1.0)) if specs else None,
                           group=row["video"].strip()), n))
    if not out:
        raise BadInputError(path, "manifest has no rows")
    return out


def load_sequences(path: str | Path, fmt: str, targets: Sequence[str] = (), target_scale=None, labels: str = "auto",
                   min_frames: int = 1) -> SequenceData:
    """Videos of annotated frames from an Aff-Wild2 or AFEW-VA folder or a sequence manifest (see the module doc)."""
    path = Path(path)
    if fmt == "auto":
        fmt = "manifest" if path.suffix.lower() == ".csv" else "afewva" if path.is_dir() and any(
            (p / f"{p.name}.json").is_file() for p in path.iterdir() if p.is_dir()) else "affwild2"
    if fmt not in SEQUENCE_FORMATS:
        raise ConfigError(f"--data-format {fmt}: sequence formats are {', '.join(SEQUENCE_FORMATS)}")
    if fmt == "manifest":
        pairs = _read_manifest(path, targets, target_scale)
    else:
        samples = load_samples(path, fmt, targets=targets)
        pairs = [(s, _frame_number(s.path, s.where)) for s in samples]
    by_video: dict[str, list[tuple[Sample, int]]] = {}
    for s, n in pairs:
        by_video.setdefault(s.group or str(s.path.parent), []).append((s, n))
    present = sorted({s.label for s, _ in pairs if s.label})
    label_names = tuple(resolve_labels(labels, present)) if present else ()
    index = {c: i for i, c in enumerate(label_names)}
    target_names: list[str] = []
    specs: list[dict] = []
    for s, _ in pairs:
        for t in s.targets or {}:
            if t not in target_names:
                target_names.append(t)
                specs.append({"name": t, "column": t, "scale": list(s.target_scale or (-1.0, 1.0))})
    videos, notes = [], []
    for name, items in by_video.items():
        items.sort(key=lambda sn: sn[1])
        nums = [n for _, n in items]
        for (s, n), (s2, n2) in zip(items[:-1], items[1:]):
            if n == n2:
                raise BadInputError(s2.where, f"video {name}: frame {n} appears twice (also at {s.where})")
        if len(items) < min_frames:
            notes.append(f"{name}: {len(items)} annotated frame(s), fewer than --min-frames {min_frames}; left out")
            continue
        lab = np.array([index.get(s.label, IGNORE_INDEX) if s.label else IGNORE_INDEX for s, _ in items], np.int64)
        tg = np.array([[(s.targets or {}).get(t, math.nan) for t in target_names] for s, _ in items], np.float64).reshape(len(items), -1)
        subject = next((s.subject for s, _ in items if s.subject), None) or name
        videos.append(Video(name, subject, [s.path for s, _ in items], np.array(nums, np.int64), lab, tg,
                            [s.box for s, _ in items], [s.where for s, _ in items]))
    if not videos:
        raise BadInputError(path, "no video has enough annotated frames")
    return SequenceData(videos, label_names, tuple(target_names), specs, notes)


# ---------------------------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class Window:
    video: int  # index into the video list
    start: int  # first frame index in the video
    length: int  # real frames (<= window; the rest is padding, masked)


def make_windows(videos: Sequence[Video], window: int, stride: int, max_gap: int = 5) -> list[Window]:
    """Windows of `window` frames every `stride` frames inside each segment (module doc); the last window of a
    segment is aligned to its end so that every frame is covered; a segment shorter than a window gives one window
    padded at the end (masked: causal heads make the padding harmless)."""
    if window < 1 or stride < 1:
        raise ConfigError(f"--window {window} / --stride {stride}: give whole numbers >= 1")
    out = []
    for vi, v in enumerate(videos):
        for a, b in v.segments(max_gap):
            n = b - a
            if n <= window:
                out.append(Window(vi, a, n))
                continue
            starts = list(range(a, b - window + 1, stride))
            if starts[-1] != b - window:
                starts.append(b - window)
            out += [Window(vi, s, window) for s in starts]
    return out


def gather(windows: Sequence[Window], feats: Sequence[np.ndarray], ys: Sequence[np.ndarray], window: int):
    """Stack windows into (x B x W x D, y B x W x (1+T), mask B x W) float arrays; padding rows are masked."""
    d, c = feats[0].shape[1], ys[0].shape[1]
    x = np.zeros((len(windows), window, d), np.float32)
    y = np.full((len(windows), window, c), np.nan, np.float64)
    y[..., 0] = IGNORE_INDEX
    m = np.zeros((len(windows), window), bool)
    for i, w in enumerate(windows):
        x[i, :w.length] = feats[w.video][w.start:w.start + w.length]
        y[i, :w.length] = ys[w.video][w.start:w.start + w.length]
        m[i, :w.length] = True
    return x, y, m


# ---------------------------------------------------------------------------------------------- splits
def split_key(videos: Sequence[Video], by: str) -> list[str]:
    if by not in ("video", "subject"):
        raise ConfigError(f"--split-by {by}: choose video or subject")
    return [v.name if by == "video" else v.subject for v in videos]


def holdout_videos(videos: Sequence[Video], fraction: float, by: str = "subject", seed: int = 0) -> tuple[list[int], list[int]]:
    """Train/val video indices with no video (or subject) on both sides: frames are never split."""
    from sklearn.model_selection import GroupShuffleSplit

    groups = split_key(videos, by)
    if len(set(groups)) < 2:
        raise ConfigError(f"a {fraction:.0%} hold-out by {by} needs at least two {by}s; the data has {len(set(groups))}")
    tr, va = next(GroupShuffleSplit(1, test_size=fraction, random_state=seed).split(np.zeros(len(videos)), groups=groups))
    return sorted(tr.tolist()), sorted(va.tolist())


def video_folds(videos: Sequence[Video], k: int, by: str = "subject", seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """k-fold cross-validation by video or subject (scikit-learn GroupKFold, shuffled by `seed`)."""
    from sklearn.model_selection import GroupKFold

    groups = split_key(videos, by)
    if k < 2 or k > len(set(groups)):
        raise ConfigError(f"--folds {k}: needs 2..{len(set(groups))} (the number of {by}s)")
    rng = np.random.default_rng(seed)
    ids = {g: i for i, g in enumerate(rng.permutation(sorted(set(groups))))}
    folds = GroupKFold(k).split(np.zeros(len(videos)), groups=[ids[g] for g in groups])
    return [(sorted(a.tolist()), sorted(b.tolist())) for a, b in folds]


def warn(notes: Sequence[str]) -> None:
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
