"""Shared bits of the benchmarks: environment metadata and writing JSON + Markdown side by side."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def environment() -> dict:
    import timm
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "python": sys.version.split()[0],
            "torch": torch.__version__, "timm": timm.__version__, "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])}


def write_report(name: str, result: dict, markdown: str, out_dir: Path | None = None) -> Path:
    out_dir = out_dir or Path(__file__).resolve().parent / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = result.setdefault("environment", environment())
    from emotune.io import atomic_write_text  # results are written whole or not at all

    atomic_write_text(out_dir / f"{name}.json", json.dumps(result, indent=2) + "\n")
    md = markdown + "\n\n## Environment\n\n" + "\n".join(f"- {k}: `{v}`" for k, v in env.items()) + "\n"
    atomic_write_text(out_dir / f"{name}.md", md)
    return out_dir / f"{name}.md"


def train_and_test(cfg_path: str, out: Path, overrides: dict | None = None) -> dict:
    """Train one recipe (resuming; a finished run is not trained again) and score its test split once.

    The test split is `<val_data parent>/test` (FER2013 layout); its report is kept in <run>/test/eval.json."""
    from emotune.train import make_config, train

    cfg = make_config({**(overrides or {}), "out": str(out), "resume": (out / "train_state.safetensors").is_file(),
                       "progress": False}, cfg_path)
    summary = out / "summary.json"
    log = json.loads(summary.read_text()) if summary.is_file() else None
    if log is None or log.get("epochs_run", 0) < cfg.epochs and not log.get("stopped_early"):
        for kept in ("eval.json", "predictions.csv"):  # a test score belongs to the weights it was measured on
            (out / "test" / kept).unlink(missing_ok=True)
        train(cfg)
        log = json.loads(summary.read_text())
    test = score_test_once(out, Path(cfg.val_data or cfg.data).parent / "test")
    return {"run": str(out), "pretrained": cfg.pretrained, "head": cfg.head, "best_epoch": log["best_epoch"], "val": log["best"],
            **summarise_test(test)}


def score_test_once(model: Path, test_dir: Path) -> dict:
    """The test report of a model folder, scored on the first call and kept in <model>/test/eval.json after that."""
    from emotune.evaluate import evaluate_dataset

    test_json = model / "test" / "eval.json"
    if not test_json.is_file():
        evaluate_dataset(model, test_dir, progress=False).write(model / "test", title=f"{model.name}: test")
    return json.loads(test_json.read_text())


def predictions_on_test(model: Path, test_dir: Path):
    """Per-image test predictions of a model (pandas), for paired comparisons. A model scored before predictions were
    kept is predicted again. Either way the table must agree with the kept report (images and accuracy), so that the
    comparison is of the model that report describes."""
    import pandas as pd

    from emotune.evaluate import evaluate_dataset

    kept = score_test_once(model, test_dir)
    path = model / "test" / "predictions.csv"
    if not path.is_file():
        evaluate_dataset(model, test_dir, progress=False).write_predictions(path)
    preds = pd.read_csv(path)
    acc = float((preds["label"] == preds["pred"]).mean()) if len(preds) else float("nan")
    if len(preds) != kept["n"] or abs(acc - kept["accuracy"]) > 1e-9:
        raise RuntimeError(f"{path}: {len(preds)} images at accuracy {acc} differ from the kept report "
                           f"({kept['n']} at {kept['accuracy']}); delete it to predict again")
    return preds


def summarise_test(test: dict) -> dict:
    return {"test": {k: test[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "n")},
            "test_per_class_f1": {c["label"]: round(c["f1"], 4) for c in test["per_class"]}}


def finished_model_row(model: Path, test_dir: Path) -> dict:
    """A `train_and_test` row for a finished model whose run folder is gone: epoch and val figures from its card."""
    from emotune.models import read_card

    card, _ = read_card(model)
    val = card.metrics.get("val", {})
    return {"run": str(model), "pretrained": card.training.get("pretrained"), "head": (card.head or {}).get("type", "linear"),
            "best_epoch": card.metrics.get("epoch"), "val": {f"val_{k}": v for k, v in val.items()},
            **summarise_test(score_test_once(model, test_dir))}


def comparison_markdown(rows: dict[str, dict], what: str, verdict: str) -> list[str]:
    """Side-by-side table of `train_and_test` rows: validation, test metrics and per-class test F1."""
    labels = list(next(iter(rows.values()))["test_per_class_f1"])
    md = [f"| {what} | best epoch | val accuracy | test accuracy | test balanced acc. | test macro-F1 |", "|---|---|---|---|---|---|"]
    md += [f"| {k} | {r['best_epoch']} | {r['val']['val_accuracy']:.4f} | {r['test']['accuracy']:.4f} | "
           f"{r['test']['balanced_accuracy']:.4f} | {r['test']['macro_f1']:.4f} |" for k, r in rows.items()]
    md += ["", verdict, "", "| test F1 | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    md += [f"| {k} | " + " | ".join(f"{r['test_per_class_f1'][c]:.3f}" for c in labels) + " |" for k, r in rows.items()]
    return md
