"""Keeping test identities away from generators: a synthetic source's generator must not have seen a test face.

`check_no_leak` compares the generator's training list (synthetic.json -> generator_train_images.csv, copied from the
generator's run by `emotune synth sample`) with the images of a test fold: a shared image path, or a shared subject
among images of the same dataset folder, is a leak. `emotune cv` calls `check_cv_sources` before any fold runs (a
generator trained on the whole cross-validated set fails it); `cv_with_fold_generators` is the protocol that passes:
one generator per fold, trained on that fold's training rows only (or one generator from a disjoint dataset, e.g.
FER2013 for CK+, passed as a single synthetic folder)."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..data.sources import Sample
from ..errors import ConfigError
from .sample import SYNTHETIC_JSON


def synthetic_root(data: str | Path) -> Path | None:
    """The folder of a synthetic set written by `emotune synth sample` (given as the folder or its manifest.csv)."""
    p = Path(data)
    for cand in (p, p.parent):
        if (cand / SYNTHETIC_JSON).is_file():
            return cand
    return None


def generator_training(data: str | Path) -> list[dict[str, str]] | None:
    """The training images (path, label, subject) of the generator that made a synthetic set; None when unknown."""
    from .data import read_train_images

    root = synthetic_root(data)
    if root is None:
        return None
    meta = json.loads((root / SYNTHETIC_JSON).read_text(encoding="utf-8"))
    name = meta.get("generator_train_images")
    return read_train_images(root / name) if name and (root / name).is_file() else None


def _dataset_root(path: str | Path) -> str:
    """A class-folder image's dataset folder (root/<class>/<file>)."""
    return str(Path(path).resolve().parent.parent)


def leaks(train_rows: Sequence[dict[str, str]], test: Sequence[Sample]) -> tuple[list[str], list[str]]:
    """(test images the generator trained on, test subjects it saw in the same dataset folder)."""
    seen_paths = {r["path"] for r in train_rows}
    seen_subjects = {(_dataset_root(r["path"]), r["subject"]) for r in train_rows if r.get("subject")}
    paths, subjects = [], set()
    for s in test:
        if s.path is None:
            continue
        p = str(Path(s.path).resolve())
        if p in seen_paths:
            paths.append(p)
        if s.subject and (_dataset_root(p), s.subject) in seen_subjects:
            subjects.add(s.subject)
    return paths, sorted(subjects)


def check_no_leak(sources: Sequence[dict[str, Any]], test: Sequence[Sample], where: str = "test fold") -> None:
    """Refuse synthetic sources whose generator saw an image or a subject of `test` (one line, with examples); and a
    synthetic source listed first (the cross-validated, tested one)."""
    from ..data.merge import parse_sources

    specs = parse_sources(sources) if sources else []
    if specs and specs[0].synthetic:
        raise ConfigError(f"sources[0] {specs[0].name!r} is synthetic: the first source is the one tested; synthetic "
                          "faces only ever join the training side")
    for spec in specs:
        if not spec.synthetic:
            continue
        rows = generator_training(spec.data)
        if rows is None:
            if synthetic_root(spec.data) is None:
                print(f"note: synthetic source {spec.name!r} ({spec.data}) does not say what its generator was trained on; "
                      "make sure it never saw a test subject", flush=True)
            continue
        paths, subjects = leaks(rows, test)
        if paths or subjects:
            what = (f"{len(paths)} test image(s) (e.g. {paths[0]})" if paths else "") + (" and " if paths and subjects else "") + \
                   (f"test subject(s) {subjects[:5]}" if subjects else "")
            raise ConfigError(f"synthetic source {spec.name!r} ({spec.data}): its generator was trained on {what} of the {where}; "
                              "train one generator per fold on that fold's training subjects (emotune.synth.protocol."
                              "cv_with_fold_generators) or use a generator trained on a disjoint dataset")


def check_cv_sources(sources: Sequence[dict[str, Any]], samples: Sequence[Sample], fold_of: Sequence[int]) -> None:
    """Before any fold runs: every fold's test images against every synthetic source."""
    if not sources:
        return
    for fold in sorted(set(fold_of)):
        check_no_leak(sources, [s for s, f in zip(samples, fold_of) if f == fold], f"test fold {fold}")


def cv_with_fold_generators(cfg, folds_csv: str | Path, synth_for_fold: Callable[[int, Path], Path], source: dict[str, Any],
                            out: str | Path) -> "Any":
    """Cross-validate `cfg` (a TrainConfig) on the assignment `folds_csv`, adding to each fold's training side the synthetic
    set `synth_for_fold(fold, split_csv)` returns (e.g. a generator trained on that split's `train` rows, then sampled).
    `source` holds the synthetic source's other keys ({name, weight, missing, label_map}). Each fold is checked for
    leaks before it trains. Returns the CVResult (cv.json / cv.md in `out`, as `emotune cv` writes them)."""
    from ..protocols.cv.folds import FOLDS_FILE, _csv_text, read_folds_csv, write_folds_csv
    from ..protocols.cv.results import CVResult, write_reports
    from ..protocols.cv.runner import _split_fields, _split_rows, load_done_fold, run_fold, usable

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    samples, fold_of = read_folds_csv(folds_csv)
    keep, labels = usable(samples, cfg, str(folds_csv))
    samples, fold_of = [samples[i] for i in keep], [fold_of[i] for i in keep]
    if not (out / FOLDS_FILE).is_file():
        write_folds_csv(out / FOLDS_FILE, samples, fold_of)
    k = max(fold_of)
    result = CVResult(str(out), k, f"from {folds_csv}", "subject" if all(s.subject for s in samples) else "none", False, cfg.seed,
                      list(labels), len(samples), len({s.subject for s in samples if s.subject}), cfg.backbone,
                      f"{folds_csv} + per-fold synthetic faces", [], config=cfg.to_dict())
    from ..io import atomic_write_text

    for fold in range(1, k + 1):
        done = load_done_fold(out, fold)
        if done is None:
            split_csv = out / f"fold_{fold}" / "split.csv"
            atomic_write_text(split_csv, _csv_text(_split_fields(samples), _split_rows(samples, fold_of, fold)))
            synth = Path(synth_for_fold(fold, split_csv))
            syn = {"name": "synthetic", **source, "data": str(synth), "synthetic": True}
            first = {"name": "real", "data": str(split_csv), **({"weight": 1.0} if "weight" in source else {})}
            fcfg = dataclasses.replace(cfg, data="", sources=[first, syn], labels=",".join(labels))
            check_no_leak(fcfg.sources, [s for s, f in zip(samples, fold_of) if f == fold], f"test fold {fold}")
            done = run_fold(fcfg, fold, samples, fold_of, labels, out)
        result.folds.append(done)
        write_reports(result.update(), plot=False)
    result.complete = True
    write_reports(result.update())
    return result
