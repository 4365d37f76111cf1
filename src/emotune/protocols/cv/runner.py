"""Running a cross-validation: the samples and labels, one training run per fold scored on its held-out fold, resume,
the final model on all data."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...data.sources import Sample, load_samples
from ...data.splits import sklearn_notes
from ...errors import ConfigError
from ...io import atomic_write_json, atomic_write_text
from ...taxonomy import resolve_labels
from ...train.config import TrainConfig
from .folds import (FOLDS_FILE, _abs, _csv_text, apply_subject_pattern, assign_folds, crossing_subjects, parse_folds,
                    read_folds_csv, require_subjects, write_folds_csv)
from .results import CVResult, FoldResult, write_reports


def train(cfg: TrainConfig):
    """The training engine, imported on first use (it loads torch); tests replace this name. Skipped images are named
    by `run_fold`, once per cross-validation rather than once per fold."""
    from ...train.engine import train as run

    return run(cfg, report_skipped=False)


def load_cv_samples(cfg: TrainConfig, subject_pattern: str | None = None) -> tuple[list[Sample], tuple[str, ...]]:
    """The images to cross-validate and the label list every fold's model gets (so folds can be pooled).

    With `sources:` the first source is cross-validated and the others join every fold's training side (dataset
    merging inside CV, e.g. FER2013 + CK+ tested on CK+ folds); labels then span all sources."""
    if cfg.sources:
        from ...data.merge import load_merged, parse_sources

        specs = parse_sources(cfg.sources)
        first = specs[0]
        labels = load_merged(specs, cfg.labels, cfg.seed, cfg.ferplus_mode, cfg.val_fraction, cfg.drop_labels).labels
        samples = first.load(cfg.drop_labels, ferplus_mode=cfg.ferplus_mode)
        keep, _ = usable(samples, dataclasses.replace(cfg, labels=",".join(labels)), first.data)
        return apply_subject_pattern([samples[i] for i in keep], subject_pattern), labels
    samples = load_samples(cfg.data, cfg.data_format, split=cfg.train_split, ferplus_mode=cfg.ferplus_mode,
                           drop_labels=cfg.drop_labels, targets=cfg.targets, target_scale=cfg.target_scale, tier=cfg.tier)
    keep, labels = usable(samples, cfg, cfg.data)
    return apply_subject_pattern([samples[i] for i in keep], subject_pattern), labels


def usable(samples: Sequence[Sample], cfg: TrainConfig, where: str) -> tuple[list[int], tuple[str, ...]]:
    """Indices of the samples CV can use under --labels/--drop-labels, and the label list; clear errors otherwise."""
    if any(s.path is None for s in samples):
        raise ConfigError(f"{where}: cross-validation needs image files (class folders or a manifest), "
                          "not inline pixels (fer2013.csv)")
    if any(s.soft for s in samples):
        raise ConfigError(f"{where}: cross-validation uses hard labels; use --ferplus-mode majority")
    present = [s.label for s in samples if s.label and s.label not in cfg.drop_labels]
    labels = resolve_labels(cfg.labels, present) if present or cfg.labels != "auto" else ()
    from ...data.dataset import filter_labels

    filter_labels(samples, labels, cfg.drop_labels, where=where)  # raises on labels neither known nor dropped
    allowed = set(labels) - set(cfg.drop_labels)
    return [i for i, s in enumerate(samples) if s.label in allowed or (not s.label and s.targets)], labels


def _split_rows(samples: Sequence[Sample], fold_of: Sequence[int], fold: int) -> list[dict[str, Any]]:
    from .folds import target_cells, target_columns

    cols = target_columns(samples)
    return [{"path": _abs(s.path), "label": s.label, "subject": s.subject or "", "group": s.group or "",
             "split": "test" if f == fold else "train", **target_cells(s, cols)} for s, f in zip(samples, fold_of)]


def _split_fields(samples: Sequence[Sample]) -> list[str]:
    from .folds import target_columns

    return ["path", "label", "subject", "group", "split", *target_columns(samples).values()]


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
        from .folds import fold_targets

        first.update(targets=fold_targets(data), target_scale=None, tier=None)
        return dataclasses.replace(cfg, sources=[first, *cfg.sources[1:]], labels=",".join(labels) or "auto", drop_labels=[],
                                   out=str(out), resume=(out / "train_state.safetensors").is_file())
    from .folds import fold_targets

    return dataclasses.replace(cfg, data=str(data), data_format="manifest", train_split=train_split, val_data=None,
                               val_split=None, labels=",".join(labels) or "auto", drop_labels=[], out=str(out),
                               resume=(out / "train_state.safetensors").is_file(), targets=fold_targets(data),
                               target_scale="auto", tier=None)


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
        atomic_write_text(split_csv, _csv_text(_split_fields(samples), _split_rows(samples, fold_of, fold)))
        tr = train(fold_config(cfg, split_csv, fdir, labels, "train"))
        from ...evaluate import evaluate_dataset
        from ...train.engine import Skipped, print_skipped

        print_skipped(list(getattr(tr, "skipped", [])), reported if reported is not None else set())
        with sklearn_notes():
            rep = evaluate_dataset(fdir, split_csv, "manifest", split="test", batch_size=cfg.batch_size, tta=cfg.tta,
                                   on_bad=cfg.on_bad, workers=cfg.workers, device=cfg.device, progress=cfg.progress)
        print_skipped([Skipped(s["where"], s["problem"]) for s in rep.skipped], reported if reported is not None else set())
        atomic_write_json(fdir / "test.json", rep.to_dict())
        m = rep.metrics
        res.status, res.best_epoch = "ok", tr.best_epoch
        res.metrics = {**(m.summary() if m is not None else {}),
                       **({k: v for k, v in rep.regression.summary().items() if k != "loss"} if rep.regression is not None else {})}
        res.labels, res.confusion = (list(m.labels), m.confusion) if m is not None else ([], [])
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
        from ...train.engine import print_skipped

        print_skipped(list(getattr(tr, "skipped", [])), reported if reported is not None else set())
        return {"status": "ok", "run_dir": str(fdir), "best_epoch": tr.best_epoch, "best": tr.best_metrics}
    except Exception as exc:
        return {"status": "failed", "run_dir": str(fdir), "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def _check_out(out: Path, resume: bool, folds_file: Path | None) -> Path | None:
    """Refuse to mix two runs in one folder; with --resume the folder's own folds.csv is the assignment."""
    from ...io import check_writable_dir

    check_writable_dir(out, "--out")
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
            from ...data.merge import load_merged, parse_sources

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
    if group_by == "group":
        from .folds import crossing_groups

        crossing = crossing_groups(samples, fold_of)
        if crossing:
            raise ConfigError(f"groups {crossing[:5]} have images in more than one fold; not a group-kept assignment")
    from ...synth.protocol import check_cv_sources
    from ...train.config import check_model_choice

    check_cv_sources(cfg.sources, samples, fold_of)  # no synthetic source whose generator saw a test fold's faces
    check_model_choice(cfg.backbone, cfg.pretrained)  # before the folder is made: every fold would fail alike
    out.mkdir(parents=True, exist_ok=True)
    if source is None or source.resolve() != (out / FOLDS_FILE).resolve():
        write_folds_csv(out / FOLDS_FILE, samples, fold_of)

    result = CVResult(str(out), k, scheme, group_by or "none", stratify, cfg.seed, list(labels), len(samples),
                      len({s.subject for s in samples if s.subject}), cfg.backbone, _data_name(cfg), [], config=cfg.to_dict())
    print(f"cv: {len(samples)} images, " + (f"{result.subjects} subjects, " if result.subjects else "") + f"{k} folds ({scheme}) -> {out / FOLDS_FILE}", flush=True)
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
    scores = (f"acc {m['accuracy']:.4f} bal-acc {m['balanced_accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}  " if "accuracy" in m else "")
    scores += "".join(f"{k.removesuffix('_ccc')} CCC {v:.4f}  " for k, v in m.items() if k.endswith("_ccc"))
    return (f"{head} {'done earlier' if skipped else 'ok'}  train {r.n_train} test {r.n_test}" + (f" ({r.test_subjects} subjects)" if r.test_subjects else "") + "  "
            f"{scores}best epoch {r.best_epoch}  {r.seconds:.1f}s")
