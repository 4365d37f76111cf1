"""Benchmark 1: what ImageNet weights are worth. One recipe (a training config) on FER2013 from ImageNet weights and from
random init: trained on train/, selected on val/, each scored once on test/.

    python benchmarks/transfer_value.py                     # configs/default_model.yaml: reuses runs/default_model
    python benchmarks/transfer_value.py --config configs/fer2013_mobilenetv2.yaml --runs runs/bench_transfer

The ImageNet run is the config as it is; the random-init run differs only in `pretrained: none`. Both resume after an
interruption, a finished run is not trained again, and each test split is scored once (kept in <run>/test/eval.json).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import write_report

from emotune.evaluate import evaluate_dataset, plot_confusion
from emotune.io import atomic_write_json, atomic_write_text
from emotune.train import make_config, train
from emotune.train.config import load_yaml


def run_once(cfg_path: str, out: Path, pretrained: str | None) -> dict:
    overrides = {"out": str(out), "resume": (out / "train_state.safetensors").is_file(), "progress": False}
    if pretrained is not None:
        overrides["pretrained"] = pretrained
    cfg = make_config(overrides, cfg_path)
    summary = out / "summary.json"
    log = json.loads(summary.read_text()) if summary.is_file() else None
    if log is None or log.get("epochs_run", 0) < cfg.epochs and not log.get("stopped_early"):
        train(cfg)
        log = json.loads(summary.read_text())
    test_json = out / "test" / "eval.json"
    if not test_json.is_file():  # the test split is scored once per run
        test_dir = Path(cfg.val_data or cfg.data).parent / "test"
        rep = evaluate_dataset(out, test_dir, progress=False)
        atomic_write_json(test_json, rep.to_dict())
        atomic_write_text(out / "test" / "eval.md", rep.to_markdown())
        plot_confusion(rep.metrics, out / "test" / "confusion.png", title=f"{out.name}: FER2013 test")
    test = json.loads(test_json.read_text())
    return {"run": str(out), "pretrained": cfg.pretrained, "best_epoch": log["best_epoch"], "val": log["best"],
            "test": {k: test[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "n")},
            "test_per_class_f1": {c["label"]: round(c["f1"], 4) for c in test["per_class"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default_model.yaml", help="the recipe (FER2013 train/val in it)")
    ap.add_argument("--runs", help="folder for both runs (default: the config's `out` for ImageNet, `<out>_random_init` beside it)")
    args = ap.parse_args()
    base = Path(load_yaml(args.config).get("out", "runs/transfer"))
    imagenet_out = Path(args.runs) / "imagenet" if args.runs else base
    random_out = Path(args.runs) / "random_init" if args.runs else base.with_name(base.name + "_random_init")
    rows = {"imagenet": run_once(args.config, imagenet_out, None), "random_init": run_once(args.config, random_out, "none")}
    a, b = rows["imagenet"]["test"], rows["random_init"]["test"]
    labels = list(rows["imagenet"]["test_per_class_f1"])
    md = ["| start | best epoch | val accuracy | test accuracy | test balanced acc. | test macro-F1 |", "|---|---|---|---|---|---|"]
    md += [f"| {k} | {r['best_epoch']} | {r['val']['val_accuracy']:.4f} | {r['test']['accuracy']:.4f} | "
           f"{r['test']['balanced_accuracy']:.4f} | {r['test']['macro_f1']:.4f} |" for k, r in rows.items()]
    md += ["", f"ImageNet minus random init, test accuracy: **{a['accuracy'] - b['accuracy']:+.4f}**", "",
           "| test F1 | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    md += [f"| {k} | " + " | ".join(f"{r['test_per_class_f1'][c]:.3f}" for c in labels) + " |" for k, r in rows.items()]
    write_report("transfer_value", {"config": args.config, "runs": rows, "test_accuracy_gain": a["accuracy"] - b["accuracy"]},
                 "\n".join(md))


if __name__ == "__main__":
    main()
