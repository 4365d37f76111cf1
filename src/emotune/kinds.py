"""What each result file is: every JSON that a command writes for later reading carries `"kind": "<name>/<version>"`,
so readers such as `emotune report` dispatch on it instead of guessing from file names."""
from __future__ import annotations

from typing import Any

TRAIN = "emotune-train/1"  # summary.json of a training run
EVAL = "emotune-eval/1"  # eval.json of `emotune evaluate --out`
CV = "emotune-cv/1"  # cv.json of `emotune cv`
CASCADE = "emotune-cascade/1"  # cascade.json of `emotune cascade`

# files written before kinds existed, known by name only
LEGACY_FILE_KINDS = {"summary.json": TRAIN, "eval.json": EVAL, "cv.json": CV, "cascade.json": CASCADE}


def kind_name(kind: str) -> str:
    """"emotune-cv/1" -> "emotune-cv": readers accept every version they know the layout of."""
    return kind.split("/", 1)[0]


def kind_of(d: dict[str, Any], file_name: str = "") -> str | None:
    """The file's kind name: its own `kind` field, else (older files) what its name says; None if neither tells."""
    k = d.get("kind")
    if isinstance(k, str) and k.startswith("emotune-"):
        return kind_name(k)
    legacy = LEGACY_FILE_KINDS.get(file_name)
    return kind_name(legacy) if legacy else None
