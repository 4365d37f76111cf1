"""Benchmark: leave-one-source-out on faces from other sources (issue 14), end to end, with intervals over subjects.

    emotune faces crop --data ../shared/data/taiwanese --out runs/crops/taiwanese       # once: training crops
    python benchmarks/loso_faces.py --config configs/loso_faces.yaml                 # the full table (GPU: hours)
    python benchmarks/loso_faces.py --config configs/loso_faces_cpu.yaml --out runs/loso_cpu   # CPU-sized version

For each source with a `test:` (CK+ by subject, Taiwanese by performer, FER2013 val/), train on all sources but that
one and score its photos end to end (YuNet, alignment, the largest face; emotune.protocols.loso), plus one run on the
`baseline` source alone ("FER2013 only") scored on every posed source. The training budget is the config's `train:`
block (epochs, epoch_samples, ...), overridable here. Runs go to --out (resumed; finished folds are not retrained);
the table to benchmarks/results/loso_faces.{json,md} (or --out-dir) with the command and the machine.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import environment, write_report

from emotune.errors import EmotuneError
from emotune.protocols.loso import load_config, markdown, run_loso


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/loso_faces.yaml", help="LOSO config (see emotune.protocols.loso)")
    ap.add_argument("--out", default="runs/loso_faces", help="folder of the fold runs (default runs/loso_faces)")
    ap.add_argument("--epochs", type=int, help="override train.epochs")
    ap.add_argument("--epoch-samples", type=int, help="override train.epoch_samples (draws per epoch)")
    ap.add_argument("--max-test", type=int, help="score at most N photos per left-out source (stratified; 0 = all)")
    ap.add_argument("--bootstrap", type=int, help="bootstrap resamples (default: the config's, 2000)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (training and scoring)")
    ap.add_argument("--only", default="", help="comma list of folds (without_ckplus, only_fer2013) or left-out sources to run")
    ap.add_argument("--out-dir", default=None, help="where the report goes (default benchmarks/results)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    try:
        cfg = load_config(args.config)
        for key, v in (("epochs", args.epochs), ("epoch_samples", args.epoch_samples)):
            if v is not None:
                cfg.train[key] = v
        if args.device != "auto":
            cfg.train["device"] = args.device
        if args.max_test is not None:
            cfg.max_test = args.max_test
        if args.bootstrap is not None:
            cfg.bootstrap = args.bootstrap
        result = run_loso(cfg, args.out, args.device, not args.no_progress, [s for s in args.only.split(",") if s])
    except EmotuneError as exc:
        print(f"loso_faces: error: {exc}", file=sys.stderr)
        return 2
    env = environment()
    machine = f"{env['cpu']} ({env['cpu_count']} CPUs)" + (f", {env['cuda']}" if env["cuda"] else "") + f", torch {env['torch']}"
    result.update({"config": args.config, "runs": args.out, "environment": env})
    print(write_report("loso_faces", result, markdown(result, env["command"], machine).rstrip("\n"),
                       Path(args.out_dir) if args.out_dir else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
