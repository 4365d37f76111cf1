"""Evaluation, one module per concern: `metrics` (scores), `loop` (batched inference over a labelled dataset),
`plots` (confusion figure), `report` (EvalReport and prediction tables, eval.json's `kind`), `photos` (the whole
predict pipeline on labelled photos), `paired` (two models on the same images) and `ensemble` (probability
averaging of prediction tables). Every public name is re-exported here."""
from __future__ import annotations

from .ensemble import average_predictions
from .loop import evaluate_dataset, labelled_samples, predict_probs
from .metrics import ClassReport, Metrics, compute_metrics
from .paired import PairedComparison, aligned_tables, class_columns, compare_predictions, paired_bootstrap_ci
from .photos import evaluate_photos
from .plots import plot_confusion
from .report import EVAL_KIND, EvalReport, prediction_table

__all__ = ["EVAL_KIND", "ClassReport", "EvalReport", "Metrics", "PairedComparison", "aligned_tables", "average_predictions",
           "class_columns", "compare_predictions", "compute_metrics", "evaluate_dataset", "evaluate_photos", "labelled_samples",
           "paired_bootstrap_ci", "plot_confusion", "predict_probs", "prediction_table"]
