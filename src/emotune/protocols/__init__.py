"""Research protocols: cross-validation (k-fold, stratified, subject-grouped, LOSO), cascaded fine-tuning and
side-by-side run reports."""
from __future__ import annotations

_EXPORTS = {"CVResult": "cv", "FoldPlan": "cv", "FoldResult": "cv", "assign_folds": "cv", "read_folds_csv": "cv",
            "run_cv": "cv", "write_folds_csv": "cv", "ReportRow": "report", "load_run": "report", "render_report": "report",
            "CascadeResult": "cascade", "StageResult": "cascade", "run_cascade": "cascade"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'emotune.protocols' has no attribute {name!r}")
