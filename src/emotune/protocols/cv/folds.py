"""Fold assignment (scikit-learn splitters: k-fold, stratified, subject-grouped, leave-one-subject-out) and the fold
manifest folds.csv (path,label,subject,fold) that fixes it for reruns and other backbones."""
from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...data.sources import SUBJECT_PATTERN, Sample, load_manifest
from ...data.splits import sklearn_notes
from ...errors import BadInputError, ConfigError
from ...io import atomic_write_text

FOLDS_FILE = "folds.csv"
FOLD_FIELDS = ["path", "label", "subject", "fold"]
TARGET_BINS = 4  # quantile bins of the first target for --stratify on a regression set


@dataclass
class FoldPlan:
    """Which fold (1..k) tests each sample, and the scikit-learn splitter that decided it."""

    fold_of: list[int]
    k: int
    scheme: str


def parse_folds(value: str | int) -> int | str:
    """`--folds 5` -> 5, `--folds loso` -> 'loso' (leave one subject out)."""
    if isinstance(value, int):
        k: int | str = value
    elif str(value).strip().lower() == "loso":
        return "loso"
    else:
        try:
            k = int(str(value).strip())
        except ValueError:
            raise ConfigError(f"--folds: {value!r} is neither a number of folds nor 'loso'") from None
    if k < 2:
        raise ConfigError(f"--folds: {k} folds; cross-validation needs at least 2")
    return k


def apply_subject_pattern(samples: Sequence[Sample], pattern: str | None) -> list[Sample]:
    """Fill in missing subjects from file names with `pattern` (its first group, else the whole match)."""
    if not pattern:
        return list(samples)
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--subject-pattern {pattern!r}: not a regular expression ({exc})") from None
    out = []
    for s in samples:
        m = rx.search(s.path.name) if (s.subject is None and s.path is not None) else None
        out.append(dataclasses.replace(s, subject=m.group(1) if m.groups() else m.group(0)) if m else s)
    return out


def require_subjects(samples: Sequence[Sample], where: str = "data") -> list[str]:
    """Every sample's subject, or a clear error: grouping by subject with unknown subjects would leak faces."""
    missing = [s for s in samples if not s.subject]
    if len(missing) == len(samples):
        raise ConfigError(f"{where}: --group-by subject, but no subjects are known: give a manifest `subject` column or "
                          f"file names that --subject-pattern matches (default CK+ style {SUBJECT_PATTERN!r}, e.g. S010_...)")
    if missing:
        raise ConfigError(f"{where}: --group-by subject, but {len(missing)} of {len(samples)} images have no subject "
                          f"(e.g. {missing[0].where}); fix the manifest or --subject-pattern")
    return [str(s.subject) for s in samples]


def assign_folds(samples: Sequence[Sample], folds: int | str = 5, group_by: str | None = None, stratify: bool = False,
                 seed: int = 42) -> FoldPlan:
    """Seeded fold assignment with scikit-learn; with `group_by='subject'` no subject is on both sides of any split.

    K equal to the number of subjects, or 'loso', is leave-one-subject-out.
    """
    from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

    folds = parse_folds(folds)
    n = len(samples)
    y = stratify_keys(samples)
    idx = np.arange(n)
    groups = None
    if folds == "loso":
        group_by = "subject"
    if group_by not in (None, "none", "subject", "group"):
        raise ConfigError(f"--group-by: {group_by!r} is not one of none, subject, group")
    if group_by == "group":
        missing = [s for s in samples if not s.split_group]
        if missing:
            raise ConfigError(f"--group-by group: {len(missing)} of {len(samples)} images have no group (e.g. {missing[0].where}); "
                              "give a manifest `group` column")
        groups = np.array([s.split_group for s in samples])
        n_groups = len(set(groups.tolist()))
        if folds == "loso" or folds > n_groups:
            raise ConfigError(f"--folds {folds}: {n_groups} groups; use at most {n_groups} folds")
        splitter = (StratifiedGroupKFold if stratify else GroupKFold)(n_splits=folds, shuffle=True, random_state=seed)
    elif group_by == "subject":
        groups = np.array(require_subjects(samples))
        n_groups = len(set(groups.tolist()))
        if folds == "loso" or folds == n_groups:
            splitter: Any = LeaveOneGroupOut()
        elif folds > n_groups:
            raise ConfigError(f"--folds {folds}: only {n_groups} subjects; use at most {n_groups} folds (or loso)")
        elif stratify:
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        else:
            splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        if folds > n:
            raise ConfigError(f"--folds {folds}: only {n} images")
        splitter = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = np.zeros(n, dtype=int)
    try:
        with sklearn_notes():
            for i, (_, test) in enumerate(splitter.split(idx, y, groups)):
                fold_of[test] = i + 1
    except ValueError as exc:
        raise ConfigError(f"cannot split {n} images into {folds} folds: {exc}") from None
    k = int(fold_of.max())
    empty = sorted(set(range(1, k + 1)) - set(fold_of.tolist()))
    if empty or (fold_of == 0).any():
        raise ConfigError(f"fold(s) {empty} got no images; use fewer folds")
    return FoldPlan(fold_of.tolist(), k, type(splitter).__name__)


def stratify_keys(samples: Sequence[Sample], bins: int = TARGET_BINS) -> np.ndarray:
    """What --stratify balances: the class, and for images with targets the quantile bin of the first target
    (valence), so that every fold spans the range of ratings."""
    y = np.array([s.label for s in samples], dtype=object)
    names = next((list(s.targets) for s in samples if s.targets), None)
    if not names:
        return y.astype(str)
    v = np.array([(s.targets or {}).get(names[0], np.nan) for s in samples], dtype=float)
    ok = ~np.isnan(v)
    if ok.sum() >= bins:
        edges = np.quantile(v[ok], np.linspace(0, 1, bins + 1)[1:-1])
        b = np.digitize(v, edges)
        y = np.array([f"{lab}|{names[0]}{int(q)}" if good else f"{lab}|none" for lab, q, good in zip(y, b, ok)], dtype=object)
    return y.astype(str)


def crossing_groups(samples: Sequence[Sample], fold_of: Sequence[int]) -> list[str]:
    """Groups (duplicates, themes, videos) whose images sit in more than one fold."""
    seen: dict[str, set[int]] = {}
    for s, f in zip(samples, fold_of):
        if s.group:
            seen.setdefault(s.group, set()).add(int(f))
    return sorted(g for g, fs in seen.items() if len(fs) > 1)


def target_columns(samples: Sequence[Sample]) -> dict[str, str]:
    """{target name: its fold-manifest column `name@lo:hi`} (the scale of the first sample that has it)."""
    from ...data.targets import scaled_column

    cols: dict[str, str] = {}
    for s in samples:
        for t in s.targets or {}:
            cols.setdefault(t, scaled_column(t, s.target_scale))
    return cols


def target_cells(s: Sample, cols: dict[str, str]) -> dict[str, str]:
    """A sample's targets back on its source scale (so fold models' cards keep it), empty when not annotated."""
    from ...data.targets import SCALED_COLUMN, from_unit

    out = {}
    for t, col in cols.items():
        m = SCALED_COLUMN.fullmatch(col)
        v = (s.targets or {}).get(t, float("nan"))
        out[col] = "" if v != v else f"{from_unit(v, (float(m.group(2)), float(m.group(3)))):.8g}"
    return out


def fold_targets(path: str | Path) -> list[str]:
    """The target columns (`name@lo:hi`) of a fold manifest."""
    from ...data.sources import _read_csv_header
    from ...data.targets import SCALED_COLUMN

    return [h for h in _read_csv_header(Path(path)) if SCALED_COLUMN.fullmatch(h)]


def crossing_subjects(samples: Sequence[Sample], fold_of: Sequence[int]) -> list[str]:
    """Subjects whose images sit in more than one fold (must be empty for subject-grouped CV)."""
    seen: dict[str, set[int]] = {}
    for s, f in zip(samples, fold_of):
        if s.subject:
            seen.setdefault(s.subject, set()).add(int(f))
    return sorted(sub for sub, fs in seen.items() if len(fs) > 1)


def _csv_text(fields: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _abs(p: Path | None) -> str:
    return str(Path(p).resolve()) if p is not None else ""


def write_folds_csv(path: str | Path, samples: Sequence[Sample], fold_of: Sequence[int]) -> Path:
    """The assignment as a manifest `load_manifest` reads (absolute paths), plus the `fold` column."""
    names = target_columns(samples)
    groups = any(s.group for s in samples)
    rows = [{"path": _abs(s.path), "label": s.label, "subject": s.subject or "", "fold": int(f),
             **({"group": s.group or ""} if groups else {}), **target_cells(s, names)} for s, f in zip(samples, fold_of)]
    return atomic_write_text(path, _csv_text(FOLD_FIELDS + (["group"] if groups else []) + list(names.values()), rows))


def read_folds_csv(path: str | Path) -> tuple[list[Sample], list[int]]:
    """Samples and their folds from a fold manifest (paths absolute or relative to the CSV's folder)."""
    path = Path(path)
    samples = load_manifest(path, targets=fold_targets(path))
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        if "fold" not in header:
            raise BadInputError(path, f"fold manifest lacks a `fold` column; found {header}")
        fold_of = []
        for i, row in enumerate(reader, start=2):
            try:
                fold_of.append(int((row.get("fold") or "").strip()))
            except ValueError:
                raise BadInputError(f"{path}:{i}", f"fold {row.get('fold')!r} is not a number") from None
    if len(fold_of) != len(samples) or min(fold_of) < 1:
        raise BadInputError(path, "fold numbers must be 1, 2, ... on every row")
    return samples, fold_of
