"""Leave-one-source-out: train on every source but one, score the one left out END TO END (detect, align, classify the
largest face, as `emotune evaluate --detect` does), with 95% intervals by a cluster bootstrap over its subjects.

Recipes are chosen on this table, never on a test split (issue 14). Config (YAML; see configs/loso_faces.yaml):

    labels: basic7
    train: {backbone: mobilenetv2, pretrained: ..., epochs: 6, epoch_samples: 20000, ...}   # TrainConfig keys
    detector: yunet
    baseline: fer2013            # one extra run on this source alone: the "FER2013 only" row per left-out source
    bootstrap: 2000
    sources:                     # merged-engine source specs (data/merge.py), plus `test:` = how it is scored when left out
      - name: ckplus
        data: ../shared/data/ckplus48
        missing: [neutral]
        label_map: {contempt: null}
        test: {data: ../shared/data/ckplus48, group: subject, scale: 4, pad: 96}   # 48 px crops -> photos
      - name: taiwanese
        data: runs/crops/taiwanese   # `emotune faces crop` output, for training
        soft_labels: votes
        test: {data: ../shared/data/taiwanese, group: subject}                       # the photos themselves
      - name: fer2013
        data: ../shared/data/fer2013/train
        val_data: ../shared/data/fer2013/val
        test: {data: ../shared/data/fer2013/val, scale: 4, pad: 96}                  # no subjects: images are clusters

A source may also say `train_when_left_out: {...}` (TrainConfig keys) for its own fold: the FER2013 fold must not start
from weights trained on FER2013 (today's bundled model), so it starts from ImageNet instead. A source without `test:` is
always trained on, never left out. Each fold's run lives in OUT/<left-out>/ (resumed if
interrupted, skipped if finished); OUT/loso.json and OUT/loso.md hold the table.
"""
from __future__ import annotations

import copy
import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInputError, ConfigError

NO_FACE = "(no face)"
KIND = "emotune-loso/1"
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
TEST_KEYS = {"data", "format", "split", "group", "scale", "pad", "max_samples"}
TOP_KEYS = {"labels", "train", "sources", "detector", "baseline", "bootstrap", "seed", "max_test"}


@dataclass
class TestSpec:
    """How a left-out source is scored: its photos (`data`), grouped by `subject` or not, and for face crops
    (CK+, FER2013) an upscale + border (`scale`, `pad`) that turns each crop into a photo a detector can find."""

    data: str
    format: str = "auto"
    split: str | None = None
    group: str | None = None  # "subject": cluster bootstrap over subjects; None: every image is its own cluster
    scale: int = 1
    pad: int = 0
    max_samples: int = 0


@dataclass
class LosoConfig:
    labels: str
    train: dict[str, Any]
    sources: list[dict[str, Any]]
    tests: dict[str, TestSpec]
    detector: str = "yunet"
    fold_train: dict[str, dict[str, Any]] = field(default_factory=dict)  # per left-out source: train overrides
    baseline: str | None = None
    bootstrap: int = 2000
    seed: int = 0
    max_test: int = 0


def parse_config(raw: dict[str, Any], where: str = "loso config") -> LosoConfig:
    """Validate a LOSO config; every problem names the key."""
    from ..data.merge import parse_sources
    from ..train.config import _field_types

    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(TOP_KEYS)}")
    train = dict(raw.get("train") or {})
    bad = sorted(set(train) - set(_field_types()))
    if bad:
        raise ConfigError(f"{where}: train: unknown option(s) {bad}; see `emotune train --help`")
    clash = sorted(set(train) & {"data", "sources", "out", "resume", "labels"})
    if clash:
        raise ConfigError(f"{where}: train: {clash} are set by the protocol per fold; remove them")
    sources = [dict(s) for s in raw.get("sources") or []]
    tests: dict[str, TestSpec] = {}
    fold_train: dict[str, dict[str, Any]] = {}
    plain = []
    for i, s in enumerate(sources):
        test = s.pop("test", None)
        extra = s.pop("train_when_left_out", None)
        if extra is not None:
            if not isinstance(extra, dict) or sorted(set(extra) - set(_field_types())):
                raise ConfigError(f"{where}: sources[{i}].train_when_left_out must be TrainConfig options, got {extra!r}")
            fold_train[str(s.get("name") or f"source{i + 1}")] = dict(extra)
        plain.append(s)
        if test is None:
            continue
        if not isinstance(test, dict) or "data" not in test:
            raise ConfigError(f"{where}: sources[{i}].test needs at least `data` (the photos scored when it is left out)")
        bad = sorted(set(test) - TEST_KEYS)
        if bad:
            raise ConfigError(f"{where}: sources[{i}].test: unknown key(s) {bad}; known: {sorted(TEST_KEYS)}")
        if test.get("group") not in (None, "subject", "none"):
            raise ConfigError(f"{where}: sources[{i}].test.group must be subject or none, got {test.get('group')!r}")
        tests[str(s.get("name") or f"source{i + 1}")] = TestSpec(**{**test, "data": str(test["data"]),
                                                                    "group": None if test.get("group") == "none" else test.get("group")})
    specs = parse_sources(plain)
    names = [s.name for s in specs]
    if not tests:
        raise ConfigError(f"{where}: no source has a `test:`; say how each source left out is scored")
    if len(specs) < 2:
        raise ConfigError(f"{where}: leave-one-source-out needs at least 2 sources, got {names}")
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in names:
        raise ConfigError(f"{where}: baseline {baseline!r} is not one of the sources {names}")
    return LosoConfig(str(raw.get("labels", "basic7")), train, plain, tests, str(raw.get("detector", "yunet")), fold_train, baseline,
                      int(raw.get("bootstrap", 2000)), int(raw.get("seed", 0)), int(raw.get("max_test", 0)))


def load_config(path: str | Path) -> LosoConfig:
    from ..train.config import load_yaml

    return parse_config(load_yaml(path), str(path))


# ---------------------------------------------------------------------------------------------- metrics with intervals

def scores(y: np.ndarray, pred: np.ndarray, classes: Sequence[int]) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 over the classes present in `y` (a prediction of any other class,
    "no face" included, is simply wrong)."""
    y, pred = np.asarray(y), np.asarray(pred)
    if len(y) == 0:
        return {m: float("nan") for m in METRICS}
    recall, f1 = [], []
    for c in classes:
        tp = float(np.sum((y == c) & (pred == c)))
        n_true, n_pred = float(np.sum(y == c)), float(np.sum(pred == c))
        r = tp / n_true if n_true else 0.0
        p = tp / n_pred if n_pred else 0.0
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    return {"accuracy": float(np.mean(y == pred)), "balanced_accuracy": float(np.mean(recall)), "macro_f1": float(np.mean(f1))}


def _cluster_intervals(groups: Sequence[str], stat_of_rows, n_resamples: int, seed: int) -> dict[str, list[float] | None]:
    """95% percentile interval of `stat_of_rows(rows, metric)` for each metric, resampling whole clusters with
    scipy.stats.bootstrap; None where there are fewer than two clusters."""
    from scipy.stats import bootstrap

    names, gidx = np.unique(np.asarray(groups), return_inverse=True)
    if len(names) < 2 or n_resamples < 1:
        return {m: None for m in METRICS}
    members = [np.flatnonzero(gidx == k) for k in range(len(names))]
    out = {}
    for m in METRICS:
        def stat(ids: np.ndarray, m: str = m) -> float:
            return stat_of_rows(np.concatenate([members[int(i)] for i in ids]), m)

        res = bootstrap((np.arange(len(names)),), stat, n_resamples=n_resamples, vectorized=False, method="percentile",
                        confidence_level=0.95, random_state=np.random.default_rng(seed))
        out[m] = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    return out


def cluster_bootstrap(y: np.ndarray, pred: np.ndarray, groups: Sequence[str], classes: Sequence[int], n_resamples: int = 2000,
                      seed: int = 0) -> dict[str, list[float] | None]:
    """95% percentile intervals of each metric, resampling whole clusters (subjects): the images of one subject are not
    independent, so an image bootstrap would give intervals that are too narrow."""
    return _cluster_intervals(groups, lambda rows, m: scores(y[rows], pred[rows], classes)[m], n_resamples, seed)


# ---------------------------------------------------------------------------------------------- end-to-end scoring

def as_photo(rgb: np.ndarray, scale: int, pad: int) -> np.ndarray:
    """A face crop turned into a photo a detector can find: upscaled (INTER_CUBIC) and bordered (replicated edge), as
    benchmarks/posed_accuracy.py does for CK+."""
    import cv2

    if scale > 1:
        rgb = cv2.resize(rgb, (rgb.shape[1] * scale, rgb.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    if pad > 0:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return rgb


def test_samples(name: str, spec_raw: dict[str, Any], test: TestSpec, labels: Sequence[str], max_samples: int = 0) -> list:
    """The left-out source's photos, with its label map applied; a label outside the model's labels or a missing
    subject (where grouping is asked) is an error naming the file or row."""
    from ..data.dataset import filter_labels
    from ..data.formats_faces import require_subjects
    from ..data.merge import parse_sources
    from ..data.splits import stratified_subset

    spec = parse_sources([{**spec_raw, "data": test.data, "format": test.format, "split": test.split, "val_data": None,
                           "val_split": None}])[0]
    samples = spec.load()
    samples = filter_labels(samples, labels, [k for k, v in spec.label_map.items() if v is None], where=f"{name} test {test.data}")
    if test.group == "subject":
        require_subjects(samples, f"the cluster bootstrap of source {name!r} (test.group: subject)")
    return stratified_subset(samples, test.max_samples or max_samples, 0)


def score_end_to_end(model: str | Path, samples: Sequence, test: TestSpec, detector: str = "yunet", device: str = "auto",
                     show: bool = False, bootstrap_n: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The largest face of each photo through `Recognizer` (what predict runs); no face = wrong. Metrics over the
    classes present, with cluster-bootstrap intervals."""
    from ..data.images import read_image
    from ..inference.recognizer import Recognizer
    from ..progress import progress

    rec = Recognizer(model, detector=detector, device=device)
    labels = list(rec.labels)
    y, pred, groups, ids, unreadable = [], [], [], [], []
    for i, s in enumerate(progress(samples, show, desc="scoring", unit="img")):
        try:
            rgb = np.asarray(read_image(s.path, "rgb")) if s.pixels is None else np.asarray(read_image_array(s.pixels))
        except BadInputError as exc:
            unreadable.append(f"{exc.where}: {exc.problem}")
            continue
        faces = rec.predict(as_photo(rgb, test.scale, test.pad))
        best = max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None
        y.append(labels.index(s.label))
        pred.append(labels.index(best.label) if best else len(labels))
        groups.append(s.subject if test.group == "subject" else f"#{i}")
        ids.append(str(s.path) if s.path else f"#{i}")
    if not y:
        raise BadInputError(test.data, f"none of its {len(samples)} photos could be read")
    y_a, p_a = np.array(y), np.array(pred)
    classes = sorted(set(y))
    point = scores(y_a, p_a, classes)
    ci = cluster_bootstrap(y_a, p_a, groups, classes, bootstrap_n, seed)
    recall = {labels[c]: float(np.mean(p_a[y_a == c] == c)) for c in classes}
    predicted = {(labels + [NO_FACE])[j]: int(np.sum(p_a == j)) for j in range(len(labels) + 1) if np.any(p_a == j)}
    names = labels + [NO_FACE]
    photos = [{"id": i, "group": g, "true": labels[t], "pred": names[p]} for i, g, t, p in zip(ids, groups, y, pred)]
    return {"n": len(y), "clusters": len(set(groups)), "grouped_by": test.group or "image", "no_face": int(np.sum(p_a == len(labels))),
            "unreadable": unreadable, **point, "ci95": ci, "recall": recall, "predicted": predicted,
            "classes": [labels[c] for c in classes], "photos": photos}


def paired_difference(base: dict[str, Any], other: dict[str, Any], n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Two LOSO rows scored on the same photos (same left-out source and sample): each metric of `other` minus `base`,
    with a 95% percentile interval from resampling whole clusters (subjects) and the same rows on both sides."""
    a = {p["id"]: p for p in base.get("photos") or []}
    b = {p["id"]: p for p in other.get("photos") or []}
    common = [i for i in a if i in b]
    if not common or len(common) != len(a) or len(common) != len(b):
        raise ConfigError(f"left-out {base.get('left_out')}: the two rows were not scored on the same photos "
                          f"({len(a)} vs {len(b)}, {len(common)} shared); rerun both with per-photo predictions")
    names = sorted({a[i]["true"] for i in common} | {a[i]["pred"] for i in common} | {b[i]["pred"] for i in common})
    y = np.array([names.index(a[i]["true"]) for i in common])
    pa = np.array([names.index(a[i]["pred"]) for i in common])
    pb = np.array([names.index(b[i]["pred"]) for i in common])
    classes = sorted(set(y.tolist()))
    groups = [a[i]["group"] for i in common]
    cis = _cluster_intervals(groups, lambda rows, m: scores(y[rows], pb[rows], classes)[m] - scores(y[rows], pa[rows], classes)[m],
                             n_resamples, seed)
    base, other = scores(y, pa, classes), scores(y, pb, classes)
    out: dict[str, Any] = {"n": len(common), "clusters": len(set(groups))}
    for m in METRICS:
        out[m] = {"base": base[m], "other": other[m], "diff": float(other[m] - base[m]), "ci95": cis[m]}
    return out


def read_image_array(pixels: np.ndarray):
    from ..data.images import image_from_array

    return image_from_array(pixels, "rgb")


# ---------------------------------------------------------------------------------------------- the protocol

@dataclass
class Fold:
    name: str  # the run's folder name
    left_out: str | None  # the source left out (None: the baseline run)
    sources: list[dict[str, Any]]
    tests: list[str]  # the sources this run is scored on


def plan_folds(cfg: LosoConfig) -> list[Fold]:
    names = [str(s.get("name")) for s in cfg.sources]
    folds = [Fold(f"without_{n}", n, [s for s in cfg.sources if s.get("name") != n], [n]) for n in names if n in cfg.tests]
    if cfg.baseline:
        base = [s for s in cfg.sources if s.get("name") == cfg.baseline]
        folds.append(Fold(f"only_{cfg.baseline}", None, base, [n for n in names if n in cfg.tests and n != cfg.baseline]))
    return folds


def train_fold(cfg: LosoConfig, fold: Fold, out: Path, show: bool = True) -> Path:
    """Train one fold's model (skipped when finished, resumed when interrupted); returns its run folder."""
    from ..train import make_config, train

    run = out / fold.name
    if (run / "summary.json").is_file():
        return run
    extra = cfg.fold_train.get(fold.left_out, {}) if fold.left_out else {}
    values = {**copy.deepcopy(cfg.train), **copy.deepcopy(extra), "sources": copy.deepcopy(fold.sources), "labels": cfg.labels, "out": str(run),
              "progress": show, "resume": (run / "train_state.safetensors").is_file()}
    train(make_config(values))
    return run


def load_tests(cfg: LosoConfig, labels: Sequence[str]) -> dict[str, list]:
    """Every left-out source's photos, loaded before any training: a bad label or a missing subject fails now, not after
    hours of training."""
    by_name = {str(s.get("name")): s for s in cfg.sources}
    return {n: test_samples(n, by_name[n], t, labels, cfg.max_test) for n, t in cfg.tests.items()}


def score_fold(cfg: LosoConfig, fold: Fold, model: str | Path, tests: dict[str, list], device: str = "auto",
               show: bool = False, run: str | None = None) -> list[dict[str, Any]]:
    """`model` (the fold's, or one derived from it) scored end to end on each source the fold is tested on: the rows
    of loso.json."""
    rows = []
    for name in fold.tests:
        res = score_end_to_end(model, tests[name], cfg.tests[name], cfg.detector, device, show, cfg.bootstrap, cfg.seed)
        rows.append({"left_out": name, "model": "recipe" if fold.left_out else f"{cfg.baseline} only", "run": run or fold.name,
                     "trained_on": [s.get("name") for s in fold.sources],
                     "train_overrides": cfg.fold_train.get(fold.left_out, {}) if fold.left_out else {}, **res})
        print(f"loso: {run or fold.name} on {name}: accuracy {res['accuracy']:.3f}, macro-F1 {res['macro_f1']:.3f} "
              f"({res['n']} photos, {res['no_face']} without a face)", file=sys.stderr, flush=True)
    return rows


def loso_result(cfg: LosoConfig, labels: Sequence[str], rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The loso.json record: the protocol as configured, and its rows."""
    return {"kind": KIND, "labels": list(labels), "detector": cfg.detector, "train": cfg.train, "fold_train": cfg.fold_train,
            "baseline": cfg.baseline, "bootstrap": cfg.bootstrap, "sources": cfg.sources,
            "tests": {k: dataclasses.asdict(v) for k, v in cfg.tests.items()}, "rows": rows, "seconds": round(seconds, 1)}


def run_loso(cfg: LosoConfig, out: str | Path, device: str = "auto", show: bool = True, only: Sequence[str] = ()) -> dict[str, Any]:
    """Every fold: train, then score end to end on the left-out source(s). Returns the result dict (also loso.json)."""
    from ..io import atomic_write_json, atomic_write_text, check_writable_dir
    from ..taxonomy import resolve_labels

    out = check_writable_dir(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    labels = resolve_labels(cfg.labels) if cfg.labels != "auto" else None
    if labels is None:
        raise ConfigError("loso: give `labels` (e.g. basic7): every fold's model must share one label set")
    tests = load_tests(cfg, labels)
    folds = [f for f in plan_folds(cfg) if not only or f.name in only or (f.left_out in only)]
    rows = []
    t0 = time.perf_counter()
    for fold in folds:
        print(f"loso: {fold.name}: training on {[s.get('name') for s in fold.sources]}", file=sys.stderr, flush=True)
        run = train_fold(cfg, fold, out, show)
        rows += score_fold(cfg, fold, run, tests, device, show)
    result = loso_result(cfg, labels, rows, time.perf_counter() - t0)
    atomic_write_json(out / "loso.json", result)
    atomic_write_text(out / "loso.md", markdown(result))
    return result


def _cell(r: dict, m: str) -> str:
    ci = (r.get("ci95") or {}).get(m)
    return f"{100 * r[m]:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def markdown(result: dict[str, Any], command: str | None = None, machine: str | None = None) -> str:
    """The table: one row per (left-out source, model), recipe first, then the baseline."""
    tr = result["train"]
    lines = ["# Leave-one-source-out, end to end", "",
             f"Each row: a model trained on every source but the one left out (`recipe`), or on {result['baseline']} alone "
             f"(`{result['baseline']} only`), scored end to end on the left-out source's photos: {result['detector']} detection, "
             "alignment, the largest face classified (no face = wrong). Balanced accuracy and macro-F1 average over the classes "
             "present. 95% intervals: percentile bootstrap over subjects (performers for Taiwanese, CK+ subjects; FER2013 has "
             f"none, so over images), {result['bootstrap']} resamples (scipy.stats.bootstrap).", "",
             f"Training budget: {tr.get('epochs', 10)} epochs of {tr.get('epoch_samples') or 'one pass'} draws, backbone "
             f"{tr.get('backbone', 'mobilenetv2')}, labels {', '.join(result['labels'])}.", "",
             "| left out | model | trained on | photos | subjects | no face | accuracy % [95% CI] | balanced acc. % [95% CI] | macro-F1 % [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = sorted(result["rows"], key=lambda r: (r["left_out"], r["model"] != "recipe"))
    for r in order:
        lines.append(f"| {r['left_out']} | {r['model']} | {', '.join(r['trained_on'])} | {r['n']} | "
                     f"{r['clusters'] if r['grouped_by'] == 'subject' else '-'} | {r['no_face']} | {_cell(r, 'accuracy')} | "
                     f"{_cell(r, 'balanced_accuracy')} | {_cell(r, 'macro_f1')} |")
    wins = {}
    for r in result["rows"]:
        wins.setdefault(r["left_out"], {})[r["model"]] = r["accuracy"]
    verdict = [f"{k}: recipe {100 * v['recipe']:.1f} vs {100 * v[b]:.1f} ({'ahead' if v['recipe'] > v[b] else 'NOT ahead'})"
               for k, v in sorted(wins.items()) for b in v if b != "recipe" and "recipe" in v]
    if verdict:
        lines += ["", "Recipe vs baseline (accuracy): " + "; ".join(verdict) + "."]
    for name, extra in sorted((result.get("fold_train") or {}).items()):
        lines += ["", f"Fold without {name} trained with {', '.join(f'{k}: {v}' for k, v in extra.items())} (in place of the recipe's)."]
    if command:
        lines += ["", "## Command", "", f"`{command}`"]
    if machine:
        lines += ["", f"Machine: {machine}."]
    return "\n".join(lines) + "\n"
