"""Copy a run's best checkpoint into the package as a bundled model (src/emotune/weights/<name>.*): the default face
model (`--name default`), the multi-source face model (`--name multisource`), the contempt model (`--name basic8`), the FER2013-only model (`--name fer2013`) or the default
scene model (`--name scene`).

    python scripts/bundle_default_model.py --run runs/default_model [--test-report runs/default_model/test/eval.json]
    python scripts/bundle_default_model.py --run runs/default_model_96 --test-report runs/default_model_96/test/eval.json \
        --recipe configs/default_model.yaml --recipe configs/default_model_96.yaml
    python scripts/bundle_default_model.py --name scene --run runs/scene_default --recipe configs/scene_default.yaml

The card keeps the run's metrics, adds the test report when one is given (test/ is evaluated once, after training),
and keeps (or, with --source-size, sets) `source_size` (FER2013 faces are 48 px) so inference resamples crops like the
training data. The files
are written by emotune's one checkpoint writer (save_checkpoint): the same tensors, with the changed card bound in.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file

from emotune.models import load_checkpoint, read_card, save_checkpoint
from emotune.models.bundled import weights_file_of
from emotune.models.card import weights_path

DEST = Path(__file__).resolve().parents[1] / "src" / "emotune" / "weights"
MAX_BYTES = 25 * 1024 * 1024
REPORT_KEYS = ("data", "tta", "accuracy", "balanced_accuracy", "macro_f1", "n")  # what the card keeps of an eval.json
FACES = "FER2013, CK+ and a posed Taiwanese corpus"
LICENCES = {"default": f"Apache-2.0 (weights); trained on {FACES}, whose images are licensed for research only",
            "basic8": f"Apache-2.0 (weights); trained on {FACES} and FER+ contempt labels (MIT), whose images are licensed "
                      "for research only",
            "multisource": f"Apache-2.0 (weights); trained on {FACES}, whose images are licensed for research only",
            "fer2013": "Apache-2.0 (weights); trained on FER2013, whose images are licensed for research only",
            "scene": "Apache-2.0 (weights); trained on Twitter I and OASIS, whose images are licensed for research only"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="training run folder (its best.json/best.safetensors)")
    ap.add_argument("--test-report", help="eval.json from `emotune evaluate` on the test split")
    ap.add_argument("--name", default="default", choices=sorted(LICENCES), help="which bundled model (default: the face model)")
    ap.add_argument("--source-size", type=int, help="pixel size of the training faces (default: the card's, which "
                    "training records; FER2013: 48)")
    ap.add_argument("--recipe", action="append", help="training config(s) that produced the run, in stage order "
                    "(repeat for a multi-stage recipe; default: configs/default_model.yaml)")
    ap.add_argument("--report", action="append", default=[], metavar="NAME=EVAL_JSON",
                    help="another `emotune evaluate` report kept in the card's metrics under NAME (e.g. ferplus_test=...)")
    ap.add_argument("--note", help="how the run differs from its recipe file as written (kept in the card's training.note)")
    ap.add_argument("--dest", default=str(DEST), help="folder for NAME.safetensors + NAME.json (default: the package's)")
    args = ap.parse_args(argv)
    dest = Path(args.dest)

    load_checkpoint(args.run)  # verifies the sha256, the card's binding and that it loads
    card, card_path = read_card(args.run)
    weights = weights_path(card, card_path)
    if weights.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{weights}: {weights.stat().st_size / 2**20:.1f} MB is over the 25 MB budget for the bundled model")
    dest.mkdir(parents=True, exist_ok=True)
    if args.source_size is not None:
        card.source_size = args.source_size
    card.license = LICENCES[args.name]
    recipes = args.recipe or ["configs/default_model.yaml"]
    card.training = {**card.training, "run": str(Path(args.run)), "checkpoint": card_path.name, "trained": card.created,
                     "recipe": recipes[-1], "recipes": recipes, **({"note": args.note} if args.note else {})}
    if args.test_report:
        report = json.loads(Path(args.test_report).read_text())
        card.metrics = {**card.metrics, "test": {k: report[k] for k in REPORT_KEYS if k in report},
                        "test_per_class_f1": {c["label"]: round(c["f1"], 4) for c in report["per_class"]}}
    for spec in args.report:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--report {spec}: expected NAME=path/to/eval.json")
        rep = json.loads(Path(path).read_text())
        card.metrics = {**card.metrics, name: {k: rep[k] for k in REPORT_KEYS if k in rep}}
    out = dest / args.name
    for other in sorted(dest.glob("*.json")):  # a card that shares these weights (fer2013 -> default) must not be broken
        if other.stem != args.name and weights_file_of(other) == dest / f"{args.name}.safetensors":
            raise SystemExit(f"{other} uses {args.name}.safetensors: give it its own copy first (cp {args.name}.safetensors "
                             f"{other.stem}.safetensors and set its weights_file), then bundle")
    save_checkpoint(out, load_file(str(weights)), card)  # the card changed: bind it anew
    print(f"bundled {weights} -> {out}.safetensors ({out.with_suffix('.safetensors').stat().st_size / 2**20:.1f} MB)")


if __name__ == "__main__":
    main()
