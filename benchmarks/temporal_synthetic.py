"""Does the recurrent model recover what a per-frame model cannot? Synthetic face videos with known temporal structure.

Videos in the Aff-Wild2 format (emotune.temporal.synthetic): valence drifts slowly; each frame's cartoon mouth is
a noisy reading of it (happy / neutral / sad from valence + N(0, noise)), so one frame says little; arousal is the
valence of 4 frames earlier (a target that depends on the past). Same frozen encoder (the bundled default model),
same cached embeddings, same head type and training budget; the per-frame model is the GRU with a window of 1 frame
(no temporal context), the temporal model the GRU over windows of 16. Scored on held-out synthetic videos (never
seen in training or model selection): per-frame CCC (all frames pooled) and per-video CCC (averaged over videos).

    python benchmarks/temporal_synthetic.py            # a few minutes on a shared 2-core CPU
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_report  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=32, help="training + validation videos")
    p.add_argument("--test-videos", type=int, default=12)
    p.add_argument("--frames", type=int, default=80)
    p.add_argument("--noise", type=float, default=0.6)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--seeds", type=int, default=2, help="training seeds per model")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from emotune.temporal.synthetic import make_affwild2
    from emotune.temporal.train import SeqConfig, evaluate_sequence, train_sequence

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="emotune-temporal-"))
    train_ann = make_affwild2(work / "train", args.videos, args.frames, seed=1, noise=args.noise)
    test_ann = make_affwild2(work / "test", args.test_videos, args.frames, seed=2, noise=args.noise)
    models = {"per-frame (window 1)": 1, f"GRU (window {args.window})": args.window}
    rows: dict[str, list[dict]] = {}
    for name, window in models.items():
        for seed in range(args.seeds):
            cfg = SeqConfig(data=str(train_ann), out=str(work / f"w{window}_s{seed}"), epochs=args.epochs, window=window,
                            stride=max(1, window // 2), batch_size=32 if window > 1 else 256, head="gru", hidden=64,
                            split_by="video", val_fraction=0.25, seed=seed, cache_dir=str(work / "cache"), progress=False,
                            lr=3e-3)
            train_sequence(cfg)
            ev = evaluate_sequence(cfg.out, test_ann, cache_dir=str(work / "cache"))
            rows.setdefault(name, []).append({"seed": seed, "valence_ccc": ev["val_per_target"]["valence"]["ccc"],
                                              "arousal_ccc": ev["val_per_target"]["arousal"]["ccc"],
                                              "valence_rmse": ev["val_per_target"]["valence"]["rmse"],
                                              "video_valence_ccc": ev["video"]["video_valence_ccc"],
                                              "video_arousal_ccc": ev["video"]["video_arousal_ccc"]})
    keys = ["valence_ccc", "arousal_ccc", "valence_rmse", "video_valence_ccc", "video_arousal_ccc"]
    summary = {name: {k: round(float(np.mean([r[k] for r in rs])), 4) for k in keys} for name, rs in rows.items()}
    secs = round(time.perf_counter() - t0, 1)
    result = {"kind": "emotune-benchmark/temporal_synthetic", "settings": vars(args) | {"out": str(args.out) if args.out else None},
              "encoder": "bundled default model (mobilenetv2, frozen), cached embeddings", "runs": rows, "mean": summary,
              "seconds": secs}
    lines = ["# Temporal model vs per-frame model on synthetic face videos", "",
             f"{args.videos} training/validation videos and {args.test_videos} held-out test videos of {args.frames} frames "
             f"(Aff-Wild2 format, synthetic cartoon faces), per-frame mouth noise {args.noise}; frozen bundled encoder; "
             f"GRU head (64 units), {args.epochs} epochs, mean of {args.seeds} seeds; {secs} s in all.", "",
             "| model | valence CCC | arousal CCC (valence 4 frames back) | valence RMSE | per-video valence CCC | per-video arousal CCC |",
             "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['valence_ccc']:.3f} | {s['arousal_ccc']:.3f} | {s['valence_rmse']:.3f} | "
                     f"{s['video_valence_ccc']:.3f} | {s['video_arousal_ccc']:.3f} |")
    lines += ["", "Per-frame CCC pools every test frame; per-video CCC is each video's CCC averaged over the videos.",
              "Synthetic data only: nothing here is measured on real face video."]
    write_report("temporal_synthetic", result, "\n".join(lines) + "\n", args.out)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
