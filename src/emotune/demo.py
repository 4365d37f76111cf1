"""`emotune demo`: fine-tune and evaluate end to end in about a minute on the CPU.

With ../shared present it fine-tunes MobileNetV2 from the local ImageNet file on CK+ (subject-grouped
hold-out); otherwise on bundled synthetic cartoon faces, so a fresh clone still runs.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .data.synthetic import make_synthetic_dataset
from .train import make_config, train


def run_demo(shared: Path, out: Path) -> int:
    ck = shared / "data" / "ckplus48"
    weights = shared / "weights" / "imagenet" / "mobilenet_v2-b0353104.pth"
    if out.exists():
        shutil.rmtree(out)
    if ck.is_dir():
        data, pretrained, what = str(ck), (str(weights) if weights.is_file() else None), "CK+ (subject-grouped 20% hold-out)"
    else:
        data, pretrained, what = str(make_synthetic_dataset(out / "synthetic", per_class=40)), None, "synthetic cartoon faces"
    print(f"emotune demo: fine-tuning mobilenetv2 ({'ImageNet weights: ' + pretrained if pretrained else 'random init'}) on {what}")
    cfg = make_config({"data": data, "val_fraction": 0.2, "backbone": "mobilenetv2", "pretrained": pretrained,
                       "img_size": 64, "epochs": 3, "batch_size": 32, "lr": 2e-3, "workers": 0, "out": str(out / "run")})
    result = train(cfg)
    best = result.best_metrics
    print(f"held-out accuracy {best['val_accuracy']:.3f}, balanced accuracy {best['val_balanced_accuracy']:.3f}, "
          f"macro-F1 {best['val_macro_f1']:.3f} (best of {result.epochs_run} epochs)")
    print(f"run folder: {result.run_dir} (log.csv, best.safetensors + best.json model card, curves.png, val_confusion.png)")
    return 0
