"""Benchmark 1: what ImageNet weights are worth. The same emotune recipe on FER2013 from ImageNet weights
and from random init; trained on train/, selected on val/, each scored once on test/.

    python benchmarks/transfer_value.py --epochs 3 --img-size 64 --max-train-samples 10000
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common import SHARED, write_report

from emotune.evaluate import evaluate_dataset
from emotune.train import make_config, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="mobilenetv2")
    ap.add_argument("--weights", default=str(SHARED / "weights/imagenet/mobilenet_v2-b0353104.pth"))
    ap.add_argument("--data", default=str(SHARED / "data/fer2013"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-train-samples", type=int, default=0)
    ap.add_argument("--runs", default="runs/bench_transfer")
    args = ap.parse_args()
    rows = {}
    for name, pretrained in (("imagenet", args.weights), ("random_init", None)):
        out = Path(args.runs) / name
        cfg = make_config({"data": f"{args.data}/train", "val_data": f"{args.data}/val", "backbone": args.backbone,
                           "pretrained": pretrained, "img_size": args.img_size, "epochs": args.epochs, "batch_size": args.batch_size,
                           "lr": args.lr, "max_train_samples": args.max_train_samples, "workers": 1, "progress": False,
                           "out": str(out), "resume": (out / "train_state.safetensors").is_file()})
        res = train(cfg)
        test = evaluate_dataset(out, f"{args.data}/test", progress=False)
        rows[name] = {"best_epoch": res.best_epoch, "val": res.best_metrics, "test": test.metrics.summary(),
                      "test_per_class_f1": {c.label: round(c.f1, 4) for c in test.metrics.per_class}}
    a, b = rows["imagenet"]["test"], rows["random_init"]["test"]
    md = [f"# Transfer learning's value on FER2013 ({args.backbone}, {args.epochs} epochs, {args.img_size}px, "
          f"{args.max_train_samples or 'all'} training images)", "",
          "| init | test accuracy | balanced accuracy | macro-F1 | best epoch (on val) |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        t = r["test"]
        md.append(f"| {name} | {t['accuracy']:.4f} | {t['balanced_accuracy']:.4f} | {t['macro_f1']:.4f} | {r['best_epoch']} |")
    md += ["", f"ImageNet minus random init: {a['accuracy'] - b['accuracy']:+.4f} test accuracy."]
    print(write_report("transfer_value", {"args": vars(args), "results": rows}, "\n".join(md)))


if __name__ == "__main__":
    main()
