"""Benchmark 2: emotune's training loop against a bare timm + PyTorch loop, side by side in one run.

Same model, images, transforms, batch size and optimiser; runs alternate (bare, emotune, bare, ...) and
the median images/s of each is compared. Target: bare / emotune <= 1.10.

    python benchmarks/train_throughput.py --images 1024 --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import SHARED, write_report
from torch.utils.data import DataLoader

from emotune.data import EmotionDataset, load_samples, prepare_samples, train_transform
from emotune.data.splits import stratified_subset
from emotune.data.synthetic import make_synthetic_dataset
from emotune.models import create_model, get_model_config
from emotune.train import make_config, train


def bare_epoch(samples, labels, args) -> float:
    """The loop a user would write by hand: timm model, DataLoader, AdamW, cross-entropy."""
    mc = get_model_config(args.backbone)
    prep, cache = prepare_samples(samples, "rgb", cache=True, show=False)
    ds = EmotionDataset(prep.samples, labels, train_transform(args.img_size, mc.mean, mc.std), cache=cache)
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                        persistent_workers=args.workers > 0)
    torch.manual_seed(0)
    model = create_model(args.backbone, len(labels))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    t0, seen = time.perf_counter(), 0
    for x, y in loader:
        loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(x)
    return seen / (time.perf_counter() - t0)


def emotune_epoch(data: str, args, out: Path) -> float:
    cfg = make_config({"data": data, "val_data": data, "max_val_samples": args.batch_size, "backbone": args.backbone,
                       "img_size": args.img_size, "epochs": 1, "batch_size": args.batch_size, "workers": args.workers,
                       "progress": False, "out": str(out)})
    res = train(cfg)
    return float(res.history[-1]["images_per_second"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="mobilenetv2")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    fer = SHARED / "data/fer2013/train"
    if fer.is_dir():
        import csv

        subset = stratified_subset(load_samples(fer), args.images, 0)
        manifest = tmp / "subset.csv"
        with open(manifest, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label"])
            w.writerows([[str(s.path), s.label] for s in subset])
        data, source = str(manifest), f"{args.images} FER2013 train images"
    else:
        data, source = str(make_synthetic_dataset(tmp / "syn", per_class=args.images // 4)), "synthetic faces"
    samples = load_samples(data)
    labels = tuple(sorted({s.label for s in samples}))
    bare, emo = [], []
    for i in range(args.repeats):
        bare.append(bare_epoch(samples, labels, args))
        emo.append(emotune_epoch(data, args, tmp / f"run{i}"))
        print(f"repeat {i + 1}: bare {bare[-1]:.1f} img/s, emotune {emo[-1]:.1f} img/s", flush=True)
    mb, me = statistics.median(bare), statistics.median(emo)
    ratio = mb / me
    md = (f"# Training throughput: emotune vs a bare timm loop\n\n{args.backbone}, {args.img_size}px, batch {args.batch_size}, "
          f"{source}, {args.workers} loader workers, {args.repeats} alternating repeats (median).\n\n"
          f"| loop | images/s (median) | all repeats |\n|---|---|---|\n"
          f"| bare timm + PyTorch | {mb:.1f} | {', '.join(f'{v:.1f}' for v in bare)} |\n"
          f"| emotune train | {me:.1f} | {', '.join(f'{v:.1f}' for v in emo)} |\n\n"
          f"Overhead ratio bare/emotune: **{ratio:.3f}** (target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'}).")
    print(write_report("train_throughput", {"args": vars(args), "bare_ips": bare, "emotune_ips": emo, "ratio": ratio}, md))


if __name__ == "__main__":
    main()
