"""`emotune synth`: train a class-conditional face generator, sample a synthetic class-folder set from it, measure it."""
from __future__ import annotations

import argparse
import sys


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    from ..synth.config import add_synth_train_arguments

    sub = p.add_subparsers(dest="synth_command", required=True)
    t = sub.add_parser("train", help="train a class-conditional GAN on face crops (resumable run folder)",
                       description="Projection-discriminator GAN, hinge loss, spectral norm, EMA generator, DiffAugment. "
                                   "Writes config.yaml, log.csv, a per-class sample grid each epoch, last.safetensors + "
                                   "card, and the state that --resume continues from.")
    t.add_argument("--config", help="YAML file of options (keys as the flags, with underscores)")
    add_synth_train_arguments(t)
    s = sub.add_parser("sample", help="write N generated faces per class as a class-folder dataset + manifest.csv",
                       description="Every image is marked synthetic (manifest.csv `synthetic` = 1, synthetic.json); the same "
                                   "--seed gives the same files. Use the folder as a `synthetic: true` source of a merged config.")
    s.add_argument("--model", required=True, help="generator run folder (or its last.json card)")
    s.add_argument("--per-class", type=int, required=True, help="faces per class")
    s.add_argument("--out", required=True, help="output folder (new, empty, or an earlier synthetic set to replace)")
    s.add_argument("--seed", type=int, default=0, help="latent seed (default: 0)")
    s.add_argument("--classes", help="comma list of classes (default: all the generator's)")
    s.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    q = sub.add_parser("quality", help="Frechet distance, class fidelity, diversity and nearest training faces of a generator",
                       description="Features: the bundled FER2013-only MobileNetV2's (`fer2013`) penultimate layer (not Inception: not the FID "
                                   "of the papers). Writes quality.json and quality.md (default RUN/quality) and the "
                                   "nearest-neighbour grid into the run folder only.")
    q.add_argument("--model", required=True, help="generator run folder")
    q.add_argument("--data", required=True, help="real faces to compare with (class folders or manifest)")
    q.add_argument("--out", help="folder for quality.json / quality.md (default: RUN/quality)")
    q.add_argument("--per-class", type=int, default=200, help="generated faces per class (default: 200)")
    q.add_argument("--max-real-per-class", type=int, default=500, help="real faces per class at most (default: 500)")
    q.add_argument("--seed", type=int, default=0)


def run_synth(args: argparse.Namespace) -> int:
    if args.synth_command == "train":
        from ..synth.config import _types, make_synth_config
        from ..synth.train import train_generator

        overrides = {k: getattr(args, k) for k in _types() if getattr(args, k, None) is not None}
        res = train_generator(make_synth_config(overrides, args.config))
        last = res.history[-1] if res.history else {}
        print(f"run: {res.run_dir}  epochs: {res.epochs_run}  d_loss {last.get('d_loss', float('nan')):.3f}  "
              f"g_loss {last.get('g_loss', float('nan')):.3f}  samples: {res.run_dir / 'samples.png'}")
        return 0
    if args.synth_command == "sample":
        from ..synth.sample import sample_dataset

        classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
        out = sample_dataset(args.model, args.out, args.per_class, args.seed, classes, args.device)
        print(f"wrote {out} (manifest.csv, synthetic.json)", file=sys.stderr)
        return 0
    from ..synth.quality import measure

    r = measure(args.model, args.data, args.out, args.per_class, args.max_real_per_class, args.seed)
    print(f"Frechet distance {r['frechet_distance']:.1f} (real vs real {r['frechet_real_vs_real']:.1f}; bundled-model features)  "
          f"fidelity {r['fidelity'] if r['fidelity'] is not None else float('nan'):.3f}  diversity ratio {r['diversity_ratio']:.3f}")
    return 0
