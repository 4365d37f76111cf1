"""Render the README's default-model section from the test report, so every figure there comes from a command.

    python scripts/model_section.py --eval runs/default_model_96/test/eval.json --write README.md

Replaces the text between `<!-- default-model:start -->` and `<!-- default-model:end -->` (or prints it without --write).
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from emotune.io import atomic_write_text
from emotune.tables import confusion_table, render_table
from emotune.models.card import read_card

START, END = "<!-- default-model:start -->", "<!-- default-model:end -->"


def trained_on(card, trained: str, stages: str) -> str:
    """What the model learnt from: FER2013 alone, or (a merged run) each source with its images and share of draws."""
    data = (card.training or {}).get("data") or {}
    sources = data.get("sources") if data.get("train") == "sources" else None
    if not sources:
        return (f"MobileNetV2 from ImageNet weights, {card.input_size}x{card.input_size} {card.channels} faces, trained on "
                f"FER2013 `train/` with {trained}{stages}, best epoch ({card.metrics.get('epoch')}) chosen on `val/`")
    total = sum(float(s.get("weight") or 0) for s in sources.values()) or 1.0
    parts = [f"{name} ({s['n_train']:,} faces, {100 * float(s.get('weight') or 0) / total:.0f}% of the draws)"
             for name, s in sources.items()]
    start = (card.training or {}).get("pretrained") or "ImageNet weights"
    return (f"MobileNetV2, {card.input_size}x{card.input_size} {card.channels} faces, fine-tuned from `{start}` on "
            f"{', '.join(parts)} with {trained}{stages}, best epoch ({card.metrics.get('epoch')}) chosen on the merged "
            "validation split")


def render(report: dict, card, machine: str) -> str:
    labels = report["labels"]
    training = card.training or {}
    recipes = training.get("recipes") or [training.get("recipe", "configs/default_model.yaml")]
    run = training.get("run", "runs/default_model")
    trained = " then ".join(f"`{r}`" for r in recipes)
    stages = f" ({len(recipes)} stages, each from the best checkpoint of the one before)" if len(recipes) > 1 else ""
    tta = "with flip TTA (each face averaged with its mirror image, as `--tta` does)" \
        if report.get("tta") else "without TTA"
    lines = [START, "",
             f"{trained_on(card, trained, stages)}, "
             f"{(Path('src/emotune/weights') / card.weights_file).stat().st_size / 2**20:.1f} MB. "
             f"FER2013 `test/` (PrivateTest), scored once after training, {tta}:", "",
             render_table(["metric", "FER2013 test"], [["accuracy", f"**{report['accuracy']:.4f}**"],
                                                        ["balanced accuracy", f"{report['balanced_accuracy']:.4f}"],
                                                        ["macro-F1", f"{report['macro_f1']:.4f}"], ["images", report["n"]]]), "",
             render_table(["class", "precision", "recall", "F1", "support"],
                          [[c["label"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
                           for c in report["per_class"]]),
             "", "Confusion matrix (rows: true, columns: predicted):", "", confusion_table(labels, report["confusion"])]
    train_cmds = ", then ".join(f"`emotune train --config {r}`" for r in recipes)
    tta_flag = " --tta" if report.get("tta") else ""
    lines += ["", f"Reproduce: {train_cmds}, then "
              f"`emotune evaluate --model {run} --data ../shared/data/fer2013/test{tta_flag} --out {run}/test`. "
              f"Machine: {machine}.", "", END]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", required=True, help="eval.json from `emotune evaluate` on FER2013 test")
    ap.add_argument("--card", default="src/emotune/weights/default.json", help="the bundled model card")
    ap.add_argument("--machine", default=f"{platform.machine()} CPU, {platform.system()}, 2 cores (the shared development machine)")
    ap.add_argument("--write", help="file to update in place (between the markers)")
    args = ap.parse_args()
    card, _ = read_card(args.card)
    text = render(json.loads(Path(args.eval).read_text()), card, args.machine)
    if not args.write:
        print(text)
        return
    target = Path(args.write)
    doc = target.read_text(encoding="utf-8")
    if START not in doc or END not in doc:
        raise SystemExit(f"{target}: no {START} ... {END} block to replace")
    atomic_write_text(target, doc[:doc.index(START)] + text + doc[doc.index(END) + len(END):])
    print(f"updated {target}")


if __name__ == "__main__":
    main()
