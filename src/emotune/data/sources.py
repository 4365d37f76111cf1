"""Dataset formats users have, read into one list of :class:`Sample`.

Formats: a folder per class, a CSV manifest (`path,label[,subject][,group][,split]` plus target columns), the
original FER2013 CSV (`emotion,pixels,Usage`) and FER+ vote files (`label.csv`); data/formats.py registers the
valence/arousal formats (AffectNet, AFEW-VA, Aff-Wild2, rating tables) and the scene sets (Twitter I, OASIS) in the
same `FORMATS` registry. Labels are canonicalised; an unknown label is an error naming the file and line.
Continuous targets are held on [-1, 1] (data/targets.py), with the scale they were read on.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInputError, LabelError
from ..taxonomy import FER2013_CODES, FERPLUS_COLUMNS, canonical_label, canonical_labels
from .targets import TargetSpec, parse_targets, read_value

def _image_extensions() -> frozenset[str]:
    """The file extensions of every format this Pillow can open (.avif with Pillow >= 11.3, .heic/.heif once a plugin
    such as pillow-heif has registered itself), less stubs that need a handler emotune never installs (BUFR, GRIB,
    HDF5, WMF), MPEG (a video, read by OpenCV) and PostScript (documents that need Ghostscript)."""
    from PIL import Image, ImageFile

    Image.init()
    skip = {"MPEG", "EPS"}
    openable = {fmt for fmt, (factory, _) in Image.OPEN.items()
                if fmt not in skip and not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))}
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in openable)


IMAGE_EXTENSIONS = _image_extensions()
SUBJECT_PATTERN = r"^(S\d{3})_"  # CK+: S010_004_00000017.png
FERPLUS_MODES = ("majority", "probability", "multi_target")
FER2013_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


@dataclass(frozen=True)
class Sample:
    """One labelled image: a file, or inline pixels (FER2013 CSV). `soft` holds soft targets (FER+).

    `label` is "" when the image has no class (a valence/arousal-only set). `targets` maps target names to values on
    [-1, 1] (NaN = not annotated), read on `target_scale`. `group` keeps images together in splits and folds
    (duplicates, shots of one theme, frames of one video); `box` crops the image first (AFEW-VA landmarks)."""

    path: Path | None
    label: str
    subject: str | None = None
    split: str | None = None
    source: str = ""
    dataset: str = ""  # the named source when several datasets are merged
    pixels: np.ndarray | None = field(default=None, compare=False, repr=False)
    soft: Mapping[str, float] | None = field(default=None, compare=False)
    targets: Mapping[str, float] | None = field(default=None, compare=False)
    target_scale: tuple[float, float] | None = field(default=None, compare=False)
    group: str | None = None
    box: tuple[int, int, int, int] | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        return self.source or str(self.path)

    @property
    def split_group(self) -> str | None:
        """What keeps images together in splits: the group when one is known, else the subject."""
        return self.group or self.subject


def subject_from_name(name: str, pattern: str = SUBJECT_PATTERN) -> str | None:
    m = re.search(pattern, name)
    return m.group(1) if m else None


def load_folder(root: str | Path, subject_pattern: str | None = SUBJECT_PATTERN,
                drop_labels: Sequence[str] = ()) -> list[Sample]:
    """`root/<label>/*.jpg` (nested sub-folders below a class folder are included).

    A class folder without images is an error naming it: skipping it would silently train a model without that class.
    Folders of `drop_labels` (the user left that class out on purpose) may be empty."""
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(root, "not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise BadInputError(root, "no class sub-folders (expected root/<label>/*.jpg)")
    samples: list[Sample] = []
    excused = canonical_labels(drop_labels)
    for d in class_dirs:
        label = canonical_label(d.name, where=str(d))
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files and label not in excused:
            raise BadInputError(d, f"class folder '{d.name}' holds no images (no jpg, png, webp, bmp, tiff or other image file); "
                                   "add its images or remove the folder")
        for p in files:
            subj = subject_from_name(p.name, subject_pattern) if subject_pattern else None
            samples.append(Sample(path=p, label=label, subject=subj, source=str(p)))
    return samples


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise BadInputError(path, "CSV file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header  # `path, label` headers: look rows up by the stripped names
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(path, f"not a readable CSV ({exc})") from None
    return header, rows


def load_manifest(path: str | Path, split: str | None = None, subject_pattern: str | None = SUBJECT_PATTERN,
                  targets: Sequence[str] | Sequence[TargetSpec] = (), target_scale: Any = None) -> list[Sample]:
    """CSV with columns `path,label[,subject][,group][,split]`; paths relative to the CSV's folder.

    `targets` (column names, or TargetSpecs) read numeric columns too, on `target_scale` (required: a manifest's
    scale is never guessed); `label` may then be absent or empty (a regression-only set)."""
    path = Path(path)
    header, rows = _read_csv(path)
    specs = [t if isinstance(t, TargetSpec) else parse_targets([t], target_scale)[0] for t in targets]
    need = {"path"} | ({"label"} if not specs else set()) | {t.column for t in specs}
    missing = need - set(header)
    if missing:
        raise BadInputError(path, f"manifest lacks column(s) {sorted(missing)}; found {header}; expected "
                                  f"path,label[,subject][,group][,split]" + "".join(f",{t.column}" for t in specs)
                                  + ("" if specs or "label" not in missing else
                                     " (a set without classes needs --targets, and a model with continuous targets)"))
    no_scale = [t.column for t in specs if t.scale is None]
    if no_scale:
        raise BadInputError(path, f"cannot infer the scale of target column(s) {no_scale} of a manifest; give it, e.g. "
                                  "--target-scale 1,7 (valence/arousal in [-1, 1]: --target-scale -1,1)")
    samples = []
    for i, row in enumerate(rows, start=2):
        where = f"{path}:{i}"
        rel = (row.get("path") or "").strip()
        if not rel:
            raise BadInputError(where, "empty path")
        if any(row.get(h) is None for h in need):
            raise BadInputError(where, "row has too few fields")
        row_split = (row.get("split") or "").strip() or None
        if split is not None and row_split != split:
            continue
        p = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        subject = (row.get("subject") or "").strip() or (subject_from_name(p.name, subject_pattern) if subject_pattern else None)
        raw_label = (row.get("label") or "").strip()
        label = canonical_label(raw_label, where) if raw_label or not specs else ""
        values = {t.name: read_value(row.get(t.column), where, t.column, t.scale) for t in specs} if specs else None
        if values is not None and not label and all(v != v for v in values.values()):
            raise BadInputError(where, f"row has neither a label nor a value in {[t.column for t in specs]}")
        samples.append(Sample(path=p, label=label, subject=subject, split=row_split, source=where, targets=values,
                              target_scale=specs[0].scale if specs else None, group=(row.get("group") or "").strip() or None))
    if not samples:
        raise BadInputError(path, "manifest has no rows" + (f" with split={split!r}" if split else ""))
    return samples


def load_fer2013_csv(path: str | Path, usage: str | None = None) -> list[Sample]:
    """The original Kaggle `fer2013.csv`: `emotion` (0-6), `pixels` (2304 space-separated values), `Usage`."""
    path = Path(path)
    usage = FER2013_USAGE.get(usage, usage) if usage else None
    header, rows = _read_csv(path)
    if not {"emotion", "pixels"} <= set(header):
        raise BadInputError(path, f"FER2013 CSV needs columns emotion,pixels[,Usage]; found {header}")
    samples = []
    for i, row in enumerate(rows, start=2):
        where = f"{path}:{i}"
        row_usage = (row.get("Usage") or "").strip() or None
        if usage and row_usage != usage:
            continue
        try:
            code = int(row["emotion"])
            if not 0 <= code < len(FER2013_CODES):  # a negative code would index from the end
                raise IndexError(code)
            label = FER2013_CODES[code]
        except (TypeError, ValueError, IndexError):
            raise LabelError(where, f"emotion code {row.get('emotion')!r} is not 0-6") from None
        try:
            px = np.array((row.get("pixels") or "").split(), dtype=np.float64)
        except ValueError:
            raise BadInputError(where, "pixels are not numbers") from None
        if not np.isfinite(px).all():  # 'nan' / 'inf' parse as floats
            raise BadInputError(where, "pixels are not numbers (nan or inf)")
        side = int(round(np.sqrt(px.size)))
        if px.size == 0 or side * side != px.size or px.min() < 0 or px.max() > 255:
            raise BadInputError(where, f"pixels: {px.size} values in 0-255 expected to form a square image (48x48 = 2304)")
        samples.append(Sample(path=None, label=label, split=row_usage, source=where, pixels=px.reshape(side, side).astype(np.uint8)))
    if not samples:
        raise BadInputError(path, "no rows" + (f" with Usage={usage!r}" if usage else ""))
    return samples


def ferplus_target(votes: Sequence[float], mode: str = "majority") -> dict[str, float] | None:
    """The FER+ paper's label modes over the 10 vote columns; None when the face is unknown/not-a-face.

    Single votes are treated as noise and removed first, as in the FER+ reference code.
    """
    if mode not in FERPLUS_MODES:
        raise ValueError(f"FER+ mode must be one of {FERPLUS_MODES}, not {mode!r}")
    raw = [float(v) if float(v) > 1 else 0.0 for v in votes]
    total = sum(raw)
    if total <= 0:
        return None
    kept = [0.0] * len(raw)
    if mode == "majority":
        top = max(raw)
        if top <= 0.5 * total:
            return None
        kept[raw.index(top)] = top
    elif mode == "probability":
        remaining, part, count = list(raw), 0.0, 0
        while part < 0.75 * total and count < 3:
            top = max(remaining)
            if top <= 0:
                break
            idx = remaining.index(top)
            remaining[idx] = 0.0
            if idx >= 8:  # unknown / not-a-face among the top votes
                if part == 0:
                    return None
                break
            kept[idx] = top
            part += top
            count += 1
        if part <= 0.5 * total:
            return None
    else:  # multi_target
        kept = [v if v >= 0.3 * total else 0.0 for v in raw]
        if sum(kept) <= 0.5 * total:
            return None
    emotions = kept[:8]
    s = sum(emotions)
    if s <= 0 or max(kept) != max(emotions):
        return None
    return {canonical_label(FERPLUS_COLUMNS[i]): v / s for i, v in enumerate(emotions) if v > 0}


def load_ferplus(folder: str | Path, mode: str = "majority") -> list[Sample]:
    """A FER+ split folder (`FER2013Train/` with `label.csv` and the PNGs).

    Images whose votes resolve to unknown or not-a-face are dropped, as in the FER+ paper.
    """
    folder = Path(folder)
    label_csv = folder / "label.csv"
    if not label_csv.is_file():
        raise BadInputError(folder, "no label.csv: expected a FER+ split folder such as FER2013Train/")
    samples = []
    with open(label_csv, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.reader(fh), start=1):
            where = f"{label_csv}:{i}"
            if not row:
                continue
            if len(row) != 12:
                raise BadInputError(where, f"expected 12 fields (image, box, 10 votes), got {len(row)}")
            try:
                votes = [float(v) for v in row[2:]]
            except ValueError:
                raise BadInputError(where, "vote counts are not numbers") from None
            target = ferplus_target(votes, mode)
            if target is None:
                continue
            label = max(target, key=target.get)
            soft = target if mode != "majority" else None
            samples.append(Sample(path=folder / row[0], label=label, split=folder.name, source=where, soft=soft))
    if not samples:
        raise BadInputError(label_csv, "no usable rows")
    return samples


def detect_format(path: str | Path) -> str:
    """Guess a dataset's format from its layout or CSV header."""
    path = Path(path)
    if path.is_dir():
        if (path / "label.csv").is_file():
            return "ferplus"
        from .formats import detect_folder_format

        return detect_folder_format(path) or "folder"
    if path.suffix.lower() == ".csv" and path.is_file():
        header = _read_csv_header(path)
        if {"emotion", "pixels"} <= set(header):
            return "fer2013csv"
        if {"path", "label"} <= set(header) or "path" in header:
            return "manifest"
        from .formats import detect_csv_format

        fmt = detect_csv_format(header)
        if fmt:
            return fmt
        raise BadInputError(path, f"unrecognised CSV columns {header}: expected path,label[,subject][,split] or emotion,pixels,Usage")
    if not path.exists():
        raise BadInputError(path, "dataset path not found")
    raise BadInputError(path, "not a dataset: give a class-folder root, a manifest CSV, fer2013.csv or a FER+ split folder")


def _read_csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            first = next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(path, f"not a readable CSV ({exc})") from None
    return [h.strip() for h in first]


@dataclass(frozen=True)
class LoadOptions:
    """What a format loader may use besides the path; each format reads the options that apply to it."""

    split: str | None = None
    ferplus_mode: str = "majority"
    drop_labels: Sequence[str] = ()
    targets: Sequence[str] = ()
    target_scale: Any = None
    tier: str | None = None
    soft_labels: str | None = None


FormatLoader = Callable[[Path, LoadOptions], list[Sample]]
FORMATS: dict[str, FormatLoader] = {}


def register_format(name: str) -> Callable[[FormatLoader], FormatLoader]:
    """Register a dataset format loader under `name` (`--data-format NAME`)."""
    def deco(fn: FormatLoader) -> FormatLoader:
        FORMATS[name] = fn
        return fn
    return deco


register_format("folder")(lambda p, o: load_folder(p, drop_labels=o.drop_labels))
register_format("manifest")(lambda p, o: load_manifest(p, split=o.split, targets=o.targets, target_scale=o.target_scale))
register_format("fer2013csv")(lambda p, o: load_fer2013_csv(p, usage=o.split))
register_format("ferplus")(lambda p, o: load_ferplus(p, mode=o.ferplus_mode))


def format_names() -> list[str]:
    from . import formats, formats_faces  # noqa: F401 - register the valence/arousal, scene and posed-face formats

    return list(FORMATS)


def load_samples(path: str | Path, fmt: str = "auto", split: str | None = None, ferplus_mode: str = "majority",
                 drop_labels: Sequence[str] = (), targets: Sequence[str] = (), target_scale: Any = None,
                 tier: str | None = None, soft_labels: str | None = None) -> list[Sample]:
    """Read any supported dataset (see FORMATS). `split` filters manifest rows or FER2013 `Usage` (train/val/test or the
    raw name). `drop_labels` only excuses empty class folders here; callers filter the samples themselves. `targets`
    and `target_scale` read numeric columns of a manifest or rating table; `tier` picks Twitter I's agreement level;
    `soft_labels="votes"` adds observers' votes as soft targets (the Taiwanese format)."""
    names = format_names()
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise BadInputError(path, f"unknown dataset format {fmt!r}; use auto, {', '.join(names)}")
    opts = LoadOptions(split, ferplus_mode, tuple(drop_labels), tuple(targets), target_scale, tier, soft_labels)
    return FORMATS[fmt](Path(path), opts)


def class_counts(samples: Sequence[Sample]) -> Counter:
    return Counter(s.label for s in samples)
