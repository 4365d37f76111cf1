"""Continuous targets (valence, arousal, any rating) and their scales.

Every target is learnt and predicted on ONE scale, [-1, 1]: a rating scale is mapped linearly by its end points,
`unit = 2 (v - lo) / (hi - lo) - 1`, so on a 1-7 scale 1 -> -1, 4 -> 0 and 7 -> 1, and AffectNet's [-1, 1] is kept.
The source scale (lo, hi) is recorded in the model card (`targets`), and :func:`from_unit` maps predictions back.
A scale is known from a dataset format (AffectNet, AFEW-VA, Aff-Wild2, OASIS, IAPS...) or given
(`--target-scale 1,7`); a manifest's scale is never guessed from its values.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import BadInputError, ConfigError

UNIT: tuple[float, float] = (-1.0, 1.0)
SCALED_COLUMN = re.compile(r"(\w+)@(-?[\d.]+):(-?[\d.]+)")


def scaled_column(name: str, scale: Sequence[float] | None) -> str:
    """The self-describing column a fold manifest writes a target to: `valence@1:7` (values on that scale)."""
    lo, hi = scale or UNIT
    return f"{name}@{lo:g}:{hi:g}"


def to_unit(value: float, scale: Sequence[float]) -> float:
    """A value on `scale` (lo, hi) -> [-1, 1] (linear in the end points)."""
    lo, hi = float(scale[0]), float(scale[1])
    return 2.0 * (float(value) - lo) / (hi - lo) - 1.0


def from_unit(value, scale: Sequence[float]):
    """A value (or numpy array) on [-1, 1] -> the source `scale` (lo, hi): the inverse of :func:`to_unit`."""
    lo, hi = float(scale[0]), float(scale[1])
    return lo + (value + 1.0) * (hi - lo) / 2.0


def parse_scale(text: str | Sequence[float] | None, where: str = "--target-scale") -> tuple[float, float] | None:
    """`"1,7"` / `"-10..10"` / (1, 7) -> (1.0, 7.0); None or "" or "auto" -> None (the format must know it)."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "auto")):
        return None
    parts = re.split(r"\s*(?:,|\.\.|:)\s*", text.strip()) if isinstance(text, str) else list(text)
    try:
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {text!r} is not a scale LO,HI such as 1,7") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"{where}: {text!r}: the scale's low end must be below its high end")
    return lo, hi


def target_name(column: str) -> str:
    """The output name of a target column: valence_mean, Valence, valmn -> valence; arousal_mean, aromn -> arousal;
    any other column keeps its (lower-case) name. `name=column` in --targets names it explicitly."""
    key = column.strip().lower()
    if key.startswith("val") and not key.startswith("valid"):
        return "valence"
    if key.startswith("aro"):
        return "arousal"
    return key


@dataclass(frozen=True)
class TargetSpec:
    """A target: its output name, the data column it is read from, and that column's scale (None = from the format)."""

    name: str
    column: str
    scale: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "column": self.column, "scale": list(self.scale) if self.scale else None}


def parse_targets(columns: Sequence[str], scale: str | Sequence[float] | None = None) -> list[TargetSpec]:
    """`--targets valence_mean,arousal_mean` (or `valence=valmn,...`) with one `--target-scale` for all of them."""
    sc = parse_scale(scale)
    specs = []
    for c in columns:
        name, _, col = c.partition("=") if "=" in c else ("", "", c)
        col = col.strip()
        if not col:
            raise ConfigError(f"--targets: empty column in {list(columns)}")
        m = SCALED_COLUMN.fullmatch(col)  # "valence@1:7": a fold manifest's column that carries its scale
        specs.append(TargetSpec(name.strip() or (m.group(1) if m else target_name(col)), col,
                                sc or ((float(m.group(2)), float(m.group(3))) if m else None)))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--targets: two columns give the same output name {names}; name them (name=column)")
    return specs


def read_value(raw: str | float | None, where: str, column: str, scale: Sequence[float],
               missing: Sequence[float] = ()) -> float:
    """One cell of a target column on `scale`, mapped to [-1, 1]. An empty cell or a `missing` code (AffectNet's -2,
    Aff-Wild2's -5) is NaN (not annotated: masked in the loss and metrics); text, 'nan'/'inf' and values outside the
    scale are errors naming `where` (file:line)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return math.nan
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise BadInputError(where, f"{column}: {raw!r} is not a number") from None
    if any(v == m for m in missing):
        return math.nan
    if not math.isfinite(v):
        raise BadInputError(where, f"{column}: {raw!r} is not a finite number (leave the cell empty when not annotated)")
    lo, hi = scale
    if not lo - 1e-9 <= v <= hi + 1e-9:
        raise BadInputError(where, f"{column}: {v:g} is outside its scale {lo:g}..{hi:g}")
    return to_unit(v, scale)
