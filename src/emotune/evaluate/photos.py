"""Scoring the whole photo pipeline (detect, align, classify: what `emotune predict` does) on labelled photos."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .loop import labelled_samples
from .metrics import compute_metrics
from .report import EvalReport, prediction_table


def evaluate_photos(model_path: str | Path | None, data: str | Path, data_format: str = "auto", split: str | None = None,
                    drop_labels: Sequence[str] = (), drop_unknown_labels: bool = False, detector: str = "yunet",
                    detector_model: str | None = None, tta: bool = False, device: str = "auto", progress: bool = True,
                    max_samples: int = 0, margin: float = 1.0) -> EvalReport:
    """The largest face of each photo is the prediction. Photos where no face is found count as wrong in the end-to-end
    accuracy (`extra`); the other metrics cover the photos with a face."""
    from ..errors import BadInputError
    from ..inference.recognizer import Recognizer
    from ..progress import progress as bar

    rec = Recognizer(model_path, detector, detector_model, device=device, tta=tta, margin=margin)
    labels = rec.labels
    samples, dropped = labelled_samples(labels, data, data_format, split, "majority", drop_labels, drop_unknown_labels, max_samples)
    y_true, y_pred, files, skipped, no_face = [], [], [], [], []
    for smp in bar(samples, progress, desc="photos", unit="img"):
        try:
            faces = rec.predict(smp.path if smp.pixels is None else smp.pixels)
        except BadInputError as exc:
            skipped.append({"where": exc.where, "problem": exc.problem})
            continue
        if not faces:
            no_face.append({"where": smp.where, "problem": "no face found"})
            continue
        best = max(faces, key=lambda f: f.box[2] * f.box[3])
        y_true.append(labels.index(smp.label))
        y_pred.append(labels.index(best.label))
        files.append(smp.where)
    if not y_true:
        raise BadInputError(data, f"no face found in any of {len(samples)} photos")
    m = compute_metrics(np.array(y_true), np.array(y_pred), labels)
    scored = len(y_true) + len(no_face)
    m.extra = {"photos": scored, "no_face": len(no_face),
               "end_to_end_accuracy": round(float((np.array(y_true) == np.array(y_pred)).sum() / scored), 4),
               "detector": detector, "margin": margin}
    name = str(model_path) if model_path else "bundled default model"
    preds = prediction_table(files, y_true, y_pred, labels)
    return EvalReport(name, str(data), m, skipped + no_face, dropped, tta, preds)
