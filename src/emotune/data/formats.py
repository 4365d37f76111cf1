"""Valence/arousal and scene dataset formats, registered in `sources.FORMATS` (`--data-format NAME`).

| format     | what it reads                                                                                   | scale      |
|------------|-------------------------------------------------------------------------------------------------|------------|
| affectnet  | AffectNet's CSV (`subDirectory_filePath, face_x.., expression, valence, arousal`; -2 = missing)  | -1..1      |
| afewva     | AFEW-VA: a folder of clips, each `NNN/NNN.json` (per-frame valence, arousal, landmarks) + frames | -10..10    |
| affwild2   | Aff-Wild2 VA annotations: one `<video>.txt` per video (`valence,arousal`, a line per frame,      | -1..1      |
|            | -5 = not annotated), frames in `cropped_aligned/<video>/00001.jpg`                               |            |
| ratings    | a rating table (OASIS.csv, IAPS, GAPED...): an image column and valence/arousal columns          | given or   |
|            |                                                                                                 | known      |
| twitter_i  | Twitter I (../shared/data/twitter_i): labels.csv agree3/4/5, duplicate groups                    | classes    |
| oasis      | OASIS (../shared/data/oasis): labels.csv valence_mean/arousal_mean on 1-7, group = theme stem   | 1..7       |

Every target value is mapped to [-1, 1] on load (data/targets.py); out-of-range, non-numeric or NaN values are
errors naming the file and line. Video formats keep each clip's frames in one group (splits and CV folds never
separate them).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import BadInputError, ConfigError
from ..taxonomy import canonical_label
from .sources import IMAGE_EXTENSIONS, LoadOptions, Sample, _read_csv, register_format
from .targets import parse_scale, read_value, target_name, to_unit

AFFECTNET_SCALE = (-1.0, 1.0)
AFFECTNET_MISSING = (-2.0,)
AFFECTNET_CODES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt")  # 8-10: none/uncertain/no face
AFEWVA_SCALE = (-10.0, 10.0)
AFFWILD2_SCALE = (-1.0, 1.0)
AFFWILD2_MISSING = (-5.0,)
OASIS_SCALE = (1.0, 7.0)
TWITTER_TIERS = ("agree3", "agree4", "agree5")
# rating tables whose scale is known from their header: (columns that identify it, image column, targets, scale)
RATING_PRESETS = {
    "oasis": ({"theme", "valence_mean", "arousal_mean"}, "theme", {"valence": "valence_mean", "arousal": "arousal_mean"}, (1.0, 7.0)),
    "iaps": ({"iaps", "valmn", "aromn"}, "iaps", {"valence": "valmn", "arousal": "aromn"}, (1.0, 9.0)),
}


def _only_targets(values: dict[str, float], wanted: Sequence[str]) -> dict[str, float]:
    """Keep the targets asked for (`--targets valence` on a valence+arousal set); all when none are named."""
    if not wanted:
        return values
    names = [target_name(w.partition("=")[0] or w) for w in wanted]
    unknown = [n for n in names if n not in values]
    if unknown:
        raise ConfigError(f"--targets {list(wanted)}: this format has {sorted(values)}, not {unknown}")
    return {n: values[n] for n in names}


def _box(x: float, y: float, w: float, h: float, margin: float = 0.0) -> tuple[int, int, int, int]:
    m = margin * max(w, h)
    return int(round(x - m)), int(round(y - m)), int(round(x + w + m)), int(round(y + h + m))


# ---------------------------------------------------------------------------------------------- AffectNet
@register_format("affectnet")
def load_affectnet(path: Path, opts: LoadOptions) -> list[Sample]:
    """AffectNet's `training.csv` / `validation.csv`. Paths are relative to the CSV's folder (or its
    `Manually_Annotated_Images/`); the face box crops the image; expressions 8-10 (none, uncertain, no face) keep
    their valence/arousal and no class; valence or arousal -2 is 'not annotated'."""
    header, rows = _read_csv(path)
    need = {"subDirectory_filePath", "valence", "arousal"}
    if not need <= set(header):
        raise BadInputError(path, f"AffectNet CSV needs columns {sorted(need)} (and face_x, face_y, face_width, face_height, "
                                  f"expression); found {header}")
    base = path.parent
    if rows and not (base / rows[0]["subDirectory_filePath"].strip()).exists() and (base / "Manually_Annotated_Images").is_dir():
        base = base / "Manually_Annotated_Images"
    out = []
    for i, row in enumerate(rows, start=2):
        where = f"{path}:{i}"
        values = {n: read_value(row.get(n), where, n, AFFECTNET_SCALE, AFFECTNET_MISSING) for n in ("valence", "arousal")}
        label = ""
        code = (row.get("expression") or "").strip()
        if code:
            try:
                c = int(code)
            except ValueError:
                raise BadInputError(where, f"expression {code!r} is not a code 0-10") from None
            if not 0 <= c <= 10:
                raise BadInputError(where, f"expression {c} is not a code 0-10")
            label = AFFECTNET_CODES[c] if c < len(AFFECTNET_CODES) else ""
        values = _only_targets(values, opts.targets)
        if not label and all(math.isnan(v) for v in values.values()):
            continue  # nothing to learn from this row
        box = None
        if all((row.get(k) or "").strip() for k in ("face_x", "face_y", "face_width", "face_height")):
            try:
                box = _box(*(float(row[k]) for k in ("face_x", "face_y", "face_width", "face_height")))
            except ValueError:
                raise BadInputError(where, "face_x/face_y/face_width/face_height are not numbers") from None
        out.append(Sample(path=base / row["subDirectory_filePath"].strip(), label=label, source=where, targets=values,
                          target_scale=AFFECTNET_SCALE, box=box))
    if not out:
        raise BadInputError(path, "no usable rows")
    return out


# ---------------------------------------------------------------------------------------------- AFEW-VA
@register_format("afewva")
def load_afewva(path: Path, opts: LoadOptions) -> list[Sample]:
    """An AFEW-VA root: clip folders `001/` each with `001.json` ({"frames": {"00000": {"valence", "arousal",
    "landmarks"}}}) and the frames `00000.png`. Values are on -10..10; the landmarks' box (with a 20% margin) crops
    each frame to the face; each clip is one group."""
    if not path.is_dir():
        raise BadInputError(path, "AFEW-VA: expected the root folder of clip folders (001/001.json, 001/00000.png...)")
    clips = sorted(p for p in path.iterdir() if p.is_dir() and (p / f"{p.name}.json").is_file())
    if not clips:
        raise BadInputError(path, "AFEW-VA: no clip folders with <clip>/<clip>.json")
    out = []
    for clip in clips:
        jpath = clip / f"{clip.name}.json"
        try:
            data = json.loads(jpath.read_text(encoding="utf-8"))
            frames = data["frames"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise BadInputError(jpath, f"not an AFEW-VA annotation file ({type(exc).__name__}: {exc})") from None
        files = {p.stem: p for p in clip.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
        for key in sorted(frames):
            where = f"{jpath}:frames.{key}"
            f = frames[key]
            if not isinstance(f, dict):
                raise BadInputError(where, "frame entry is not an object")
            values = {n: read_value(f.get(n), where, n, AFEWVA_SCALE) for n in ("valence", "arousal")}
            box = None
            lm = f.get("landmarks")
            if lm:
                try:
                    xs, ys = [float(p[0]) for p in lm], [float(p[1]) for p in lm]
                except (TypeError, ValueError, IndexError):
                    raise BadInputError(where, "landmarks are not [[x, y], ...]") from None
                box = _box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys), margin=0.2)
            if key not in files:
                continue  # annotation without its frame: not extracted
            out.append(Sample(path=files[key], label="", subject=clip.name, source=where,
                              targets=_only_targets(values, opts.targets), target_scale=AFEWVA_SCALE, group=clip.name, box=box))
    if not out:
        raise BadInputError(path, "AFEW-VA: no annotated frame has its image file")
    return out


# ---------------------------------------------------------------------------------------------- Aff-Wild2
def _affwild2_frames(ann_dir: Path, video: str) -> Path | None:
    for cand in (ann_dir / video, ann_dir / "frames" / video, ann_dir.parent / "frames" / video,
                 ann_dir.parent / "cropped_aligned" / video, ann_dir.parent.parent / "cropped_aligned" / video,
                 ann_dir.parent.parent.parent / "cropped_aligned" / video):
        if cand.is_dir():
            return cand
    return None


@register_format("affwild2")
def load_affwild2(path: Path, opts: LoadOptions) -> list[Sample]:
    """Aff-Wild2 VA annotations: a folder of `<video>.txt` (first line `valence,arousal`, then one line per frame,
    -5 = not annotated) or one such file; frame n (from 1) is `<frames>/<video>/{n:05d}.jpg`, with the frames folder
    found beside or above the annotations (`<video>/`, `frames/<video>/` or the official `cropped_aligned/<video>/`).
    Frames without an image (no face found in the official crops) or with neither value annotated are left out.
    The folder name (Train_Set, Validation_Set) is each sample's split; each video is one group."""
    files = [path] if path.is_file() else sorted(path.glob("*.txt")) if path.is_dir() else []
    if not files:
        raise BadInputError(path, "Aff-Wild2: expected a folder of <video>.txt annotation files (or one of them)")
    out = []
    for f in files:
        video = f.stem
        frames = _affwild2_frames(f.parent, video)
        if frames is None:
            raise BadInputError(f, f"Aff-Wild2: no frame folder for {video} (looked for {video}/, frames/{video}/ and "
                                   f"cropped_aligned/{video}/ beside and above the annotations)")
        try:
            lines = f.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise BadInputError(f, "not a text file") from None
        if not lines or [h.strip().lower() for h in lines[0].split(",")] != ["valence", "arousal"]:
            raise BadInputError(f"{f}:1", f"expected the header 'valence,arousal', got {lines[0] if lines else ''!r}")
        for n, line in enumerate(lines[1:], start=1):
            where = f"{f}:{n + 1}"
            if not line.strip():
                continue
            cells = line.split(",")
            if len(cells) != 2:
                raise BadInputError(where, f"expected 'valence,arousal', got {line!r}")
            values = {k: read_value(c, where, k, AFFWILD2_SCALE, AFFWILD2_MISSING) for k, c in zip(("valence", "arousal"), cells)}
            if all(math.isnan(v) for v in values.values()):
                continue
            img = frames / f"{n:05d}.jpg"
            if not img.is_file():
                continue
            out.append(Sample(path=img, label="", subject=video, split=f.parent.name, source=where,
                              targets=_only_targets(values, opts.targets), target_scale=AFFWILD2_SCALE, group=video))
    if not out:
        raise BadInputError(path, "Aff-Wild2: no annotated frame has its image file")
    return out


# ---------------------------------------------------------------------------------------------- rating tables
def _find_image(base: Path, name: str) -> Path:
    p = Path(name)
    for folder in (base, base / "images", base / "Images"):
        cand = folder / p
        if cand.suffix.lower() in IMAGE_EXTENSIONS and cand.is_file():
            return cand
        for ext in (".jpg", ".jpeg", ".png", ".bmp"):
            for stem in (name, name.replace(" ", "_")):
                c = folder / f"{stem}{ext}"
                if c.is_file():
                    return c
    return base / p


@register_format("ratings")
def load_ratings(path: Path, opts: LoadOptions) -> list[Sample]:
    """A rating table (OASIS.csv, IAPS norms, GAPED, your own): one row per image, an image column (`file`, `path`,
    `image`, `filename`, or a preset's own) and rating columns. Known headers bring their columns and scale (OASIS
    `Theme, Valence_mean, Arousal_mean`: 1-7; IAPS `IAPS, valmn, aromn`: 1-9); any other table needs `--targets` and
    `--target-scale` (GAPED: 0,100). Images are looked up beside the table or in its images/ folder, with or without
    an extension."""
    header, rows = _read_csv(path)
    lower = {h.lower(): h for h in header}
    preset = next((p for p in RATING_PRESETS.values() if p[0] <= set(lower)), None)
    scale = parse_scale(opts.target_scale) or (preset[3] if preset else None)
    if opts.targets:
        from .targets import parse_targets

        specs = [(t.name, t.column) for t in parse_targets(opts.targets)]
    elif preset:
        specs = list(preset[2].items())
    else:
        specs = [(target_name(h), h) for h in header if target_name(h) in ("valence", "arousal")]
        if not specs:
            raise BadInputError(path, f"rating table: no valence/arousal columns in {header}; name them with --targets")
    if scale is None:
        raise BadInputError(path, f"cannot infer the rating scale of {[c for _, c in specs]} (not a known OASIS or IAPS table); "
                                  "give it, e.g. --target-scale 1,9 (IAPS/SAM), 1,7 (OASIS) or 0,100 (GAPED)")
    cols = {n: lower.get(c.lower(), c) for n, c in specs}
    missing = [c for c in cols.values() if c not in header]
    if missing:
        raise BadInputError(path, f"rating table lacks column(s) {missing}; found {header}")
    image_col = next((lower[k] for k in ("file", "path", "image", "filename", "file_name", "name") if k in lower),
                     lower.get(preset[1]) if preset else None)
    if image_col is None:
        raise BadInputError(path, f"rating table: no image column (file, path, image or filename) in {header}")
    out = []
    for i, row in enumerate(rows, start=2):
        where = f"{path}:{i}"
        name = (row.get(image_col) or "").strip()
        if not name:
            raise BadInputError(where, f"empty {image_col}")
        values = {n: read_value(row.get(c), where, c, scale) for n, c in cols.items()}
        out.append(Sample(path=_find_image(path.parent, name), label="", source=where, targets=values, target_scale=scale,
                          group=_theme_stem(name) if preset and preset[1] == "theme" else None))
    if not out:
        raise BadInputError(path, "rating table has no rows")
    return out


# ---------------------------------------------------------------------------------------------- scene sets
def _theme_stem(theme: str) -> str:
    """OASIS themes 'Acorns 1', 'Acorns 2' are shots of one subject: their group is the stem 'Acorns'."""
    return re.sub(r"[\s_]*\d+$", "", Path(theme).stem if theme.lower().endswith((".jpg", ".png")) else theme.strip()) or theme


@register_format("oasis")
def load_oasis(path: Path, opts: LoadOptions) -> list[Sample]:
    """The shared OASIS folder (labels.csv: file, theme, category, valence_mean, arousal_mean on 1-7, ...; images/).
    No classes; targets valence and arousal; group = the theme's stem (all 'Acorns N' shots in one fold)."""
    csv_path = path / "labels.csv" if path.is_dir() else path
    header, rows = _read_csv(csv_path)
    need = {"file", "theme", "valence_mean", "arousal_mean"}
    if not need <= set(header):
        raise BadInputError(csv_path, f"OASIS labels.csv needs columns {sorted(need)}; found {header}")
    scale = parse_scale(opts.target_scale) or OASIS_SCALE
    out = []
    for i, row in enumerate(rows, start=2):
        where = f"{csv_path}:{i}"
        values = {n: read_value(row.get(f"{n}_mean"), where, f"{n}_mean", scale) for n in ("valence", "arousal")}
        theme = (row.get("theme") or "").strip()
        out.append(Sample(path=csv_path.parent / "images" / row["file"].strip(), label="", subject=None, source=where,
                          targets=_only_targets(values, opts.targets), target_scale=scale, group=_theme_stem(theme) or row["file"]))
    if not out:
        raise BadInputError(csv_path, "no rows")
    return out


def twitter_groups(folder: Path) -> dict[str, str]:
    """file -> group id from duplicates.csv and near_duplicates.csv, joined (a file in both links their groups)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for name in ("duplicates.csv", "near_duplicates.csv"):
        p = folder / name
        if not p.is_file():
            continue
        header, rows = _read_csv(p)
        if not {"group", "file"} <= set(header):
            raise BadInputError(p, f"needs columns group,file; found {header}")
        for row in rows:
            a, b = f"{name}#{row['group'].strip()}", row["file"].strip()
            parent[find(b)] = find(a)
    groups: dict[str, str] = {}
    for x in list(parent):
        if "#" not in x:
            root = find(x)
            kind, gid = root.split("#", 1)
            groups[x] = f"{'near' if kind.startswith('near') else 'dup'}:{gid}"
    return groups


@register_format("twitter_i")
def load_twitter_i(path: Path, opts: LoadOptions) -> list[Sample]:
    """The shared Twitter I folder: labels.csv (file, agree3, agree4, agree5 = positive | negative | blank) and
    images/. `tier` picks the agreement level (default agree3, every image; agree5: all five raters agreed); rows
    blank at that tier are left out. Duplicate and near-duplicate groups become each sample's group, so a picture
    and its copies stay on one side of every split."""
    folder = path if path.is_dir() else path.parent
    csv_path = folder / "labels.csv" if path.is_dir() else path
    tier = (opts.tier or "agree3").strip().lower()
    if tier not in TWITTER_TIERS:
        raise ConfigError(f"--tier {opts.tier!r}: Twitter I tiers are {', '.join(TWITTER_TIERS)}")
    header, rows = _read_csv(csv_path)
    if not {"file", tier} <= set(header):
        raise BadInputError(csv_path, f"Twitter I labels.csv needs columns file,{tier}; found {header}")
    groups = twitter_groups(folder)
    out = []
    for i, row in enumerate(rows, start=2):
        where = f"{csv_path}:{i}"
        raw = (row.get(tier) or "").strip()
        if not raw:
            continue
        f = row["file"].strip()
        out.append(Sample(path=folder / "images" / f, label=canonical_label(raw, where), source=where, group=groups.get(f, f)))
    if not out:
        raise BadInputError(csv_path, f"no image is labelled at {tier}")
    return out


# ---------------------------------------------------------------------------------------------- detection
def detect_folder_format(path: Path) -> str | None:
    """A folder's format when it is one of these sets (labels.csv headers, AFEW-VA clips), else None."""
    labels = path / "labels.csv"
    if labels.is_file():
        from .sources import _read_csv_header

        header = set(_read_csv_header(labels))
        if {"agree3", "file"} <= header:
            return "twitter_i"
        if {"valence_mean", "arousal_mean", "theme"} <= header:
            return "oasis"
        if {"file", "label"} <= header:
            return "taiwanese"
    subs = [p for p in path.iterdir() if p.is_dir()][:5]
    if subs and all((p / f"{p.name}.json").is_file() for p in subs):
        return "afewva"
    return None


def detect_csv_format(header: Sequence[str]) -> str | None:
    h = set(header)
    if {"subDirectory_filePath", "valence", "arousal"} <= h:
        return "affectnet"
    lower = {x.lower() for x in h}
    if any(p[0] <= lower for p in RATING_PRESETS.values()):
        return "ratings"
    if {"agree3", "file"} <= h:
        return "twitter_i"
    return None


__all__ = ["load_affectnet", "load_afewva", "load_affwild2", "load_ratings", "load_oasis", "load_twitter_i", "to_unit"]
