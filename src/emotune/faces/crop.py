"""`emotune faces crop`: turn a photo dataset into a training set of face crops framed exactly as `emotune predict`
frames faces: the same detector settings, the largest face, `crop_face` with the model card's framing, at the card's
`source_size` (else `input_size`). A model trained on these crops sees at training time what it sees in use.

The output keeps the input's layout, so the same source spec reads it: a class-folder tree stays one (file names
kept, `S010_...` subjects included), a manifest CSV becomes `manifest.csv` (every column carried over, `path`
pointing at the crop), a labels.csv folder (Taiwanese layout) becomes one with `labels.csv` and `votes.csv`.
`crop_report.csv` lists every photo (ok, several faces, no face, unreadable) and `crop_report.json` the settings and
counts. Crops are written atomically; a rerun skips the crops already written (and refuses other settings).
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInputError, ConfigError
from ..io import atomic_write, atomic_write_json, atomic_write_text, check_writable_dir, remove_stale_temps
from .align import Framing, crop_face
from .detectors import DEFAULT_DETECTOR, Detector, Face, create_detector

REPORT_CSV = "crop_report.csv"
REPORT_JSON = "crop_report.json"
REPORT_FIELDS = ["source", "crop", "label", "subject", "status", "faces", "score", "x", "y", "w", "h", "problem"]
KIND = "emotune-crops/1"


@dataclass(frozen=True)
class CropSettings:
    """Everything that decides a crop's pixels; a resumed run must use the same."""

    size: int
    framing: dict[str, Any]
    detector: str
    detector_model: str | None = None
    margin: float = 1.0
    align: bool = True
    min_score: float = 0.6
    det_max_side: int = 640
    model: str = "default"
    model_sha256: str = ""


@dataclass
class CropResult:
    out: Path
    counts: Counter = field(default_factory=Counter)
    rows: list[dict[str, Any]] = field(default_factory=list)
    manifest: Path | None = None


def settings_from_card(model: str | Path | None = None, size: int = 0, detector: str = DEFAULT_DETECTOR,
                       detector_model: str | None = None, margin: float = 1.0, align: bool = True, min_score: float = 0.6,
                       det_max_side: int = 640) -> CropSettings:
    """The crop settings `emotune predict --model MODEL` would use (Recognizer's defaults), from the model card."""
    from ..models import read_card
    from ..models.bundled import resolve_model

    spec = resolve_model(model)
    card_path = spec.with_suffix(".json") if spec.suffix in (".onnx", ".safetensors") else spec
    card, _ = read_card(card_path)
    size = int(size or card.source_size or card.input_size)
    if not 8 <= size <= 1024:
        raise ConfigError(f"--size {size}: choose 8..1024 pixels")
    if not 0.5 <= margin <= 3.0:
        raise ConfigError(f"--margin {margin} is outside 0.5..3.0")
    framing = card.framing if isinstance(card.framing, Framing) else Framing.from_dict(card.framing)
    return CropSettings(size, framing.to_dict(), detector, str(detector_model) if detector_model else None, margin, align,
                        min_score, det_max_side, str(model or "default"), card.sha256 or "")


def make_detector(s: CropSettings) -> Detector:
    """The detector exactly as `Recognizer` builds it for photos."""
    kwargs = {} if s.detector == "none" else {"score_threshold": s.min_score, "max_side": s.det_max_side}
    return create_detector(s.detector, s.detector_model, **kwargs)


def crop_largest(rgb: np.ndarray, faces: Sequence[Face], s: CropSettings) -> np.ndarray:
    """The largest face of a photo as `Recognizer.crop` would cut it."""
    face = max(faces, key=lambda f: f.area)
    return crop_face(rgb, face, s.size, s.margin, s.align, s.framing)


# ---------------------------------------------------------------------------------------------- layout of the output

def _rows_by_source(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The CSV's header and rows keyed `path:line` (what the loaders put in Sample.source)."""
    from ..data.sources import _read_csv

    header, rows = _read_csv(path)
    return header, {f"{path}:{i}": r for i, r in enumerate(rows, start=2)}


def _relative(p: Path, root: Path) -> Path:
    try:
        return p.resolve().relative_to(root.resolve())
    except ValueError:
        return Path(p.name)


def plan(data: Path, fmt: str, samples: Sequence, out: Path) -> list[Path]:
    """The crop file of each sample (PNG, lossless, so the crops are exactly what predict cuts)."""
    if fmt == "folder":
        targets = [out / _relative(s.path, data).with_suffix(".png") for s in samples]
    elif fmt == "manifest":
        targets = [out / "images" / _relative(s.path, data.parent).with_suffix(".png") for s in samples]
    else:  # taiwanese
        from ..data.formats_faces import IMAGES_DIR, images_root

        targets = [out / IMAGES_DIR / _relative(s.path, images_root(data)).with_suffix(".png") for s in samples]
    seen: dict[Path, str] = {}
    for s, t in zip(samples, targets):
        if t in seen:
            raise BadInputError(s.where, f"its crop {t} would overwrite the crop of {seen[t]} (same name, other extension); "
                                         "rename one of them")
        seen[t] = s.where
    return targets


def _csv_text(header: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(header), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_index(data: Path, fmt: str, out: Path, done: Sequence[tuple[Any, Path]]) -> Path | None:
    """The manifest (or labels.csv + votes.csv) of the crops written, with the input's columns carried over."""
    if fmt == "folder":
        return None
    if fmt == "manifest":
        header, rows = _rows_by_source(data)
        cols = header + (["source_path"] if "source_path" not in header else [])
        out_rows = [{**rows[s.source], "path": t.relative_to(out).as_posix(), "source_path": str(s.path)} for s, t in done]
        return atomic_write_text(out / "manifest.csv", _csv_text(cols, out_rows))
    from ..data.formats_faces import LABELS_CSV, VOTES_CSV

    header, rows = _rows_by_source(data / LABELS_CSV)
    cols = header + (["source_file"] if "source_file" not in header else [])
    renamed = {}
    out_rows = []
    for s, t in done:
        r = rows[s.source]
        renamed[r["file"].strip()] = t.name
        out_rows.append({**r, "file": t.name, "source_file": r["file"]})
    written = atomic_write_text(out / LABELS_CSV, _csv_text(cols, out_rows))
    if (data / VOTES_CSV).is_file():
        vheader, vrows = _rows_by_source(data / VOTES_CSV)
        kept = [{**r, "file": renamed[r["file"].strip()]} for r in vrows.values() if (r.get("file") or "").strip() in renamed]
        atomic_write_text(out / VOTES_CSV, _csv_text(vheader, kept))
    return written


# ---------------------------------------------------------------------------------------------- the command

def _check_settings(out: Path, s: CropSettings) -> None:
    """A rerun into the same folder resumes only under the same settings: mixed framings would poison a training set."""
    path = out / REPORT_JSON
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("settings")
    except (OSError, ValueError):
        return
    if old and old != asdict(s):
        diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in asdict(s).items() if old.get(k) != v)
        raise ConfigError(f"--out {out}: it holds crops made with other settings ({diff}); choose another --out folder")


def _old_rows(out: Path) -> dict[str, dict[str, str]]:
    path = out / REPORT_CSV
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["source"]: r for r in csv.DictReader(fh)}


def crop_dataset(data: str | Path, out: str | Path, settings: CropSettings, data_format: str = "auto",
                 show: bool = True, detector: Detector | None = None) -> CropResult:
    """Detect, align and crop every photo of a dataset into `out`; see the module docstring."""
    from ..data.images import read_image
    from ..data.sources import detect_format, load_samples
    from ..progress import progress

    data = Path(data)
    fmt = detect_format(data) if data_format == "auto" else data_format
    if fmt not in ("folder", "manifest", "taiwanese"):
        raise BadInputError(data, f"format {fmt!r} holds face crops already (FER2013, FER+); `faces crop` takes photos in "
                                  "class folders, a manifest CSV or a labels.csv folder")
    out = check_writable_dir(out, "--out")
    if out.resolve() == data.resolve() or data.resolve() in out.resolve().parents:
        raise ConfigError(f"--out {out}: write the crops outside the photo dataset {data}, or they become photos of it")
    samples = load_samples(data, fmt)
    targets = plan(data, fmt, samples, out)
    _check_settings(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    for folder in {t.parent for t in targets} | {out}:
        if folder.is_dir():
            remove_stale_temps(folder)
    atomic_write_json(out / REPORT_JSON, {"kind": KIND, "data": str(data), "format": fmt, "settings": asdict(settings),
                                          "complete": False})
    det = detector or make_detector(settings)
    old = _old_rows(out)
    res = CropResult(out)
    done = []
    try:
        for s, t in progress(list(zip(samples, targets)), show, desc="faces", unit="img"):
            row = {"source": str(s.path), "crop": "", "label": s.label, "subject": s.subject or "", "status": "", "faces": "",
                   "score": "", "x": "", "y": "", "w": "", "h": "", "problem": ""}
            if t.is_file():  # resumed: the crop was written by an earlier run under the same settings
                prev = old.get(str(s.path))
                row.update(prev or {"status": "ok", "problem": "crop written by an earlier run"})
                row["crop"] = t.relative_to(out).as_posix()
                res.counts[row["status"]] += 1
                res.rows.append(row)
                done.append((s, t))
                continue
            try:
                rgb = np.asarray(read_image(s.path, "rgb"))
                faces = det.detect(rgb)
            except BadInputError as exc:
                row.update(status="unreadable", problem=exc.problem)
            except MemoryError:
                row.update(status="unreadable", problem="out of memory while decoding or detecting")
            else:
                if not faces:
                    row.update(status="no_face", faces=0)
                else:
                    face = max(faces, key=lambda f: f.area)
                    crop = crop_largest(rgb, faces, settings)
                    atomic_write(t, lambda p, c=crop: _save_png(c, p))
                    x, y, w, h = (round(v, 1) for v in face.box)
                    row.update(status="ok" if len(faces) == 1 else "several_faces", faces=len(faces), score=round(face.score, 4),
                               x=x, y=y, w=w, h=h, crop=t.relative_to(out).as_posix(),
                               problem="" if len(faces) == 1 else f"{len(faces)} faces: the largest was taken")
                    done.append((s, t))
            res.counts[row["status"]] += 1
            res.rows.append(row)
    finally:  # an interrupted run still leaves a report and an index of the crops it wrote
        atomic_write_text(out / REPORT_CSV, _csv_text(REPORT_FIELDS, res.rows))
        if done:
            res.manifest = write_index(data, fmt, out, done)
        atomic_write_json(out / REPORT_JSON, {"kind": KIND, "data": str(data), "format": fmt, "settings": asdict(settings),
                                              "complete": len(res.rows) == len(samples), "photos": len(samples),
                                              "crops": len(done), "counts": dict(res.counts),
                                              "index": str(res.manifest.relative_to(out)) if res.manifest else None})
    return res


def _save_png(crop: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(crop).save(path, format="PNG")
