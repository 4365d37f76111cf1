"""Several runs side by side: cross-validation folders (cv.json), training runs (summary.json / best.json) and
evaluation outputs (eval.json), one row each, so backbones and protocols can be compared in one table.

Reads only the JSON files those commands write (no torch), so it is quick and works on copied result folders.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import kinds
from ..errors import BadInputError
from ..io import atomic_write_text
from ..tables import render_table

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
COLUMNS = ["run", "kind", "n", "accuracy", "balanced accuracy", "macro-F1", "backbone", "data"]


@dataclass
class ReportRow:
    """One run's headline scores; `std` is filled for cross-validation (over folds) and empty otherwise."""

    run: str
    kind: str
    n: int | None
    scores: dict[str, float | None]
    std: dict[str, float] = field(default_factory=dict)
    backbone: str = ""
    data: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(path, f"not a readable JSON file ({exc})") from None
    if not isinstance(d, dict):
        raise BadInputError(path, "expected a JSON object")
    return d


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def row_from_cv(path: Path, d: dict[str, Any]) -> ReportRow:
    ok, failed = d.get("folds_ok", 0), d.get("folds_failed", 0)
    note = f"{ok}/{ok + failed} folds" + ("" if d.get("complete", True) else ", incomplete")
    group = ", subject" if d.get("group_by") == "subject" else ""
    n = (d.get("pooled") or {}).get("n", d.get("n"))
    return ReportRow(str(path), f"cv {d.get('k')}-fold{group}", n, {m: _num((d.get("mean") or {}).get(m)) for m in METRICS},
                     {m: float(v) for m, v in (d.get("std") or {}).items() if _num(v) is not None},
                     d.get("backbone", ""), d.get("data", ""), note)


def row_from_eval(path: Path, d: dict[str, Any]) -> ReportRow:
    backbone = ""
    try:  # the model the evaluation scored, when its card is still where it was
        from ..models.card import read_card

        backbone = read_card(d["model"])[0].backbone
    except Exception:
        pass
    return ReportRow(str(path), "eval", d.get("n"), {m: _num(d.get(m)) for m in METRICS}, {}, backbone, d.get("data", ""),
                     f"model {d.get('model', '')}")


def row_from_train(path: Path) -> ReportRow:
    """Validation scores of the best epoch (summary.json), else the best checkpoint's card metrics."""
    cfg: dict[str, Any] = {}
    if (path / "config.yaml").is_file():
        try:
            cfg = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            cfg = {}
    card = _json(path / "best.json") if (path / "best.json").is_file() else {}
    if (path / "summary.json").is_file():
        s = _json(path / "summary.json")
        best = s.get("best") or {}
        scores = {m: _num(best.get(f"val_{m}")) for m in METRICS}
        n = (s.get("data") or {}).get("n_val")
        note = f"validation, best epoch {s.get('best_epoch')}"
    else:
        val = (card.get("metrics") or {}).get("val") or {}
        scores = {m: _num(val.get(m)) for m in METRICS}
        n = val.get("n")
        note = f"validation (model card), epoch {(card.get('metrics') or {}).get('epoch')}"
    data = cfg.get("data") or ((card.get("training") or {}).get("data") or {}).get("train", "")
    return ReportRow(str(path), "train", n, scores, {}, cfg.get("backbone") or card.get("backbone", ""), data, note)


def _row(kind: str | None, folder: Path, d: dict[str, Any]) -> ReportRow | None:
    """The row builder for a result file's kind (its `kind` field, see emotune.kinds); None for other kinds."""
    if kind == kinds.kind_name(kinds.CV):
        return row_from_cv(folder, d)
    if kind == kinds.kind_name(kinds.EVAL):
        return row_from_eval(folder, d)
    if kind == kinds.kind_name(kinds.TRAIN):
        return row_from_train(folder)
    return None


def load_run(path: str | Path) -> ReportRow:
    """A row for a cv folder, an evaluate --out folder or a train run folder (or one of their JSON files), by the
    `kind` each result file carries (older files without one: by their name)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".json":
        d = _json(p)
        row = _row(kinds.kind_of(d, p.name), p.parent, d)
        if row is None:
            raise BadInputError(p, f"not a cv, eval or train result (kind {d.get('kind')!r})")
        return row
    if not p.is_dir():
        raise BadInputError(p, "no such run folder")
    for name in ("cv.json", "eval.json", "summary.json"):
        if (p / name).is_file():
            d = _json(p / name)
            row = _row(kinds.kind_of(d, name), p, d)
            if row is not None:
                return row
    if (p / "best.json").is_file():
        return row_from_train(p)
    raise BadInputError(p, "not a run folder: expected cv.json (emotune cv), eval.json (emotune evaluate --out) "
                           "or summary.json/best.json (emotune train)")


def _cell(v: float | None, std: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f} ± {std:.4f}" if std is not None else f"{v:.4f}"


def render_markdown(rows: list[ReportRow]) -> str:
    cells = [[r.run, r.kind, "-" if r.n is None else str(r.n), *(_cell(r.scores.get(m), r.std.get(m)) for m in METRICS),
              r.backbone or "-", r.data or "-"] for r in rows]
    notes = [f"- `{r.run}`: {r.note}" for r in rows if r.note]
    text = "# Runs side by side\n\n" + render_table(COLUMNS, cells) + "\n"
    text += "\ncv: mean ± std over folds of the held-out fold scores; train: validation scores of the best epoch; eval: the evaluated data.\n"
    return text + ("\n" + "\n".join(notes) + "\n" if notes else "")


def render_report(paths: list[str | Path], fmt: str = "md") -> str:
    """The side-by-side table of `paths` as Markdown or JSON."""
    rows = [load_run(p) for p in paths]
    if fmt == "json":
        return json.dumps([r.to_dict() for r in rows], indent=2) + "\n"
    if fmt != "md":
        raise ValueError(f"format must be md or json, not {fmt!r}")
    return render_markdown(rows)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """`emotune report RUN_DIR... [--out FILE] [--format md|json]`."""
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="cv folders, train run folders or evaluate --out folders")
    parser.add_argument("--out", help="also write the report to this file")
    parser.add_argument("--format", default="md", choices=["md", "json"], help="report format (default: md)")


def run_report_command(args: argparse.Namespace) -> int:
    text = render_report(args.runs, args.format)
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
