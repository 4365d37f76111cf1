"""Leave-one-source-out of weight interpolation with the start model (WiSE-FT, Wortsman et al. 2022), issue 14.

    python benchmarks/loso_wise.py --config configs/loso_faces_full_cpu.yaml --runs runs/loso_full_cpu \
        --start src/emotune/weights/fer2013.json --alphas 0.25,0.5,0.75 --out runs/loso_full_cpu/wise

Fine-tuning the FER2013 model on more sources moves it away from FER2013; interpolating the weights back towards the
start model, theta = (1 - alpha) * start + alpha * fine_tuned, is the standard way to keep what the start model knew
while keeping most of what fine-tuning gained on new distributions. Every fold model of a finished
`benchmarks/loso_faces.py` run (the recipe folds and the single-source baseline fold alike, so both sides get the same
treatment) is interpolated at each alpha (`emotune.models.average`, what `emotune average --weights` runs) and scored end
to end on the same left-out photos. Each alpha writes a `loso.json` that `benchmarks/loso_levers.py` pairs with the
un-interpolated run. `--ensemble` stores probability ensembles of the two models instead (two forward passes per face):
the upper bound that distilling the pair into one network could reach. `--partner-runs DIR` pairs each fold model with
the same fold of another LOSO run (e.g. another recipe) instead of with `--start`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import environment

from emotune.errors import BadInputError, EmotuneError
from emotune.io import atomic_write_json
from emotune.models.average import average_checkpoints, ensemble_checkpoints
from emotune.protocols.loso import load_config, load_tests, loso_result, plan_folds, score_fold
from emotune.taxonomy import resolve_labels


def parse_alphas(text: str) -> list[float]:
    try:
        alphas = [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise BadInputError("--alphas", f"{text!r}: expected a comma list of numbers in (0, 1)") from None
    if not alphas or not all(0 < a < 1 for a in alphas):
        raise BadInputError("--alphas", f"{text!r}: expected numbers strictly between 0 and 1")
    return alphas


def mix(partner: str | Path, fold_run: Path, out: Path, alpha: float, ensemble: bool) -> Path:
    """The fold model (weight `alpha`) combined with `partner` (the start model, or the same fold of another run): the
    fold model first, so the card keeps its training record."""
    if out.with_suffix(".json").is_file():
        return out.with_suffix(".json")
    combine = ensemble_checkpoints if ensemble else average_checkpoints
    return combine([str(fold_run), str(partner)], out, [alpha, 1 - alpha])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the LOSO config the runs were trained with")
    ap.add_argument("--runs", required=True, type=Path, help="the folder of the fold runs (loso_faces.py --out)")
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--start", help="the model every fold started from (its card or run folder)")
    who.add_argument("--partner-runs", type=Path, help="another LOSO run's folder: each fold is combined with its namesake")
    ap.add_argument("--alphas", default="0.25,0.5,0.75", help="weights of the fine-tuned model, comma list in (0, 1)")
    ap.add_argument("--ensemble", action="store_true", help="probability ensembles instead of weight averages")
    ap.add_argument("--only", default="", help="comma list of fold runs (default: every finished fold)")
    ap.add_argument("--out", required=True, type=Path, help="folder for the mixed checkpoints and one loso.json per alpha")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    try:
        cfg = load_config(args.config)
        alphas = parse_alphas(args.alphas)
        labels = resolve_labels(cfg.labels)
        tests = load_tests(cfg, labels)
        only = {s for s in args.only.split(",") if s}
        folds = [f for f in plan_folds(cfg) if (args.runs / f.name / "summary.json").is_file() and (not only or f.name in only)
                 and (args.partner_runs is None or (args.partner_runs / f.name / "summary.json").is_file())]
        if not folds:
            raise BadInputError(args.runs, "holds no finished fold run; run benchmarks/loso_faces.py first")
        args.out.mkdir(parents=True, exist_ok=True)
        kind = "ensemble" if args.ensemble else "wise"
        for alpha in alphas:
            t0, rows = time.perf_counter(), []
            for fold in folds:
                partner = args.start if args.partner_runs is None else args.partner_runs / fold.name
                model = mix(partner, args.runs / fold.name, args.out / f"{fold.name}_{kind}{alpha:g}", alpha, args.ensemble)
                rows += score_fold(cfg, fold, model, tests, args.device, run=str(model))
            result = {**loso_result(cfg, labels, rows, time.perf_counter() - t0), "config": args.config,
                      "mix": {"kind": kind, "alpha": alpha, "partner": str(args.start or args.partner_runs), "runs": str(args.runs)},
                      "environment": environment()}
            path = args.out / f"{kind}{alpha:g}" / "loso.json"  # one folder per mix
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, result)
            print(path)
    except EmotuneError as exc:
        print(f"loso_wise: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
