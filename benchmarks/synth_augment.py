"""Benchmark: do generated faces help small labelled sets? (issue 17)

    python benchmarks/synth_augment.py --regimes fer1 --n 50,200            # FER2013 1% of train/ per class
    python benchmarks/synth_augment.py --regimes fer1,fer5,fer10,ckplus --n 50,200,500 \
        --gen-epochs 40 --gen-steps 200 --clf-epochs 20                       # the full experiment (hours, checkpointed)

Regimes: `ferP` takes P% of FER2013 train/ per class (stratified, seeded); every model is selected on val/ (best epoch,
and the baseline's augmentation) and scored once on test/. `ckplus` cross-validates CK+ in 10 subject-grouped folds;
the synthetic arm trains ONE GENERATOR PER FOLD on that fold's training rows (emotune.synth.protocol), so no test
subject reaches a generator, and is checked for leaks before each fold trains.

Arms, at the same training budget (epochs x draws per epoch = the real set's size):
  baseline   the best classical augmentation on val among --aug (light: flips; default: emotune's crop, flip, rotation,
             jitter, erasing; strong: wider crops and rotations, more erasing)
  +synth N   the baseline's augmentation plus N generated faces per class (a `synthetic: true` source, natural shares)
Every arm is paired with the baseline on the same test images: accuracy difference with a bootstrap 95% interval and an
exact McNemar test (pooled over CK+ folds). The generator of each regime is scored with `emotune synth quality`.
Everything resumes: finished generators, synthetic sets, runs and test scores are reused.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from common import SHARED, environment, predictions_on_test, write_report

FER = SHARED / "data" / "fer2013"
CKPLUS = SHARED / "data" / "ckplus48"
IMAGENET = SHARED / "weights" / "imagenet" / "mobilenet_v2-b0353104.pth"
AUGS = {"light": dict(crop_scale=1.0, rotation=0.0, brightness=0.0, contrast=0.0, erasing=0.0),
        "default": {},
        "strong": dict(crop_scale=0.6, rotation=20.0, brightness=0.4, contrast=0.4, erasing=0.5)}


def classifier_overrides(a) -> dict:
    return dict(backbone="mobilenetv2", pretrained=str(IMAGENET), img_size=a.img_size, channels="grayscale", epochs=a.clf_epochs,
                batch_size=32, lr=2e-3, warmup_epochs=1, monitor="accuracy", workers=0, threads=a.threads, progress=False,
                seed=a.seed, ema=False)


def subset_manifest(root: Path, fraction: float, seed: int, out: Path) -> Path:
    """fraction of each class of a class-folder split (at least 10 per class), as a manifest of absolute paths."""
    import numpy as np

    if out.is_file():
        return out
    rng = np.random.default_rng(seed)
    rows = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(d.iterdir())
        k = max(10, round(fraction * len(files)))
        rows += [(str(files[i].resolve()), d.name) for i in sorted(rng.choice(len(files), k, replace=False))]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return out


def generator(data: str, out: Path, a, epochs: int, **kw) -> Path:
    from emotune.synth.config import SynthConfig
    from emotune.synth.train import train_generator

    if (out / "summary.json").is_file() and json.loads((out / "summary.json").read_text())["epochs_run"] >= epochs:
        return out
    cfg = SynthConfig(data=data, out=str(out), epochs=epochs, steps_per_epoch=a.gen_steps, g_width=a.gen_width,
                      d_width=a.gen_width, batch_size=32, threads=a.threads, seed=a.seed, progress=False,
                      resume=(out / "train_state.safetensors").is_file(), **kw)
    t0 = time.perf_counter()
    train_generator(cfg)
    (out / "bench_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return out


def synthetic_sets(gen: Path, out: Path, ns: list[int], seed: int) -> dict[int, Path]:
    """Sample max(N) per class once; manifest_n<N>.csv beside it lists the first N per class (same generator, seed)."""
    from emotune.synth.sample import MANIFEST, SYNTHETIC_JSON, sample_dataset

    from emotune.models import read_card

    top = max(ns)
    meta = out / SYNTHETIC_JSON
    old = json.loads(meta.read_text()) if meta.is_file() else {}
    if (old.get("per_class"), old.get("generator_sha256")) != (top, read_card(gen)[0].sha256):  # resampled when the generator changed
        sample_dataset(gen, out, top, seed)
    rows = list(csv.DictReader(open(out / MANIFEST)))
    sets = {}
    for n in ns:
        path = out / f"manifest_n{n}.csv"
        keep = [r for r in rows if int(Path(r["path"]).stem.rsplit("_", 1)[1]) < n]
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(keep)
        sets[n] = path
    return sets


def train_arm(out: Path, overrides: dict, yaml_cfg: dict | None = None) -> dict:
    import yaml

    from emotune.train import make_config, train

    summary = out / "summary.json"
    if not summary.is_file():
        cfg_path = None
        if yaml_cfg:
            out.mkdir(parents=True, exist_ok=True)
            cfg_path = out.parent / f"{out.name}.yaml"
            cfg_path.write_text(yaml.safe_dump(yaml_cfg))
        train(make_config({**overrides, "out": str(out), "resume": (out / "train_state.safetensors").is_file()}, cfg_path))
    s = json.loads(summary.read_text())
    return {"run": str(out), "best_epoch": s["best_epoch"], "val_accuracy": s["best"].get("val_accuracy")}


def paired(base_preds, preds) -> dict:
    from emotune.evaluate.paired import compare_predictions

    c = compare_predictions(base_preds, preds)
    return {"n": c.n, "accuracy_baseline": c.accuracy_a, "accuracy": c.accuracy_b, "diff": c.diff, "ci95": list(c.ci95),
            "only_baseline_right": c.only_a_right, "only_arm_right": c.only_b_right, "p_mcnemar": c.p_mcnemar}


def quality(gen: Path, real: str) -> dict:
    from emotune.synth.quality import measure

    q = gen / "quality" / "quality.json"
    r = json.loads(q.read_text()) if q.is_file() else measure(gen, real, per_class=100, max_real_per_class=300)
    return {k: r[k] for k in ("frechet_distance", "frechet_real_vs_real", "fidelity", "real_accuracy", "diversity_ratio")} | \
        {"near_copies": r["memorisation"].get("near_copies"), "n_generated": r["n_generated"]}


def fer_regime(pct: float, a, runs: Path) -> dict:
    name = f"fer{pct:g}"
    root = runs / name
    train_csv = subset_manifest(FER / "train", pct / 100, a.seed, root / "train.csv")
    n_real = sum(1 for _ in open(train_csv)) - 1
    common = {**classifier_overrides(a), "epoch_samples": n_real, "max_val_samples": a.max_val}
    arms: dict[str, dict] = {}
    for aug in a.aug:
        arms[f"baseline_{aug}"] = train_arm(root / f"baseline_{aug}", {**common, **AUGS[aug], "data": str(train_csv),
                                                                         "val_data": str(FER / "val")})
    best_aug = max(a.aug, key=lambda k: arms[f"baseline_{k}"]["val_accuracy"])
    arms[f"baseline_{best_aug}"]["chosen"] = True
    generators = {}
    for epochs in a.gen_epochs:  # each generator budget gets its own folder, synthetic sets and arms
        steps = epochs * a.gen_steps
        gdir = root / f"gen{steps}_w{a.gen_width}"
        gen = generator(str(train_csv), gdir / "generator", a, epochs)
        generators[f"{steps} steps"] = {"run": str(gen), "seconds": float((gen / "bench_seconds.txt").read_text()),
                                        "quality": quality(gen, str(FER / "val"))}
        for n, manifest in synthetic_sets(gen, gdir / "synthetic", a.n, a.seed).items():
            src = [{"name": "real", "data": str(train_csv), "val_data": str(FER / "val")},
                   {"name": "synthetic", "data": str(manifest), "synthetic": True}]
            arms[f"synth_{n}_gen{steps}"] = train_arm(gdir / f"synth_{n}", {**common, **AUGS[best_aug]}, {"sources": src})
    base = predictions_on_test(Path(arms[f"baseline_{best_aug}"]["run"]), FER / "test")
    for k, arm in arms.items():
        preds = predictions_on_test(Path(arm["run"]), FER / "test")
        arm["test_accuracy"] = float((preds["label"] == preds["pred"]).mean())
        if k.startswith("synth_"):
            arm["vs_baseline"] = paired(base, preds)
    chosen = max((k for k in arms if k.startswith("synth_")), key=lambda k: arms[k]["val_accuracy"])
    return {"regime": name, "n_real": n_real, "baseline_aug": best_aug, "generators": generators, "arms": arms,
            "synthetic_arm_selected_on_val": chosen}


def ckplus_regime(a, runs: Path) -> dict:
    """Baseline: `emotune cv` on CK+ (10 subject folds); synthetic arms: the same folds, one generator per fold."""
    import dataclasses

    import pandas as pd

    from emotune.evaluate import evaluate_dataset
    from emotune.protocols.cv import run_cv
    from emotune.synth.protocol import cv_with_fold_generators
    from emotune.train import make_config

    root = runs / "ckplus"
    base_cfg = make_config({**classifier_overrides(a), "data": str(CKPLUS), "val_fraction": 0.1, "out": str(root / "baseline"),
                            "resume": (root / "baseline").is_dir()})
    if not (root / "baseline" / "cv.json").is_file() or not json.loads((root / "baseline" / "cv.json").read_text()).get("complete"):
        run_cv(base_cfg, folds=10, group_by="subject", stratify=True)
    folds_csv = root / "baseline" / "folds.csv"
    arms = {"baseline": {"run": str(root / "baseline")}}

    def fold_synth(n: int):
        def make(fold: int, split_csv: Path) -> Path:
            gdir = root / "generators" / f"fold_{fold}"
            gen = generator(str(split_csv), gdir, a, a.gen_epochs[-1], data_format="manifest", train_split="train")
            return synthetic_sets(gen, gdir / "synthetic", a.n, a.seed)[n]
        return make

    for n in a.n:
        out = root / f"synth_{n}"
        cfg = dataclasses.replace(base_cfg, out=str(out), resume=False)
        cv_with_fold_generators(cfg, folds_csv, fold_synth(n), {}, out)
        arms[f"synth_{n}"] = {"run": str(out)}
    # pooled test predictions, each fold's model scored on the baseline's split.csv test rows (same keys in every arm)
    pooled = {}
    for k, arm in arms.items():
        frames = []
        for fold in range(1, 11):
            split = root / "baseline" / f"fold_{fold}" / "split.csv"
            frames.append(evaluate_dataset(Path(arm["run"]) / f"fold_{fold}", split, "manifest", split="test", progress=False,
                                           workers=0).predictions)
        pooled[k] = pd.concat(frames, ignore_index=True)
        arm["test_accuracy_pooled"] = float((pooled[k]["label"] == pooled[k]["pred"]).mean())
        if k != "baseline":
            arm["vs_baseline"] = paired(pooled["baseline"], pooled[k])
    secs = [float(p.read_text()) for p in sorted((root / "generators").glob("fold_*/bench_seconds.txt"))]
    return {"regime": "ckplus", "arms": arms,
            "note": "baseline = emotune's default augmentation (crop, flip, rotation, jitter, erasing); under 10-fold CV there is "
                    "no single val split to choose an augmentation on, and every fold picks its best epoch on a 10% subject-grouped "
                    "hold-out of its training folds. Test accuracy is pooled over the 10 test folds.",
            "generators": {"fold 1 of 10 (minutes: mean of the 10)": {"run": str(root / "generators" / "fold_1"),
                                            "seconds": sum(secs) / len(secs) if secs else float("nan"),
                                            "quality": quality(root / "generators" / "fold_1", str(CKPLUS))}}}


def _val(arm: dict) -> str:
    return f"{arm['val_accuracy']:.4f}" if "val_accuracy" in arm else "- (CV)"


def markdown(result: dict) -> str:
    a = result["budget"]
    md = ["# Generative augmentation on small sets (issue 17)", "",
          f"Command: `{result['environment']['command']}`", "",
          f"Budget: generator {a['gen_epochs']} epochs x {a['gen_steps']} steps (batch 32, width {a['gen_width']}, 48 px grey); "
          f"classifier MobileNetV2 (ImageNet) at {a['img_size']} px grey, {a['clf_epochs']} epochs, draws per epoch = the "
          f"real set's size; N per class = {a['n']}; threads {a['threads']}.", ""]
    for r in result["regimes"]:
        md += [f"## {r['regime']}", ""]
        if "note" in r:
            md += [r["note"], ""]
        if "n_real" in r:
            md += [f"{r['n_real']} real training faces; baseline augmentation chosen on val: **{r['baseline_aug']}** (the "
                   "paired tests compare each synthetic arm with it, on the same test images).", ""]
        md += ["| arm | val accuracy | test accuracy | diff vs baseline (95% CI) | McNemar p |", "|---|---|---|---|---|"]
        for k, arm in r["arms"].items():
            v = arm.get("vs_baseline")
            acc = arm.get("test_accuracy", arm.get("test_accuracy_pooled"))
            md.append(f"| {k}{' (baseline)' if arm.get('chosen') else ''} | {_val(arm)} | {acc:.4f} | " +
                      (f"{v['diff'] * 100:+.1f} [{v['ci95'][0] * 100:+.1f}, {v['ci95'][1] * 100:+.1f}] | {v['p_mcnemar']:.3f} |"
                       if v else "- | - |"))
        md += ["", "| generator | train minutes | Frechet distance (real vs real) | class fidelity (real) | diversity gen/real | near copies |",
               "|---|---|---|---|---|---|"]
        for g, v in r["generators"].items():
            q = v["quality"]
            md.append(f"| {g} | {v.get('seconds', float('nan')) / 60:.1f} | {q['frechet_distance']:.1f} ({q['frechet_real_vs_real']:.1f}) | "
                      f"{q['fidelity']:.3f} ({q['real_accuracy']:.3f}) | {q['diversity_ratio']:.2f} | {q['near_copies']} |")
        md += ["", "Quality features: the bundled FER2013 MobileNetV2's penultimate layer, NOT the Inception FID of the papers; "
               "fidelity = the bundled classifier's accuracy on generated faces by conditioned class."]
        if "synthetic_arm_selected_on_val" in r:
            md += ["", f"Synthetic arm chosen on val: {r['synthetic_arm_selected_on_val']}."]
        md.append("")
    md += ["## Verdict", "", result.get("verdict", "")]
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regimes", default="fer1", help="comma list of ferP (P%% of FER2013 train/ per class) and ckplus")
    ap.add_argument("--n", default="50,200", help="synthetic faces per class, comma list")
    ap.add_argument("--aug", default="default,strong", help="classical augmentations the baseline is chosen among (on val)")
    ap.add_argument("--gen-epochs", default="10", help="generator epochs, comma list: one generator (and its arms) per budget")
    ap.add_argument("--gen-steps", type=int, default=30, help="generator updates per epoch")
    ap.add_argument("--gen-width", type=int, default=16)
    ap.add_argument("--clf-epochs", type=int, default=12)
    ap.add_argument("--img-size", type=int, default=48)
    ap.add_argument("--max-val", type=int, default=1000, help="stratified subset of val/ for selection (0 = all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="runs/synth_augment")
    ap.add_argument("--name", default="synth_augment", help="results/<name>.json and .md")
    a = ap.parse_args()
    a.n = [int(x) for x in a.n.split(",")]
    a.gen_epochs = [int(x) for x in a.gen_epochs.split(",")]
    a.aug = [x.strip() for x in a.aug.split(",")]
    runs = Path(a.runs)
    t0 = time.perf_counter()
    regimes = []
    for r in a.regimes.split(","):
        regimes.append(ckplus_regime(a, runs) if r == "ckplus" else fer_regime(float(r.removeprefix("fer")), a, runs))
    wins = [(r["regime"], k, arm["vs_baseline"]) for r in regimes for k, arm in r["arms"].items() if arm.get("vs_baseline")]
    sig = [f"{reg} {k}: {v['diff'] * 100:+.1f} points (p {v['p_mcnemar']:.3f})" for reg, k, v in wins
           if v["diff"] >= 0.02 and v["p_mcnemar"] < 0.05]
    verdict = ("Target met (+2 points or more, McNemar p < 0.05): " + "; ".join(sig)) if sig else \
        ("No synthetic arm gained 2 points significantly at this budget: " +
         "; ".join(f"{reg} {k}: {v['diff'] * 100:+.1f} [{v['ci95'][0] * 100:+.1f}, {v['ci95'][1] * 100:+.1f}] (p {v['p_mcnemar']:.3f})"
                   for reg, k, v in wins) + ".")
    result = {"budget": {k: getattr(a, k) for k in ("n", "aug", "gen_epochs", "gen_steps", "gen_width", "clf_epochs", "img_size",
                                                    "max_val", "threads", "seed")},
              "regimes": regimes, "verdict": verdict, "seconds": round(time.perf_counter() - t0, 1), "environment": environment()}
    print(write_report(a.name, result, markdown(result)), file=sys.stderr)
    print(verdict)


if __name__ == "__main__":
    main()
