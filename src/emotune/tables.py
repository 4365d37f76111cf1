"""One table renderer for every report: Markdown (pipe tables) or fixed-width text for a terminal.

Hand-written `"| " + " | ".join(...)` lines drifted apart across reports; this is the one place that knows the format.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

Fmt = Literal["md", "text"]


def _cell(value: Any, fmt: Fmt) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\n", " ")
    return text.replace("|", "\\|") if fmt == "md" else text


def render_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], fmt: Fmt = "md",
                 align: Sequence[str] | None = None, gap: int = 2) -> str:
    """`header` and `rows` (cells formatted by the caller; None prints empty) as a Markdown pipe table or as
    fixed-width text columns. `align` gives "<" (left, the default) or ">" (right) per column; text columns are
    `gap` spaces apart and the last one is not padded. Ends without a newline."""
    if fmt not in ("md", "text"):
        raise ValueError(f"table format must be 'md' or 'text', not {fmt!r}")
    n = len(header)
    for i, r in enumerate(rows):
        if len(r) != n:
            raise ValueError(f"table row {i + 1} has {len(r)} cells, the header {n}")
    align = list(align or ["<"] * n)
    if len(align) != n or set(align) - {"<", ">"}:
        raise ValueError(f"align needs one of '<' or '>' per column ({n}), got {align}")
    head = [_cell(h, fmt) for h in header]
    body = [[_cell(c, fmt) for c in r] for r in rows]
    if fmt == "md":
        rule = "|" + "".join("---:|" if a == ">" else "---|" for a in align)
        return "\n".join(["| " + " | ".join(head) + " |", rule] + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(r[j]) for r in [head, *body]) for j in range(n)]

    def line(cells: list[str]) -> str:
        out = [f"{c:{a}{w}}" for c, a, w in zip(cells[:-1], align[:-1], widths[:-1])]
        last = f"{cells[-1]:{align[-1]}{widths[-1]}}" if align[-1] == ">" else cells[-1]
        return (" " * gap).join(out + [last]).rstrip()

    return "\n".join(line(r) for r in [head, *body])


def confusion_table(labels: Sequence[str], confusion: Sequence[Sequence[Any]], fmt: Fmt = "md") -> str:
    """A confusion matrix with true labels as rows and predicted labels as columns."""
    return render_table(["true \\ pred", *labels], [[labels[i], *row] for i, row in enumerate(confusion)], fmt)
