"""Benchmark 1: what ImageNet weights are worth. One recipe (a training config) on FER2013 from ImageNet weights and from
random init: trained on train/, selected on val/, each scored once on test/.

    python benchmarks/transfer_value.py                     # configs/default_model.yaml: reuses runs/default_model
    python benchmarks/transfer_value.py --config configs/fer2013_mobilenetv2.yaml --runs runs/bench_transfer
    python benchmarks/transfer_value.py --imagenet-model runs/default_model   # a finished ImageNet model (its card)

The ImageNet run is the config as it is; the random-init run differs only in `pretrained: none`. Both resume after an
interruption, a finished run is not trained again, and each test split is scored once (kept in <run>/test/eval.json).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import comparison_markdown, finished_model_row, train_and_test, write_report

from emotune.train.config import load_yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default_model.yaml", help="the recipe (FER2013 train/val in it)")
    ap.add_argument("--runs", help="folder for both runs (default: the config's `out` for ImageNet, `<out>_random_init` beside it)")
    ap.add_argument("--imagenet-model", help="use this finished model (folder with best.json, the config's ImageNet run) "
                    "for the ImageNet side instead of training it: its val figures come from its card")
    args = ap.parse_args()
    cfg = load_yaml(args.config)
    base = Path(cfg.get("out", "runs/transfer"))
    imagenet_out = Path(args.runs) / "imagenet" if args.runs else base
    random_out = Path(args.runs) / "random_init" if args.runs else base.with_name(base.name + "_random_init")
    imagenet = finished_model_row(Path(args.imagenet_model), Path(cfg["val_data"]).parent / "test") if args.imagenet_model \
        else train_and_test(args.config, imagenet_out)
    rows = {"imagenet": imagenet, "random_init": train_and_test(args.config, random_out, {"pretrained": "none"})}
    a, b = rows["imagenet"]["test"], rows["random_init"]["test"]
    md = comparison_markdown(rows, "start", f"ImageNet minus random init, test accuracy: **{a['accuracy'] - b['accuracy']:+.4f}**")
    write_report("transfer_value", {"config": args.config, "runs": rows, "test_accuracy_gain": a["accuracy"] - b["accuracy"]},
                 "\n".join(md))


if __name__ == "__main__":
    main()
