"""Face datasets kept as a folder with a labels CSV: the Taiwanese posed-face corpus (``../shared/data/taiwanese``) and
the crops `emotune faces crop` writes from it, which keep the same layout.

    root/labels.csv    file,subject,label[,split]   (`subject` = performer; `file` is relative to root/images/)
    root/votes.csv     file,...,vote_happy,...,vote_neutral   (optional: the observers' votes, one row per image)
    root/images/*.jpg

`soft_labels="votes"` gives each image soft targets from its `vote_<emotion>` columns, normalised to sum 1 (the
observers read posed fear mostly as surprise or sadness: soft targets say so, a posed label cannot). The hard label
stays the posed one, so metrics still score what the performer was asked to show.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import BadInputError, LabelError
from ..taxonomy import canonical_label
from .sources import Sample, _read_csv, register_format

LABELS_CSV = "labels.csv"
VOTES_CSV = "votes.csv"
IMAGES_DIR = "images"
SOFT_LABEL_MODES = ("votes",)
VOTE_PREFIX = "vote_"


def vote_columns(header: Sequence[str], where: str | Path) -> dict[str, str]:
    """{column: canonical label} for the `vote_<emotion>` columns (`vote_centropy`, an entropy, is not a vote)."""
    cols = {}
    for h in header:
        if not h.startswith(VOTE_PREFIX) or h.endswith("entropy"):
            continue
        try:
            cols[h] = canonical_label(h[len(VOTE_PREFIX):], f"{where}: column {h}")
        except LabelError:
            raise LabelError(where, f"vote column {h!r} names no emotion; vote columns are vote_<label>, e.g. vote_happy") from None
    if not cols:
        raise BadInputError(where, f"no vote_<emotion> columns (found {list(header)}); soft_labels: votes needs them")
    return cols


def vote_target(row: dict[str, str], columns: dict[str, str], where: str) -> dict[str, float]:
    """One row's votes as a distribution over labels; a blank, negative or non-numeric vote, or a row whose votes do
    not sum to a positive number, is an error naming the row."""
    acc: dict[str, float] = {}
    for col, label in columns.items():
        raw = (row.get(col) or "").strip()
        try:
            v = float(raw)
        except ValueError:
            raise BadInputError(where, f"vote column {col}: {raw!r} is not a number") from None
        if not v >= 0 or v == float("inf"):  # also catches nan
            raise BadInputError(where, f"vote column {col}: {raw!r} is not a finite number >= 0")
        acc[label] = acc.get(label, 0.0) + v
    total = sum(acc.values())
    if total <= 0:
        raise BadInputError(where, f"the votes ({', '.join(columns)}) sum to {total:g}: soft targets need a positive sum")
    return {k: v / total for k, v in acc.items() if v > 0}


def images_root(root: Path) -> Path:
    return root / IMAGES_DIR if (root / IMAGES_DIR).is_dir() else root


def load_taiwanese(root: str | Path, split: str | None = None, soft_labels: str | None = None) -> list[Sample]:
    """Samples of a labels.csv folder; subject = performer. `soft_labels="votes"` adds the observers' votes as soft
    targets (votes.csv beside labels.csv, matched by `file`)."""
    root = Path(root)
    if soft_labels not in (None, "", "none", *SOFT_LABEL_MODES):
        raise BadInputError(root, f"soft_labels {soft_labels!r}: choose one of {', '.join(SOFT_LABEL_MODES)} (or leave it out)")
    labels_csv = root / LABELS_CSV
    header, rows = _read_csv(labels_csv)
    missing = {"file", "label"} - set(header)
    if missing:
        raise BadInputError(labels_csv, f"lacks column(s) {sorted(missing)}; found {header}; expected file,subject,label")
    votes: dict[str, tuple[dict[str, str], str]] = {}
    columns: dict[str, str] = {}
    if soft_labels == "votes":
        votes_csv = root / VOTES_CSV
        if not votes_csv.is_file():
            raise BadInputError(votes_csv, "not found: soft_labels: votes reads the observers' votes from it")
        vheader, vrows = _read_csv(votes_csv)
        if "file" not in vheader:
            raise BadInputError(votes_csv, f"lacks the column 'file'; found {vheader}")
        columns = vote_columns(vheader, votes_csv)
        votes = {(r.get("file") or "").strip(): (r, f"{votes_csv}:{i}") for i, r in enumerate(vrows, start=2)}
    img_root = images_root(root)
    samples = []
    for i, row in enumerate(rows, start=2):
        where = f"{labels_csv}:{i}"
        name = (row.get("file") or "").strip()
        if not name:
            raise BadInputError(where, "empty file name")
        if row.get("label") is None:
            raise BadInputError(where, "row has too few fields")
        row_split = (row.get("split") or "").strip() or None
        if split is not None and row_split != split:
            continue
        soft = None
        if soft_labels == "votes":
            if name not in votes:
                raise BadInputError(where, f"{name}: no row in {VOTES_CSV} for this image (soft_labels: votes)")
            vrow, vwhere = votes[name]
            soft = vote_target(vrow, columns, vwhere)
        subject = (row.get("subject") or "").strip() or None
        samples.append(Sample(path=img_root / name, label=canonical_label(row["label"], where), subject=subject,
                              split=row_split, source=where, soft=soft))
    if not samples:
        raise BadInputError(labels_csv, "no rows" + (f" with split={split!r}" if split else ""))
    return samples


def require_subjects(samples: Sequence[Sample], what: str = "grouping by subject") -> None:
    """Refuse samples without a subject where subjects are needed, naming the first such file or row."""
    for s in samples:
        if not s.subject:
            raise BadInputError(s.where, f"no subject (performer) for this image, and {what} needs one: give labels.csv "
                                         "or the manifest a `subject` column, or name CK+ files S###_...")


register_format("taiwanese")(lambda p, o: load_taiwanese(p, split=o.split, soft_labels=o.soft_labels))
