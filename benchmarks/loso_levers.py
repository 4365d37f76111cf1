"""Benchmark table: levers of the face recipe (issue 14), each against the base recipe on the same left-out photos.

    python benchmarks/loso_levers.py --base runs/loso_cpu/loso.json \
        --lever "FER+ labels=runs/loso_ferplus_cpu/loso.json" --lever "augmentation=runs/loso_aug_cpu/loso.json"

Every input is the `loso.json` of a `benchmarks/loso_faces.py` run (same budget, seeds and stratified test photos, with
per-photo predictions). For each left-out source, the lever's recipe row is paired with the base's recipe row: accuracy,
balanced accuracy and macro-F1 of both and their difference with a 95% interval from resampling whole subjects
(performers, CK+ subjects; FER2013 images). A lever is kept only if it is ahead on every left-out posed source.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import environment, write_report

from emotune.errors import BadInputError, EmotuneError
from emotune.protocols.loso import paired_difference

METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced acc.", "macro_f1": "macro-F1"}


def recipe_rows(path: Path, model: str = "recipe") -> dict[str, dict]:
    data = json.loads(path.read_text())
    return {r["left_out"]: r for r in data["rows"] if r["model"] == model}


def compare(base: Path, levers: list[tuple[str, Path]], n_boot: int, base_config: str = "configs/loso_faces_cpu.yaml") -> dict:
    """First each file's recipe against its own single-source baseline (its `... only` rows, where it has them), then
    every lever against the base recipe."""
    base_rows = recipe_rows(base)
    out = []
    for name, path in [("base", base), *levers]:
        baseline = json.loads(path.read_text()).get("baseline")
        only = recipe_rows(path, f"{baseline} only") if baseline else {}
        mine = recipe_rows(path)
        for left_out in sorted(set(mine) & set(only)):
            out.append({"lever": f"{name}: recipe vs {baseline} only", "left_out": left_out, "run": str(path),
                        **paired_difference(only[left_out], mine[left_out], n_boot)})
    for name, path in levers:
        rows = recipe_rows(path)
        for left_out in sorted(set(base_rows) & set(rows)):
            out.append({"lever": name, "left_out": left_out, "run": str(path),
                        **paired_difference(base_rows[left_out], rows[left_out], n_boot)})
    return {"kind": "loso_levers", "base": str(base), "base_config": json.loads(base.read_text()).get("config") or base_config,
            "levers": {n: str(p) for n, p in levers}, "rows": out}


def verdicts(result: dict) -> dict[str, str]:
    """kept: ahead in accuracy on every left-out source it was scored on; otherwise not kept."""
    by: dict[str, list[float]] = {}
    for r in result["rows"]:  # the first block (base vs its baseline) reads: kept = the multi-source recipe wins
        by.setdefault(r["lever"], []).append(r["accuracy"]["diff"])
    return {k: "kept" if v and all(d > 0 for d in v) else "not kept" for k, v in by.items()}


def markdown(result: dict, command: str, machine: str) -> str:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = ["# Recipe levers, leave-one-source-out (issue 14)", "",
             f"Base: `{result['base']}` (the recipe in `{result['base_config']}`). Each lever changes one thing and "
             "keeps the budget, seeds and the stratified left-out photos; both sides are scored end to end "
             "(YuNet, alignment, largest face). Difference = lever - base, with a 95% interval from resampling whole "
             "subjects (paired: the same photos on both sides). Rows `X: recipe vs ... only` pair a run's multi-source "
             "recipe with training on the single wild source alone at the same budget (there `base` is that model and "
             "`lever` the recipe).", "",
             "| lever | left out | photos | subjects | " + " | ".join(f"{v}: base -> lever (diff [95% CI])" for v in METRIC_NAMES.values()) + " |",
             "|---|---|---|---|" + "---|" * len(METRIC_NAMES)]
    for r in result["rows"]:
        cells = []
        for m in METRIC_NAMES:
            d = r[m]
            ci = f" [{pct(d['ci95'][0])}, {pct(d['ci95'][1])}]" if d["ci95"] else ""
            cells.append(f"{pct(d['base'])} -> {pct(d['other'])} ({'+' if d['diff'] >= 0 else ''}{pct(d['diff'])}{ci})")
        lines.append(f"| {r['lever']} | {r['left_out']} | {r['n']} | {r['clusters']} | " + " | ".join(cells) + " |")
    lines += ["", "Verdict (kept only if ahead in accuracy on every left-out source): "
              + "; ".join(f"{k}: {v}" for k, v in verdicts(result).items()) + ".",
              "", "## Command", "", f"`{command}`", "", f"Machine: {machine}."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, type=Path, help="loso.json of the base recipe")
    ap.add_argument("--lever", action="append", default=[], help="NAME=path/to/loso.json (repeatable)")
    ap.add_argument("--base-config", default="configs/loso_faces_cpu.yaml", help="the base run's config (named in the report)")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--name", default="loso_levers")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    try:
        levers = []
        for spec in args.lever:
            name, sep, path = spec.partition("=")
            if not sep or not name or not Path(path).is_file():
                raise BadInputError(spec, "expected NAME=existing/loso.json")
            levers.append((name, Path(path)))
        result = compare(args.base, levers, args.bootstrap, args.base_config)
    except (EmotuneError, OSError, KeyError, json.JSONDecodeError) as exc:
        print(f"loso_levers: error: {exc}", file=sys.stderr)
        return 2
    result["verdicts"] = verdicts(result)
    env = environment()
    machine = f"{env['cpu']} ({env['cpu_count']} CPUs), torch {env['torch']}"
    print(write_report(args.name, result, markdown(result, env["command"], machine), Path(args.out_dir) if args.out_dir else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
