"""Merge datasets whose label sets differ into one training set, explicitly.

Each source says how its labels map onto the model's (`label_map`, a label to another or to null = drop), which
of the model's labels it lacks (`missing`: FER2013 has no contempt, CK+ has no neutral), and its share of the
training draws (`weight`). A label a source lacks without saying so is an error, never a silent gap; validation
keeps each sample's source, so the report gives per-source metrics.

    sources:
      - {name: fer2013, data: ../shared/data/fer2013/train, val_data: ../shared/data/fer2013/val, missing: [contempt]}
      - {name: ckplus, data: ../shared/data/ckplus48, val_fraction: 0.2, weight: 0.3, missing: [neutral]}

A source with `synthetic: true` (faces from `emotune synth sample`) gets its share of the draws and its weight like
any other, but it is never validated or tested on: it has no hold-out, and `val_data`, `val_split` or `val_fraction`
on it are refused. A folder written by `emotune synth sample` (it holds synthetic.json) must be marked so.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..taxonomy import canonical_label, resolve_labels
from .sources import Sample, load_samples
from .splits import holdout_split

DROP = (None, "drop", "none", "")


@dataclass
class SourceSpec:
    name: str
    data: str
    val_data: str | None = None
    format: str = "auto"
    split: str | None = None
    val_split: str | None = None
    val_fraction: float | None = None
    weight: float | None = None  # share of training draws (relative); None for every source = natural sizes
    label_map: dict[str, str | None] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    soft_labels: str | None = None  # "votes": soft targets from the observers' vote columns (taiwanese format)
    targets: list[str] = field(default_factory=list)  # target columns (manifest, rating table)
    target_scale: str | None = None
    tier: str | None = None  # twitter_i agreement tier
    synthetic: bool = False  # generated faces: training draws only, never validation or test

    def load(self, drop_labels: Sequence[str] = (), val: bool = False, ferplus_mode: str = "majority") -> list[Sample]:
        """This source's train (or explicit val) samples, mapped; empty class folders are excused for the labels it
        leaves out on purpose (global drops, `label_map: {x: null}`, `missing`)."""
        excused = [*drop_labels, *(k for k, v in self.label_map.items() if v is None), *self.missing]
        data, split = (self.val_data or self.data, self.val_split) if val else (self.data, self.split)
        return _map(load_samples(data, self.format, split=split, ferplus_mode=ferplus_mode, drop_labels=excused,
                                 soft_labels=self.soft_labels, targets=self.targets, target_scale=self.target_scale,
                                 tier=self.tier), self)


def parse_sources(raw: Sequence[dict[str, Any]]) -> list[SourceSpec]:
    """Validate the `sources:` list of a config (names unique, keys known, maps onto canonical labels)."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError("sources: expected a non-empty list of {name, data, ...} mappings")
    known = {f.name for f in dataclasses.fields(SourceSpec)}
    specs = []
    for i, r in enumerate(raw):
        if not isinstance(r, dict) or "data" not in r:
            raise ConfigError(f"sources[{i}]: each source needs at least `data` (and a `name`)")
        unknown = sorted(set(r) - known)
        if unknown:
            raise ConfigError(f"sources[{i}]: unknown key(s) {unknown}; known: {sorted(known)}")
        r = {**r, "name": str(r.get("name") or f"source{i + 1}")}
        lm = {canonical_label(k, f"sources[{i}].label_map"): (None if v in DROP else canonical_label(v, f"sources[{i}].label_map"))
              for k, v in (r.get("label_map") or {}).items()}
        missing = [canonical_label(m, f"sources[{i}].missing") for m in (r.get("missing") or [])]
        spec = SourceSpec(**{**r, "label_map": lm, "missing": missing, "synthetic": _flag(r.get("synthetic", False), i)})
        _check_synthetic(spec, i)
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"sources: names must be unique, got {names}")
    given = [s.weight is not None for s in specs]
    if any(given) and not all(given):
        raise ConfigError("sources: give a `weight` to every source or to none")
    if any(given) and any(s.weight <= 0 for s in specs):
        raise ConfigError("sources: weights must be positive")
    return specs


def _flag(value: Any, i: int) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ConfigError(f"sources[{i}]: synthetic must be true or false, got {value!r}")


def _check_synthetic(spec: SourceSpec, i: int) -> None:
    """A synthetic source trains only; a synthetic set that is not marked so would be validated on."""
    if spec.synthetic:
        given = [k for k in ("val_data", "val_split", "val_fraction") if getattr(spec, k) is not None]
        if given:
            raise ConfigError(f"sources[{i}] {spec.name!r}: synthetic faces are never used for validation or test; "
                              f"remove {', '.join(given)} from it")
        return
    from pathlib import Path

    p = Path(spec.data)
    if any((d / "synthetic.json").is_file() for d in (p, p.parent) if str(d) not in ("", ".")):
        raise ConfigError(f"sources[{i}] {spec.name!r}: {spec.data} holds synthetic faces (synthetic.json); "
                          "mark the source `synthetic: true` so that it is never used for validation")


def _map(samples: list[Sample], spec: SourceSpec) -> list[Sample]:
    out = []
    for s in samples:
        target = spec.label_map.get(s.label, s.label) if s.label else ""
        if target is None:
            continue
        soft = None
        if s.soft is not None:
            acc: Counter = Counter()
            for k, v in s.soft.items():
                t = spec.label_map.get(k, k)
                if t is not None:
                    acc[t] += v
            total = sum(acc.values())
            soft = {k: v / total for k, v in acc.items()} if total > 0 else None
        out.append(dataclasses.replace(s, label=target, soft=soft, dataset=spec.name))
    return out


@dataclass
class Merged:
    train: list[Sample]
    val: list[Sample]
    labels: tuple[str, ...]
    describe: dict[str, Any]


def load_merged(specs: Sequence[SourceSpec], labels_spec: str, seed: int = 0, ferplus_mode: str = "majority",
                default_val_fraction: float = 0.1, drop_labels: Sequence[str] = ()) -> Merged:
    """Load, map, split (per source) and check every source; see the module docstring."""
    train, val, per = [], [], {}
    examples: dict[str, dict[str, str]] = {}  # per source, the first file or row of each label, to name in errors
    for spec in specs:
        tr = spec.load(drop_labels, ferplus_mode=ferplus_mode)
        if spec.synthetic:
            va = []  # never validated on (parse_sources refused val_* keys on it)
        elif spec.val_data or spec.val_split:
            va = spec.load(drop_labels, val=True, ferplus_mode=ferplus_mode)
        else:
            frac = default_val_fraction if spec.val_fraction is None else spec.val_fraction
            tr, va = holdout_split(tr, frac, seed) if frac > 0 else (tr, [])
        tr = [s for s in tr if s.label not in drop_labels]
        va = [s for s in va if s.label not in drop_labels]
        if not tr:
            raise ConfigError(f"source {spec.name!r} ({spec.data}): no training images left after label mapping")
        train += tr
        val += va
        per[spec.name] = (spec, Counter(s.label for s in tr), len(va))
        examples[spec.name] = {s.label: s.where for s in reversed(tr)}
    present = [s.label for s in train if s.label]
    labels = resolve_labels(labels_spec, present) if present or labels_spec != "auto" else ()
    problems = []
    for name, (spec, counts, _) in per.items():
        lacks = [c for c in labels if counts.get(c, 0) == 0] if set(counts) - {""} else []  # a targets-only source lacks none
        silent = [c for c in lacks if c not in spec.missing]
        if silent:
            problems.append(f"source {name!r} has no {silent} images: add `missing: {silent}` to it to accept that, "
                            "or map a label onto them with `label_map`")
        stray = sorted(set(counts) - set(labels) - {""})
        if stray:
            problems.append(f"source {name!r} has labels {stray} outside the model's {list(labels)} (e.g. {examples[name][stray[0]]}): "
                            "map them (`label_map`) or drop them (label_map: {label: null})")
    if problems:
        raise ConfigError("; ".join(problems))
    describe = {"sources": {name: {"data": spec.data, "val": "none (synthetic)" if spec.synthetic else spec.val_data or spec.val_split or "hold-out", "n_train": sum(c.values()),
                                   "n_val": nv, "weight": spec.weight, "label_map": spec.label_map, "missing": spec.missing,
                                   **({"synthetic": True} if spec.synthetic else {}),
                                   "class_counts": {k: v for k, v in c.items() if k}} for name, (spec, c, nv) in per.items()}}
    return Merged(train, val, labels, describe)


def source_sample_weights(samples: Sequence[Sample], specs: Sequence[SourceSpec]) -> np.ndarray | None:
    """Per-sample draw weights giving each source its share (`weight` / sum of weights); None = natural sizes."""
    if all(s.weight is None for s in specs):
        return None
    share = {s.name: s.weight / sum(x.weight for x in specs) for s in specs}
    counts = Counter(s.dataset for s in samples)
    return np.array([share[s.dataset] / counts[s.dataset] for s in samples])
