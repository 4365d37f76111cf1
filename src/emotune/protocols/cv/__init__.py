"""Cross-validation: k-fold, stratified and subject-grouped folds (leave-one-subject-out included), one training
run per fold scored on its held-out fold, and a report with mean ± std and the pooled confusion matrix.

Why a fold manifest: `DIR/folds.csv` (path,label,subject,fold) fixes which image is tested in which fold, so a run
with another backbone (`--folds-file`) is scored on exactly the same splits and `--resume` continues the same
assignment. Model selection never sees the test fold: each fold's training run holds out `val_fraction` of its
training folds (grouped by subject when subjects are known) to pick its best epoch.

DIR layout: folds.csv; fold_<i>/ (split.csv with train/test rows, the fold's training run folder, fold.json);
cv.json, cv.md, confusion.png (pooled over folds), curves.png (every fold's learning curves); final/ (with --final:
a model trained on all the data).

Modules: folds (assignment, folds.csv), results (FoldResult, CVResult, cv.json/cv.md, plots), runner (run_cv and
one fold's run), cli (`emotune cv`).
"""
from __future__ import annotations

from . import folds, results, runner
from .cli import add_cv_arguments, run_cv_command
from .folds import (FOLD_FIELDS, FOLDS_FILE, FoldPlan, apply_subject_pattern, assign_folds, crossing_subjects, parse_folds,
                    read_folds_csv, require_subjects, write_folds_csv)
from .results import (METRIC_NAMES, METRICS, CVResult, FoldResult, aggregate, mean_std, metrics_from_confusion,
                      plot_fold_curves, pool_confusion, write_reports)
from .runner import (fold_config, load_cv_samples, load_done_fold, prune_fold, run_final, run_fold, run_cv, train,
                     usable)

__all__ = ["CVResult", "FOLDS_FILE", "FOLD_FIELDS", "FoldPlan", "FoldResult", "METRICS", "METRIC_NAMES", "add_cv_arguments",
           "aggregate", "apply_subject_pattern", "assign_folds", "crossing_subjects", "fold_config", "load_cv_samples",
           "load_done_fold", "mean_std", "metrics_from_confusion", "parse_folds", "plot_fold_curves", "pool_confusion",
           "prune_fold", "read_folds_csv", "require_subjects", "run_cv", "run_cv_command", "run_final", "run_fold", "train",
           "usable", "write_folds_csv", "write_reports"]
