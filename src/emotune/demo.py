"""`emotune demo`: the main job on a bundled example, or (--train) fine-tuning end to end in about a minute.

`run_demo` runs the Recognizer with the bundled default model on matplotlib's public-domain photo of Grace Hopper.
`run_train_demo`: with ../shared present it fine-tunes MobileNetV2 from the local ImageNet file on CK+ (subject-grouped
hold-out); otherwise on bundled synthetic cartoon faces, so a fresh clone still runs.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .data.synthetic import make_synthetic_dataset
from .errors import ConfigError
from .train import make_config, train

MARKER = ".emotune-demo"  # written into the folders `demo --train` makes: the only folders it ever removes


def fresh_demo_dir(out: Path) -> Path:
    """Empty `out` for a new demo run: remove it only when an earlier demo made it (its marker file is there), use it
    when it is empty, and refuse anything else (`--out .` must never delete the working directory)."""
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out}: is a file, not a folder; choose another --out")
        if (out / MARKER).is_file():
            shutil.rmtree(out)
        elif any(out.iterdir()):
            raise ConfigError(f"--out {out}: holds files that emotune demo did not make (no {MARKER} marker); "
                              "choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `emotune demo --train`; it replaces this folder on its next run\n", encoding="utf-8")
    return out


def run_demo(out: Path, image: str | None = None) -> int:
    import sys

    import numpy as np
    from matplotlib import cbook

    from .data.images import read_image
    from .inference import Recognizer
    from .inference.output import annotate, save_image, table_text
    from .inference.recognizer import result_rows

    path = Path(image) if image else Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    rec = Recognizer()
    print(f"emotune demo: {path.name} with the bundled model ({rec.card.backbone}, {rec.card.input_size}px, "
          f"{rec.backend.name} backend) and the {rec.detector.name} face detector")
    faces = rec.predict(path)
    df = rec.frame_of(result_rows(str(path), faces, rec.labels))
    sys.stdout.write(table_text(df, rec.labels, top=len(rec.labels)))
    saved = save_image(annotate(np.asarray(read_image(path)), faces, rec.labels), out / f"{path.stem}_emotune.jpg")
    print(f"annotated image: {saved}")
    return 0 if faces else 1


def run_train_demo(shared: Path, out: Path) -> int:
    ck = shared / "data" / "ckplus48"
    weights = shared / "weights" / "imagenet" / "mobilenet_v2-b0353104.pth"
    fresh_demo_dir(out)
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
