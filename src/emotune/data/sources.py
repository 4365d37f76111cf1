"""Dataset formats users have, read into one list of :class:`Sample`.

Formats: a folder per class, a CSV manifest (`path,label[,subject][,split]`), the original FER2013 CSV
(`emotion,pixels,Usage`) and FER+ vote files (`label.csv`). Labels are canonicalised; an unknown label is
an error naming the file and line.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInputError, LabelError
from ..taxonomy import FER2013_CODES, FERPLUS_COLUMNS, canonical_label

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
    """One labelled image: a file, or inline pixels (FER2013 CSV). `soft` holds soft targets (FER+)."""

    path: Path | None
    label: str
    subject: str | None = None
    split: str | None = None
    source: str = ""
    dataset: str = ""  # the named source when several datasets are merged
    pixels: np.ndarray | None = field(default=None, compare=False, repr=False)
    soft: Mapping[str, float] | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        return self.source or str(self.path)


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
    for d in class_dirs:
        label = canonical_label(d.name, where=str(d))
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files and label not in drop_labels:
            raise BadInputError(d, f"class folder '{d.name}' holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
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


def load_manifest(path: str | Path, split: str | None = None, subject_pattern: str | None = SUBJECT_PATTERN) -> list[Sample]:
    """CSV with columns `path,label[,subject][,split]`; paths relative to the CSV's folder."""
    path = Path(path)
    header, rows = _read_csv(path)
    missing = {"path", "label"} - set(header)
    if missing:
        raise BadInputError(path, f"manifest lacks column(s) {sorted(missing)}; found {header}; expected path,label[,subject][,split]")
    samples = []
    for i, row in enumerate(rows, start=2):
        where = f"{path}:{i}"
        rel = (row.get("path") or "").strip()
        if not rel:
            raise BadInputError(where, "empty path")
        if row.get("label") is None:
            raise BadInputError(where, "row has too few fields")
        row_split = (row.get("split") or "").strip() or None
        if split is not None and row_split != split:
            continue
        p = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        subject = (row.get("subject") or "").strip() or (subject_from_name(p.name, subject_pattern) if subject_pattern else None)
        samples.append(Sample(path=p, label=canonical_label(row["label"], where), subject=subject, split=row_split, source=where))
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
        from .formats_faces import is_labels_folder
        return "taiwanese" if is_labels_folder(path) else "folder"
    if path.suffix.lower() == ".csv" and path.is_file():
        header = _read_csv_header(path)
        if {"emotion", "pixels"} <= set(header):
            return "fer2013csv"
        if {"path", "label"} <= set(header):
            return "manifest"
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


def load_samples(path: str | Path, fmt: str = "auto", split: str | None = None, ferplus_mode: str = "majority",
                 drop_labels: Sequence[str] = (), soft_labels: str | None = None) -> list[Sample]:
    """Read any supported dataset. `split` filters manifest rows or FER2013 `Usage` (train/val/test or the raw name).
    `drop_labels` only excuses empty class folders here; callers filter the samples themselves."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "folder":
        return load_folder(path, drop_labels=drop_labels)
    if fmt == "manifest":
        return load_manifest(path, split=split)
    if fmt == "fer2013csv":
        return load_fer2013_csv(path, usage=split)
    if fmt == "ferplus":
        return load_ferplus(path, mode=ferplus_mode)
    if fmt == "taiwanese":  # labels.csv folder (data/formats_faces.py); soft_labels="votes": observers' votes
        from .formats_faces import load_taiwanese
        return load_taiwanese(path, split=split, soft_labels=soft_labels)
    raise BadInputError(path, f"unknown dataset format {fmt!r}; use auto, folder, manifest, fer2013csv, ferplus or taiwanese")


def class_counts(samples: Sequence[Sample]) -> Counter:
    return Counter(s.label for s in samples)
