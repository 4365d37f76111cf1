"""Cross-validation: k-fold, stratified and subject-grouped folds (leave-one-subject-out included), one training
run per fold scored on its held-out fold, and a report with mean ± std and the pooled confusion matrix.

Why a fold manifest: `DIR/folds.csv` (path,label,subject,fold) fixes which image is tested in which fold, so a run
with another backbone (`--folds-file`) is scored on exactly the same splits and `--resume` continues the same
assignment. Model selection never sees the test fold: each fold's training run holds out `val_fraction` of its
training folds (grouped by subject when subjects are known) to pick its best epoch.

DIR layout: folds.csv; fold_<i>/ (split.csv with train/test rows, the fold's training run folder, fold.json);
cv.json, cv.md, confusion.png (pooled over folds), curves.png (every fold's learning curves); final/ (with --final:
a model trained on all the data).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import re
import statistics
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.sources import SUBJECT_PATTERN, Sample, load_manifest, load_samples
from ..data.splits import sklearn_notes
from ..errors import BadInputError, ConfigError
from ..io import atomic_write_json, atomic_write_text
from ..taxonomy import resolve_labels
from ..train.config import TrainConfig

if TYPE_CHECKING:
    from ..evaluate import Metrics


def train(cfg: TrainConfig):
    """The training engine, imported on first use (it loads torch); tests replace this name. Skipped images are named
    by `run_fold`, once per cross-validation rather than once per fold."""
    from ..train.engine import train as run

    return run(cfg, report_skipped=False)

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1"}
FOLDS_FILE = "folds.csv"
FOLD_FIELDS = ["path", "label", "subject", "fold"]


# ---------------------------------------------------------------------------------------------- fold assignment

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
    y = np.array([s.label for s in samples])
    idx = np.arange(n)
    groups = None
    if folds == "loso":
        group_by = "subject"
    if group_by not in (None, "none", "subject"):
        raise ConfigError(f"--group-by: {group_by!r} is not one of none, subject")
    if group_by == "subject":
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
    rows = [{"path": _abs(s.path), "label": s.label, "subject": s.subject or "", "fold": int(f)} for s, f in zip(samples, fold_of)]
    return atomic_write_text(path, _csv_text(FOLD_FIELDS, rows))


def read_folds_csv(path: str | Path) -> tuple[list[Sample], list[int]]:
    """Samples and their folds from a fold manifest (paths absolute or relative to the CSV's folder)."""
    path = Path(path)
    samples = load_manifest(path)
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


# ---------------------------------------------------------------------------------------------- results

@dataclass
class FoldResult:
    """One fold: trained on the others, scored on this one (status 'ok'), or the error that stopped it ('failed')."""

    fold: int
    status: str
    n_train: int
    n_test: int
    test_subjects: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    run_dir: str = ""
    error: str = ""
    traceback: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FoldResult":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n-1; 0 for a single value) of per-fold scores."""
    vals = [float(v) for v in values]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def aggregate(folds: Sequence[FoldResult]) -> tuple[dict[str, float], dict[str, float]]:
    """Unweighted mean ± std over the folds that finished, per metric."""
    ok = [f for f in folds if f.ok]
    mean, std = {}, {}
    for m in METRICS:
        mean[m], std[m] = mean_std([f.metrics[m] for f in ok])
    return mean, std


def pool_confusion(folds: Sequence[FoldResult], labels: Sequence[str]) -> list[list[int]]:
    """Sum of the folds' confusion matrices, mapped by label name onto `labels`."""
    k = len(labels)
    pos = {c: i for i, c in enumerate(labels)}
    total = np.zeros((k, k), dtype=int)
    for f in folds:
        if not f.ok:
            continue
        cm = np.asarray(f.confusion, dtype=int)
        for i, a in enumerate(f.labels):
            for j, b in enumerate(f.labels):
                total[pos[a], pos[b]] += cm[i, j]
    return total.tolist()


def metrics_from_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> Metrics:
    """Exact metrics of all pooled predictions (a confusion matrix holds every (true, predicted) pair)."""
    cm = np.asarray(confusion, dtype=int)
    y_true = np.repeat(np.repeat(np.arange(len(labels)), len(labels)), cm.ravel())
    y_pred = np.repeat(np.tile(np.arange(len(labels)), len(labels)), cm.ravel())
    from ..evaluate import compute_metrics

    with sklearn_notes():
        return compute_metrics(y_true, y_pred, labels)


@dataclass
class CVResult:
    """A whole cross-validation: settings, per-fold results, mean ± std, pooled confusion and the final model."""

    out: str
    k: int
    scheme: str
    group_by: str
    stratify: bool
    seed: int
    labels: list[str]
    n: int
    subjects: int
    backbone: str
    data: str
    folds: list[FoldResult]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    pooled: dict[str, float] = field(default_factory=dict)
    pooled_confusion: list[list[int]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    complete: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[FoldResult]:
        return [f for f in self.folds if not f.ok]

    def update(self) -> "CVResult":
        """Recompute mean ± std and the pooled scores from the folds so far."""
        self.mean, self.std = aggregate(self.folds)
        self.pooled_confusion = pool_confusion(self.folds, self.labels)
        if any(f.ok for f in self.folds):
            self.pooled = metrics_from_confusion(self.pooled_confusion, self.labels).summary()
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = "cv"
        d["folds_ok"] = sum(f.ok for f in self.folds)
        d["folds_failed"] = len(self.failed)
        return d

    def to_markdown(self) -> str:
        ok = sum(f.ok for f in self.folds)
        group = "subject-grouped" if self.group_by == "subject" else "not grouped"
        lines = [f"# Cross-validation: {self.backbone} on `{self.data}`", "",
                 f"{self.k} folds ({self.scheme}, {group}{', stratified' if self.stratify else ''}, seed {self.seed}); "
                 f"{self.n} images, {self.subjects} subjects; {ok}/{len(self.folds)} folds finished"
                 + ("" if self.complete else " (incomplete)") + ".",
                 f"Model selection: best epoch on a {self.config.get('val_fraction', 0):.0%} hold-out of each fold's training "
                 "folds (subject-grouped when subjects are known); the test fold is used only for the scores below.", "",
                 "| metric | mean ± std over folds | pooled |", "|---|---|---|"]
        for m in METRICS:
            pooled = f"{self.pooled[m]:.4f}" if m in self.pooled else "-"
            lines.append(f"| {METRIC_NAMES[m]} | {_pm(self.mean.get(m), self.std.get(m))} | {pooled} |")
        lines += ["", "## Folds", "", "| fold | status | train | test | test subjects | accuracy | balanced accuracy | macro-F1 | best epoch | seconds | error |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in self.folds:
            scores = [f"{f.metrics[m]:.4f}" if f.ok else "-" for m in METRICS]
            err = f.error.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {f.fold} | {f.status} | {f.n_train} | {f.n_test} | {f.test_subjects} | " + " | ".join(scores)
                         + f" | {f.best_epoch or '-'} | {f.seconds:.1f} | {err} |")
        lines += ["", "## Pooled confusion matrix over all folds (rows: true, columns: predicted)", "",
                  "| true \\ pred | " + " | ".join(self.labels) + " |", "|---" * (len(self.labels) + 1) + "|"]
        lines += [f"| {self.labels[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(self.pooled_confusion)]
        lines += ["", "Plots: `confusion.png` (pooled, row-normalised), `curves.png` (every fold's learning curves, best epochs "
                  "marked); each fold's own run folder has its `log.csv` and `curves.png`."]
        if self.final is not None:
            fin = self.final
            text = f"`{fin['run_dir']}`, best epoch {fin.get('best_epoch')}" if fin.get("status") == "ok" else f"failed: {fin.get('error')}"
            lines += ["", f"Final model on all data: {text}"]
        return "\n".join(lines) + "\n"


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None or mean != mean:  # nan: no fold finished
        return "-"
    return f"{mean:.4f} ± {std:.4f}"


# ---------------------------------------------------------------------------------------------- running

def load_cv_samples(cfg: TrainConfig, subject_pattern: str | None = None) -> tuple[list[Sample], tuple[str, ...]]:
    """The images to cross-validate and the label list every fold's model gets (so folds can be pooled).

    With `sources:` the first source is cross-validated and the others join every fold's training side (dataset
    merging inside CV, e.g. FER2013 + CK+ tested on CK+ folds); labels then span all sources."""
    if cfg.sources:
        from ..data.merge import load_merged, parse_sources

        specs = parse_sources(cfg.sources)
        first = specs[0]
        labels = load_merged(specs, cfg.labels, cfg.seed, cfg.ferplus_mode, cfg.val_fraction, cfg.drop_labels).labels
        samples = first.load(cfg.drop_labels, ferplus_mode=cfg.ferplus_mode)
        keep, _ = usable(samples, dataclasses.replace(cfg, labels=",".join(labels)), first.data)
        return apply_subject_pattern([samples[i] for i in keep], subject_pattern), labels
    samples = load_samples(cfg.data, cfg.data_format, split=cfg.train_split, ferplus_mode=cfg.ferplus_mode,
                           drop_labels=cfg.drop_labels)
    keep, labels = usable(samples, cfg, cfg.data)
    return apply_subject_pattern([samples[i] for i in keep], subject_pattern), labels


def usable(samples: Sequence[Sample], cfg: TrainConfig, where: str) -> tuple[list[int], tuple[str, ...]]:
    """Indices of the samples CV can use under --labels/--drop-labels, and the label list; clear errors otherwise."""
    if any(s.path is None for s in samples):
        raise ConfigError(f"{where}: cross-validation needs image files (class folders or a manifest), "
                          "not inline pixels (fer2013.csv)")
    if any(s.soft for s in samples):
        raise ConfigError(f"{where}: cross-validation uses hard labels; use --ferplus-mode majority")
    labels = resolve_labels(cfg.labels, [s.label for s in samples if s.label not in cfg.drop_labels])
    from ..data.dataset import filter_labels

    filter_labels(samples, labels, cfg.drop_labels, where=where)  # raises on labels neither known nor dropped
    allowed = set(labels) - set(cfg.drop_labels)
    return [i for i, s in enumerate(samples) if s.label in allowed], labels


def _split_rows(samples: Sequence[Sample], fold_of: Sequence[int], fold: int) -> list[dict[str, Any]]:
    return [{"path": _abs(s.path), "label": s.label, "subject": s.subject or "", "split": "test" if f == fold else "train"}
            for s, f in zip(samples, fold_of)]


def _data_name(cfg: TrainConfig) -> str:
    if not cfg.sources:
        return cfg.data
    names = [str(s.get("name") or s["data"]) for s in cfg.sources]
    return f"{names[0]} (cross-validated) + " + ", ".join(names[1:]) + " (training side of every fold)"


def fold_config(cfg: TrainConfig, data: Path, out: Path, labels: Sequence[str], train_split: str | None) -> TrainConfig:
    """The user's options, pointed at one manifest; validation is always a hold-out of the training rows.

    With `sources:`, the first source becomes the fold's manifest and the other sources stay as they are."""
    if cfg.sources:
        first = {**cfg.sources[0], "data": str(data), "format": "manifest", "split": train_split, "val_data": None,
                 "val_split": None, "label_map": {}}  # the manifest already holds mapped labels
        return dataclasses.replace(cfg, sources=[first, *cfg.sources[1:]], labels=",".join(labels), drop_labels=[],
                                   out=str(out), resume=(out / "train_state.safetensors").is_file())
    return dataclasses.replace(cfg, data=str(data), data_format="manifest", train_split=train_split, val_data=None,
                               val_split=None, labels=",".join(labels), drop_labels=[], out=str(out),
                               resume=(out / "train_state.safetensors").is_file())


def run_fold(cfg: TrainConfig, fold: int, samples: Sequence[Sample], fold_of: Sequence[int], labels: Sequence[str],
             out: Path, reported: set[str] | None = None) -> FoldResult:
    """Train on the other folds, score the best checkpoint on this fold; any exception becomes a 'failed' result.

    Skipped bad images are named on stderr unless in `reported` (those named by an earlier fold), which grows."""
    fdir = out / f"fold_{fold}"
    test = [s for s, f in zip(samples, fold_of) if f == fold]
    res = FoldResult(fold, "failed", len(samples) - len(test), len(test), len({s.subject for s in test if s.subject}),
                     run_dir=str(fdir))
    t0 = time.perf_counter()
    try:
        split_csv = fdir / "split.csv"
        atomic_write_text(split_csv, _csv_text(["path", "label", "subject", "split"], _split_rows(samples, fold_of, fold)))
        tr = train(fold_config(cfg, split_csv, fdir, labels, "train"))
        from ..evaluate import evaluate_dataset
        from ..train.engine import Skipped, print_skipped

        print_skipped(list(getattr(tr, "skipped", [])), reported if reported is not None else set())
        with sklearn_notes():
            rep = evaluate_dataset(fdir, split_csv, "manifest", split="test", batch_size=cfg.batch_size, tta=cfg.tta,
                                   on_bad=cfg.on_bad, workers=cfg.workers, device=cfg.device, progress=cfg.progress)
        print_skipped([Skipped(s["where"], s["problem"]) for s in rep.skipped], reported if reported is not None else set())
        atomic_write_json(fdir / "test.json", rep.to_dict())
        m = rep.metrics
        res.status, res.best_epoch = "ok", tr.best_epoch
        res.metrics, res.labels, res.confusion = m.summary(), list(m.labels), m.confusion
    except Exception as exc:  # a fold's failure is reported; the other folds still run
        res.error = f"{type(exc).__name__}: {exc}"
        res.traceback = traceback.format_exc()
    res.seconds = round(time.perf_counter() - t0, 2)
    atomic_write_json(fdir / "fold.json", res.to_dict())
    if res.ok:
        prune_fold(fdir)
    return res


def prune_fold(fdir: Path) -> None:
    """Keep a scored fold's best checkpoint only: its resume state and last epoch are not needed once fold.json is
    written (with Adam, they are four times the model: 2.2 GB per fold for VGG16)."""
    for name in ("train_state.safetensors", "last.safetensors", "last.json"):
        (fdir / name).unlink(missing_ok=True)


def load_done_fold(out: Path, fold: int) -> FoldResult | None:
    """A fold that finished in an earlier run (for --resume), else None (failed or unfinished folds run again)."""
    path = out / f"fold_{fold}" / "fold.json"
    if not path.is_file():
        return None
    try:
        res = FoldResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError):
        return None
    return res if res.ok else None


def run_final(cfg: TrainConfig, out: Path, labels: Sequence[str], reported: set[str] | None = None) -> dict[str, Any]:
    """Train one model on every image (folds.csv) into DIR/final, with the same hold-out model selection."""
    fdir = out / "final"
    if cfg.resume and (fdir / "summary.json").is_file():
        s = json.loads((fdir / "summary.json").read_text(encoding="utf-8"))
        return {"status": "ok", "run_dir": str(fdir), "best_epoch": s.get("best_epoch"), "best": s.get("best", {})}
    try:
        tr = train(fold_config(cfg, out / FOLDS_FILE, fdir, labels, None))
        from ..train.engine import print_skipped

        print_skipped(list(getattr(tr, "skipped", [])), reported if reported is not None else set())
        return {"status": "ok", "run_dir": str(fdir), "best_epoch": tr.best_epoch, "best": tr.best_metrics}
    except Exception as exc:
        return {"status": "failed", "run_dir": str(fdir), "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def _check_out(out: Path, resume: bool, folds_file: Path | None) -> Path | None:
    """Refuse to mix two runs in one folder; with --resume the folder's own folds.csv is the assignment."""
    from ..train.config import _check_out_dir

    _check_out_dir(out)
    held = (out / "cv.json").is_file() or any(out.glob("fold_*/fold.json")) or any(out.glob("fold_*/train_state.safetensors"))
    if held and not resume:
        raise ConfigError(f"{out} already holds a cross-validation run; pass --resume to continue it or choose another --out")
    own = out / FOLDS_FILE
    if resume and own.is_file():
        if folds_file is not None and folds_file.resolve() != own.resolve():
            a, b = read_folds_csv(folds_file), read_folds_csv(own)
            if [(_abs(s.path), f) for s, f in zip(*a)] != [(_abs(s.path), f) for s, f in zip(*b)]:
                raise ConfigError(f"--resume: {folds_file} differs from the assignment in {own}")
        return own
    return folds_file


def run_cv(cfg: TrainConfig, folds: int | str | None = None, group_by: str | None = None, stratify: bool = False,
           final: bool = False, folds_file: str | Path | None = None, subject_pattern: str | None = None) -> CVResult:
    """Cross-validate `cfg` (its data, backbone and options) into `cfg.out`; see the module docstring.

    `folds` is K or 'loso' (default 5; a reused assignment brings its own folds)."""
    out = Path(cfg.out)
    group_by = None if group_by in (None, "none") else group_by
    if cfg.val_fraction <= 0:
        raise ConfigError("cross-validation picks each fold's best epoch on a hold-out of its training folds: "
                          "--val-fraction must be above 0")
    source = _check_out(out, cfg.resume, Path(folds_file) if folds_file else None)
    if source is not None:
        samples, fold_of = read_folds_csv(source)
        if cfg.sources:  # the model's labels span every source, not just the cross-validated one
            from ..data.merge import load_merged, parse_sources

            merged = load_merged(parse_sources(cfg.sources), cfg.labels, cfg.seed, cfg.ferplus_mode, cfg.val_fraction,
                                 cfg.drop_labels).labels
            keep, labels = usable(samples, dataclasses.replace(cfg, labels=",".join(merged)), str(source))
        else:
            keep, labels = usable(samples, cfg, str(source))
        samples = apply_subject_pattern([samples[i] for i in keep], subject_pattern)
        fold_of = [fold_of[i] for i in keep]
        k, scheme = max(fold_of), _scheme_of(source, reused=source.resolve() != (out / FOLDS_FILE).resolve())
        if group_by == "subject":
            require_subjects(samples, str(source))
        elif all(s.subject for s in samples) and not crossing_subjects(samples, fold_of):
            group_by = "subject"  # describe the assignment as it is: no subject crosses folds
        if folds is not None and parse_folds(folds) not in ("loso", k) and folds_file is not None:
            print(f"note: using the {k} folds of {source}, not --folds {folds}", file=sys.stderr)
    else:
        samples, labels = load_cv_samples(cfg, subject_pattern)
        folds = 5 if folds is None else folds
        if group_by != "subject" and parse_folds(folds) != "loso" and all(s.subject for s in samples):
            print("note: subjects are known; --group-by subject keeps each subject's images in one fold", file=sys.stderr)
        plan = assign_folds(samples, folds, group_by, stratify, cfg.seed)
        fold_of, k, scheme = plan.fold_of, plan.k, plan.scheme
        if plan.scheme == "LeaveOneGroupOut":
            group_by = "subject"
    if group_by == "subject":
        crossing = crossing_subjects(samples, fold_of)
        if crossing:
            raise ConfigError(f"subjects {crossing[:5]} have images in more than one fold; not a subject-grouped assignment")
    from ..train.config import check_model_choice

    check_model_choice(cfg.backbone, cfg.pretrained)  # before the folder is made: every fold would fail alike
    out.mkdir(parents=True, exist_ok=True)
    if source is None or source.resolve() != (out / FOLDS_FILE).resolve():
        write_folds_csv(out / FOLDS_FILE, samples, fold_of)

    result = CVResult(str(out), k, scheme, group_by or "none", stratify, cfg.seed, list(labels), len(samples),
                      len({s.subject for s in samples if s.subject}), cfg.backbone, _data_name(cfg), [], config=cfg.to_dict())
    print(f"cv: {len(samples)} images, {result.subjects} subjects, {k} folds ({scheme}) -> {out / FOLDS_FILE}", flush=True)
    reported: set[str] = set()  # skipped images named so far: each bad file once, not once per fold
    for fold in range(1, k + 1):
        done = load_done_fold(out, fold) if cfg.resume else None
        if done is not None:
            prune_fold(out / f"fold_{fold}")  # folds scored before pruning existed
        res = done or run_fold(cfg, fold, samples, fold_of, labels, out, reported)
        result.folds.append(res)
        print(_fold_line(res, k, skipped=done is not None), flush=True)
        write_reports(result.update(), plot=False)
    if final:
        result.final = run_final(cfg, out, labels, reported)
        fin = result.final
        print(f"final: {fin['run_dir']}  " + (f"best epoch {fin['best_epoch']}" if fin["status"] == "ok" else f"FAILED {fin['error']}"), flush=True)
    result.complete = True
    write_reports(result.update())
    return result


def _scheme_of(folds_csv: Path, reused: bool) -> str:
    """The splitter that made an existing assignment, when its cv.json sits beside it (noting a reused file)."""
    try:
        scheme = str(json.loads((folds_csv.parent / "cv.json").read_text(encoding="utf-8"))["scheme"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"from {folds_csv}"
    return f"{scheme.split(', from ')[0]}, from {folds_csv}" if reused else scheme


def _fold_line(r: FoldResult, k: int, skipped: bool = False) -> str:
    head = f"fold {r.fold}/{k}"
    if not r.ok:
        return f"{head} FAILED ({r.error})"
    m = r.metrics
    return (f"{head} {'done earlier' if skipped else 'ok'}  train {r.n_train} test {r.n_test} ({r.test_subjects} subjects)  "
            f"acc {m['accuracy']:.4f} bal-acc {m['balanced_accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}  "
            f"best epoch {r.best_epoch}  {r.seconds:.1f}s")


def write_reports(result: CVResult, plot: bool = True) -> None:
    """cv.json and cv.md (atomically) and, at the end, the pooled confusion PNG."""
    out = Path(result.out)
    atomic_write_json(out / "cv.json", result.to_dict())
    atomic_write_text(out / "cv.md", result.to_markdown())
    if plot and any(f.ok for f in result.folds):
        m = metrics_from_confusion(result.pooled_confusion, result.labels)
        from ..evaluate import plot_confusion

        plot_confusion(m, out / "confusion.png", title=f"pooled over {sum(f.ok for f in result.folds)} folds: "
                       f"acc {m.accuracy:.3f}  bal-acc {m.balanced_accuracy:.3f}  macro-F1 {m.macro_f1:.3f}")
        plot_fold_curves(result, out / "curves.png")


def plot_fold_curves(result: CVResult, path: Path) -> Path | None:
    """Learning curves of every finished fold on one figure (train and hold-out loss, hold-out accuracy), best epochs
    marked: spread between folds and late peaks show at a glance whether the budget fits the data."""
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write

    logs = {f.fold: (Path(f.run_dir) / "log.csv", f.best_epoch) for f in result.folds if f.ok}
    logs = {k: v for k, v in logs.items() if v[0].is_file()}
    if not logs:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=110)
    for k, (log, best) in logs.items():
        d = pd.read_csv(log)
        line, = a.plot(d["epoch"], d["val_loss"], "-", lw=1.2, label=f"fold {k}")
        a.plot(d["epoch"], d["train_loss"], ":", lw=1, color=line.get_color())
        b.plot(d["epoch"], d["val_accuracy"], "-", lw=1.2, color=line.get_color())
        if best in set(d["epoch"]):
            b.plot([best], d.loc[d["epoch"] == best, "val_accuracy"], "o", color=line.get_color())
    a.set_xlabel("epoch"); a.set_ylabel("loss (dotted: train, solid: hold-out)"); a.grid(alpha=0.3)
    b.set_xlabel("epoch"); b.set_ylabel("hold-out accuracy (dot: best epoch)"); b.set_ylim(0, 1); b.grid(alpha=0.3)
    a.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- CLI hooks

def add_cv_arguments(parser: argparse.ArgumentParser) -> None:
    """`emotune cv`: the cross-validation flags plus every training flag (`--data`, `--backbone`, `--epochs`...)."""
    from ..train.config import add_arguments

    parser.add_argument("--config", help="YAML file of training options (keys as the flags, with underscores)")
    parser.add_argument("--folds", help="number of folds K, or loso (leave one subject out) (default: 5, or those of --folds-file)")
    parser.add_argument("--group-by", default="none", choices=["none", "subject"],
                        help="keep each subject's images in one fold (subjects from a manifest column or file names)")
    parser.add_argument("--stratify", action="store_true", help="keep class proportions similar across folds")
    parser.add_argument("--final", action="store_true", help="also train a final model on all data into OUT/final")
    parser.add_argument("--folds-file", help="reuse the fold assignment of an earlier run (its folds.csv)")
    parser.add_argument("--subject-pattern", help=f"regex whose first group is the subject in file names without one "
                                                  f"(default for folders and manifests: {SUBJECT_PATTERN})")
    add_arguments(parser)  # includes --out (the cv folder) and --resume (skip finished folds)
    for action in parser._actions:  # the training flags' help speaks of one run; say what they mean here
        if action.dest == "out":
            action.help = "cross-validation folder (default: runs/cv)"
        elif action.dest == "resume":
            action.help = "continue the run in --out: skip finished folds, resume an interrupted fold's training"


def run_cv_command(args: argparse.Namespace) -> int:
    """Run `emotune cv`; exit status 1 when a fold (or the final model) failed, after writing the report."""
    from ..train.config import _field_types, make_config

    overrides = {k: getattr(args, k) for k in _field_types() if getattr(args, k, None) is not None}
    overrides.setdefault("out", "runs/cv")
    from ..train.config import load_yaml

    merging = bool(args.config and load_yaml(args.config).get("sources"))
    if args.folds_file and not overrides.get("data") and not merging:
        overrides["data"] = args.folds_file
    if args.folds_file and overrides.get("data") == args.folds_file:
        overrides.setdefault("data_format", "manifest")
    cfg = make_config(overrides, args.config)
    if not args.folds_file and not cfg.data and not cfg.sources:
        raise ConfigError("data: no data given (--data PATH or --folds-file folds.csv)")
    res = run_cv(cfg, args.folds, args.group_by, args.stratify, args.final, args.folds_file, args.subject_pattern)
    out = Path(res.out)
    print(" ".join(f"{METRIC_NAMES[m]} {_pm(res.mean[m], res.std[m])}" for m in METRICS))
    print(f"wrote {out / 'cv.json'}, {out / 'cv.md'}, {out / 'confusion.png'}, {out / 'curves.png'}, {out / FOLDS_FILE}", file=sys.stderr)
    failed = res.failed or (res.final is not None and res.final.get("status") != "ok")
    if res.failed:
        print(f"{len(res.failed)} fold(s) failed: " + "; ".join(f"fold {f.fold}: {f.error}" for f in res.failed), file=sys.stderr)
    return 1 if failed else 0
